"""Train the SASRec baseline with leave-one-out splits and report full-ranking test metrics.

    python examples/train_sasrec.py --output-dir runs/sasrec
    python examples/train_sasrec.py --dataset path/to/folder --epochs 100 --output-dir runs/s

Per user, the last item is the test target and the second-to-last the validation target; SASRec
trains on the items before them, early-stops on validation NDCG@10 and ranks each test target
among all items (history items not excluded, as STORE evaluates). MostPopular, fitted on the same
training interactions, is reported alongside. Writes OUTPUT_DIR/model (the best SASRec) and
OUTPUT_DIR/metrics.json, and prints the metrics as JSON.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from dataclasses import asdict
from pathlib import Path

import torch
from transformers import set_seed

from store_hf.baselines import MostPopular, SASRec, SASRecConfig
from store_hf.data import (
    EVAL_SEED,
    leave_one_out,
    load_dataset_or_embedded,
    sample_users,
)
from store_hf.files import write_json_atomic
from store_hf.metrics import ranking_metrics

KS = (1, 5, 10, 20)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--dataset", help="dataset folder (default: the embedded Amazon Scientific set)"
    )
    parser.add_argument("--output-dir", required=True)
    parser.add_argument(
        "--epochs", type=int, default=200, help="upper bound; early stopping ends sooner"
    )
    parser.add_argument("--patience", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-len", type=int, default=50)
    parser.add_argument("--dropout", type=float, default=0.5)
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
    args = parser.parse_args()
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("datasets").setLevel(logging.WARNING)
    if args.threads:
        torch.set_num_threads(args.threads)
    set_seed(args.seed)  # torch, numpy and random, before anything is built

    started = time.perf_counter()
    dataset = load_dataset_or_embedded(args.dataset)
    splits = leave_one_out(dataset, max_history=args.max_len)
    # the same users as `store-hf evaluate` and benchmarks/quality.py for the same eval seed
    test = sample_users(splits["test"], args.max_test_users, args.eval_seed)
    test_histories, test_targets = test["history"], test["target"]

    popular = MostPopular().fit(splits["train"], item_ids=dataset.item_ids)
    popular_metrics = ranking_metrics(popular.rank_targets(test_histories, test_targets), KS)

    config = SASRecConfig(
        epochs=args.epochs,
        patience=args.patience,
        seed=args.seed,
        max_len=args.max_len,
        dropout=args.dropout,
    )
    train_started = time.perf_counter()
    model = SASRec.fit(splits, config, item_ids=dataset.item_ids, device=args.device)
    train_seconds = time.perf_counter() - train_started
    eval_started = time.perf_counter()
    ranks = model.rank_targets(test_histories, test_targets)
    eval_seconds = time.perf_counter() - eval_started
    sasrec_metrics = ranking_metrics(ranks, KS)

    best = max(
        (e for e in model.fit_log if e.get("best")),
        key=lambda e: e["epoch"],
        default=model.fit_log[-1],
    )
    out = Path(args.output_dir)
    model.save(out / "model")
    report = {
        "dataset": dataset.name,
        "items": dataset.num_items,
        "users": dataset.num_users,
        "test_users_evaluated": len(test_targets),
        "test_users_total": len(splits["test"]),
        "sasrec": sasrec_metrics,
        "most_popular": popular_metrics,
        "sasrec_best_epoch": best["epoch"],
        "sasrec_epochs_run": len(model.fit_log),
        "sasrec_valid_ndcg@10": best.get("valid_ndcg@10"),
        "config": vars(args) | {"sasrec": asdict(config)},
        "train_seconds": round(train_seconds, 1),
        "eval_seconds": round(eval_seconds, 1),
        "total_seconds": round(time.perf_counter() - started, 1),
    }
    write_json_atomic(out / "ranks.json", {"user_id": list(test["user_id"]), "ranks": ranks})
    write_json_atomic(out / "metrics.json", report)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
