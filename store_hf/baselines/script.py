"""What the baseline training scripts (``examples/train_sasrec.py``, ``examples/train_tiger.py``)
share: their common arguments, the seeded start, the leave-one-out split with the fixed test-user
sample that ``store-hf evaluate`` ranks, and the files they write.

    parser = baseline_parser(__doc__)
    parser.add_argument("--epochs", type=int, default=200)  # the script's own settings
    args = parse_args(parser)  # the common settings checked
    data = start(args, max_history=50)  # logging, threads, seed; dataset, splits, test users
    config = checked_config(parser, SASRecConfig, epochs=args.epochs, ...)
    ...
    finish(args.output_dir, data, ranks, report)  # ranks.json, metrics.json (atomic), stdout
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import torch
from transformers import set_seed

from ..data import EVAL_SEED, RecDataset, leave_one_out, load_dataset_or_embedded, sample_users
from ..files import write_json_atomic
from ..metrics import ranking_metrics
from ..run_config import check_settings
from .popularity import MostPopular

#: The cut-offs every script reports.
KS = (1, 5, 10, 20)
#: The types of the settings :func:`baseline_parser` adds (their ranges: the package's
#: settings checker, :data:`store_hf.run_config.SETTING_RANGES`).
COMMON_SETTINGS = {
    "seed": int,
    "eval_seed": int,
    "max_test_users": int | None,
    "threads": int | None,
}
Config = TypeVar("Config")


def baseline_parser(description: str | None) -> argparse.ArgumentParser:
    """An argument parser with the options every baseline script takes: ``--dataset``,
    ``--output-dir``, ``--seed``, ``--max-test-users``, ``--eval-seed``, ``--device``,
    ``--threads``."""
    parser = argparse.ArgumentParser(
        description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--dataset", help="dataset folder (default: the embedded Amazon Scientific set)"
    )
    parser.add_argument("--output-dir", required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--max-test-users", type=int, help="evaluate a seeded random sample of the test users"
    )
    parser.add_argument(
        "--eval-seed",
        type=int,
        default=EVAL_SEED,
        help="seed of the test (and validation) user sample, fixed apart from --seed so that "
        "every system and training seed is ranked on the same users",
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--threads", type=int, help="torch CPU threads (1 is fastest on a small, busy machine)"
    )
    return parser


def _usage_error(parser: argparse.ArgumentParser, error: ValueError) -> NoReturn:
    parser.error(str(error))  # one line on stderr, exit status 2


def parse_args(parser: argparse.ArgumentParser) -> argparse.Namespace:
    """``parser.parse_args()``, with the settings of :func:`baseline_parser` checked by the
    package's one settings checker (:func:`store_hf.run_config.check_settings`): a value out of
    range (``--max-test-users 0``) is a usage error naming it, before anything is read."""
    args = parser.parse_args()
    try:
        check_settings(
            {k: getattr(args, k) for k in COMMON_SETTINGS}, COMMON_SETTINGS, "command line"
        )
    except ValueError as e:
        _usage_error(parser, e)
    return args


def checked_config(parser: argparse.ArgumentParser, cls: type[Config], **values: Any) -> Config:
    """``cls(**values)`` (a model's settings dataclass: ``SASRecConfig``, ``TIGERConfig``,
    ``RQVAEConfig``) after the package's settings checker (types from ``cls``'s annotations,
    ranges by name); a bad value, or one ``cls`` refuses, is a usage error naming the field."""
    try:
        return cls(**check_settings(values, cls, "command line", prefix=f"{cls.__name__}."))
    except ValueError as e:
        _usage_error(parser, e)


@dataclass
class BaselineData:
    """The dataset, its leave-one-out splits and the test users a script ranks."""

    dataset: RecDataset
    splits: dict
    #: ``splits["test"]`` sampled with the evaluation seed: the users ``store-hf evaluate`` and
    #: ``benchmarks/quality.py`` rank for the same seed.
    test: Any

    def popular_metrics(self) -> dict[str, float]:
        """MostPopular, fitted on the training split, ranked on the same test users."""
        popular = MostPopular().fit(self.splits["train"], item_ids=self.dataset.item_ids)
        return ranking_metrics(popular.rank_targets(self.test["history"], self.test["target"]), KS)

    def summary(self, eval_seed: int) -> dict[str, Any]:
        """The report's lines on the data and the users it ranks."""
        test, total = len(self.test), len(self.splits["test"])
        return {
            "dataset": self.dataset.name,
            "items": self.dataset.num_items,
            "users": self.dataset.num_users,
            "test_users_evaluated": test,
            "test_users_total": total,
            "test_users_note": "all test users"
            if test == total
            else f"seeded random sample (eval seed {eval_seed}) of {test} test users",
        }


def start(args: argparse.Namespace, max_history: int) -> BaselineData:
    """Logging, ``--threads`` and the seed (before anything is built), then the dataset, its
    leave-one-out split (histories cut to ``max_history`` items) and the test users."""
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("datasets").setLevel(logging.WARNING)
    if args.threads:
        torch.set_num_threads(args.threads)
    set_seed(args.seed)  # torch, numpy and random
    dataset = load_dataset_or_embedded(args.dataset)
    splits = leave_one_out(dataset, max_history=max_history)
    test = sample_users(splits["test"], args.max_test_users, args.eval_seed)
    return BaselineData(dataset, splits, test)


def best_epoch(fit_log: list[dict]) -> dict:
    """The last epoch that early stopping marked best (the last epoch when none was)."""
    return max((e for e in fit_log if e.get("best")), key=lambda e: e["epoch"], default=fit_log[-1])


def finish(
    output_dir: str | os.PathLike, data: BaselineData, ranks: list[int], report: dict
) -> None:
    """Write ``ranks.json`` (each test user's target rank, 0: not retrieved) and ``metrics.json``
    (``report``) atomically into ``output_dir``, and print the report as JSON."""
    out = Path(output_dir)
    write_json_atomic(out / "ranks.json", {"user_id": list(data.test["user_id"]), "ranks": ranks})
    write_json_atomic(out / "metrics.json", report)
    print(json.dumps(report, indent=1))
