"""Recommendation quality of STORE, its ablations and the baselines, side by side.

    python benchmarks/quality.py                                   # cpu preset, seed 0, all
    python benchmarks/quality.py --systems store,sasrec,popular --seeds 0,1,2
    python benchmarks/quality.py --reuse runs/demo                 # a finished `make demo` run
    python benchmarks/quality.py --seeds 0,1,2 --table-only        # tabulate what has finished

Every system is scored by the same metric code (:mod:`store_hf.metrics`) on the same users:
``--test-users`` (default 2,000; 0: all) test users of the leave-one-out split, drawn with the
fixed ``--eval-seed`` that ``store-hf evaluate`` and the examples use too, so every system and
training seed is ranked on the same people; every ranking is over the whole catalogue. Each
system keeps the rank of every test user's target (0: not retrieved) in its ``result.json``.
Writes ``benchmarks/results/quality-<dataset>-<preset>.md``, ``.json`` and ``-ranks.json`` (every
system's per-user ranks by seed, in the order of ``user_id``): R@10 and N@10 with a
95% bootstrap interval over users, a paired bootstrap test and an exact McNemar test (hits@10)
of ``--reference`` (default ``store``) against every other row, Recall and NDCG at 1/5/10/20
per system (mean over seeds, standard deviation where there are several), each system's
command, seeds, wall and evaluation time, and the machine.

Systems (``--systems``, comma-separated; default all):

  store           the STORE pipeline, ``store-hf run --preset P --seed S``
  store-no-cbs    the same model, beam search constrained per position (LC-Rec's soft
                  constraint: any code valid at that position) instead of the item trie
  store-no-align  the recommender trained without the text-code alignment task, on the
                  tokenizer and codes of ``store`` (``--reuse-stages-from``)
  store-no-dt     without the dense tokenizer: the pretrained backbone's mean-pooled item
                  embedding, RQ-VAE codes, the same recommender (``--semantic-ids llm-rqvae``)
  lcrec           LC-Rec style: the codes and recommender of ``store-no-dt``, beam search
                  constrained per position (LC-Rec's soft constraint)
  tiger-llm       TIGER's codes (MiniLM + RQ-VAE) read by the LLM recommender
                  (``--semantic-ids minilm-rqvae``; paper Table 2, "TIGER OPT-base")
  sasrec          SASRec, cross-entropy over all items (examples/train_sasrec.py)
  tiger           TIGER: MiniLM embeddings, RQ-VAE codes, a small T5 (examples/train_tiger.py)
  popular         the most popular training items
  random          a uniform random ranking

Each system's result for a seed is kept in ``WORK_DIR/<system>-seed<S>/`` and not computed again
on a rerun (``--force`` recomputes), so the harness can be stopped and resumed. ``--merge
RESULTS.json`` adds the rows of an earlier report (its ``-ranks.json`` beside it) for the systems
not run now, so a new ablation is compared with STORE on the same users without training STORE
again; the earlier rows are rebuilt from their per-user ranks and checked against their table.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # ``benchmarks`` (no __init__) imports as a namespace package

from benchmarks.machine import machine_info  # noqa: E402
from store_hf.backbones import resolve_bf16  # noqa: E402
from store_hf.data import (  # noqa: E402
    EVAL_SEED,
    leave_one_out,
    load_dataset_or_embedded,
    sample_users,
)
from store_hf.files import write_json_atomic  # noqa: E402
from store_hf.metrics import (  # noqa: E402
    bootstrap_interval,
    mcnemar_test,
    paired_bootstrap,
    per_user_metric,
    ranking_metrics,
)
from store_hf.pipeline import Pipeline, RunConfig  # noqa: E402
from store_hf.presets import get_preset  # noqa: E402

KS = (1, 5, 10, 20)
SYSTEMS = (
    "store",
    "store-no-cbs",
    "store-no-align",
    "store-no-dt",
    "lcrec",
    "tiger-llm",
    "sasrec",
    "tiger",
    "popular",
    "random",
)
METRICS = [f"{m}@{k}" for m in ("recall", "ndcg") for k in KS]
logger = logging.getLogger("quality")


class Harness:
    """Runs the systems for one seed; each ``system_<name>`` returns the metrics, the command
    that reproduces them and the seconds it took."""

    def __init__(self, args: argparse.Namespace, seed: int) -> None:
        self.args, self.seed = args, seed
        self.preset = get_preset(args.preset)
        self.test_users = None if args.test_users == 0 else args.test_users
        self.dataset = load_dataset_or_embedded(args.dataset)
        max_history = self.preset.recommender.max_history
        self.splits = leave_one_out(self.dataset, max_history=max_history)
        # the users `store-hf evaluate` ranks: drawn with the fixed evaluation seed, the same
        # for every system and training seed
        self.test = sample_users(self.splits["test"], self.test_users, args.eval_seed)

    def folder(self, system: str) -> Path:
        return self.args.work_dir / f"{system}-seed{self.seed}"

    # -- STORE and its ablations
    def _run_config(self, system: str, semantic_ids: str = "store", **recommender) -> RunConfig:
        recommender = {**self.args.recommender, **recommender}
        if self.test_users != self.preset.recommender.max_test_users:
            recommender["max_test_users"] = self.test_users
        values = {
            "output_dir": str(self.folder(system)),
            "preset": self.args.preset,
            "seed": self.seed,
            "eval_seed": self.args.eval_seed,
            "semantic_ids": semantic_ids,
            "recommender": recommender,
        }
        if self.args.dataset:
            values["dataset"] = self.args.dataset
        config = RunConfig.from_dict(values)
        for run in self.args.reuse:  # a finished run of the same settings stands in
            if config.differences(run) == []:
                config.output_dir = str(run)
        return config

    def _store_command(self, config: RunConfig, extra: str = "") -> str:
        cmd = f"store-hf run --preset {config.preset} --seed {config.seed}"
        if config.dataset:
            cmd += f" --dataset {config.dataset}"
        if config.semantic_ids != "store":
            cmd += f" --semantic-ids {config.semantic_ids}"
        overrides = {k: v for k, v in config.recommender.items() if k != "max_test_users"}
        if overrides:  # given by a config file: `recommender:` with these keys
            extra += f"  # recommender: {json.dumps(overrides)}"
        return f"{cmd} --output-dir {config.output_dir}{extra}"

    def _pipeline(
        self, config: RunConfig, reuse_from: Path | None = None
    ) -> tuple[Pipeline, float]:
        pipeline = Pipeline(config)
        if reuse_from is not None:
            pipeline.reuse_stages(reuse_from)
        out = pipeline.run()
        own = ["recommender", "evaluate"]  # the time of the stages this system computed
        if reuse_from is None:
            own += ["tokenizer", "encode", "codebook"]
        seconds = sum(json.loads((out / s / "stage.json").read_text())["seconds"] for s in own)
        return pipeline, seconds

    def _evaluated(self, out: Path) -> dict:
        """Metrics, evaluation time and per-user ranks of a finished pipeline run."""
        metrics = json.loads((out / "evaluate" / "metrics.json").read_text())["systems"]["STORE"]
        ranks = json.loads((out / "evaluate" / "ranks.json").read_text())
        return {
            "metrics": metrics,
            "eval_seconds": metrics.get("seconds"),
            "ranks": self._aligned(ranks, out, "STORE"),
        }

    def _aligned(self, ranks: dict, source: Path, system: str | None = None) -> list[int]:
        """The ranks of a ``ranks.json`` (those of ``system`` where it holds several) in the
        harness' test-user order."""
        values = ranks["ranks"][system] if system else ranks["ranks"]
        return in_user_order(ranks["user_id"], values, list(self.test["user_id"]), source)

    def _store_run(self, system: str, semantic_ids: str = "store") -> dict:
        """A whole pipeline run, scored as ``store-hf evaluate`` scores it (item trie)."""
        config = self._run_config(system, semantic_ids)
        pipeline, seconds = self._pipeline(config)
        command = self._store_command(config)
        return {**self._evaluated(pipeline.out), "command": command, "seconds": seconds}

    def _position_constrained(self, system: str, semantic_ids: str = "store") -> dict:
        """The recommender of the run ``system`` with beam search constrained per position (any
        code valid at that position, LC-Rec's soft constraint) instead of the item trie."""
        from store_hf.evaluation import evaluate_recommender

        pipeline, _ = self._pipeline(self._run_config(system, semantic_ids))
        settings = self.preset.recommender
        t0 = time.perf_counter()
        model = pipeline.load_recommender()
        if resolve_bf16(settings.eval_bf16):  # as the evaluate stage ranks
            model = model.to(torch.bfloat16)
        metrics = evaluate_recommender(
            model,
            self.test,
            ks=KS,
            num_beams=max(settings.num_beams, max(KS)),
            batch_size=settings.eval_batch_size,
            mode="position",
            return_ranks=True,
        )
        ranks = metrics.pop("ranks").tolist()
        command = f"StoreForGenerativeRec.recommend(..., mode='position') on {pipeline.out}"
        seconds = time.perf_counter() - t0
        return {
            "metrics": metrics,
            "ranks": ranks,
            "eval_seconds": seconds,
            "command": command,
            "seconds": seconds,
        }

    def system_store(self) -> dict:
        return self._store_run("store")

    def system_store_no_cbs(self) -> dict:
        return self._position_constrained("store")

    def system_store_no_align(self) -> dict:
        base = Path(self._run_config("store").output_dir)
        self.system_store()  # the stages to share must exist
        config = self._run_config("store-no-align", alignment=False)
        yaml = self.folder("store-no-align").parent / "no-align.yaml"
        if not yaml.exists():
            yaml.parent.mkdir(parents=True, exist_ok=True)
            yaml.write_text("recommender:\n  alignment: false\n")
        pipeline, seconds = self._pipeline(config, reuse_from=base)
        command = self._store_command(config, f" {yaml} --reuse-stages-from {base}")
        return {**self._evaluated(pipeline.out), "command": command, "seconds": seconds}

    def system_store_no_dt(self) -> dict:
        return self._store_run("store-no-dt", "llm-rqvae")

    def system_lcrec(self) -> dict:
        return self._position_constrained("store-no-dt", "llm-rqvae")

    def system_tiger_llm(self) -> dict:
        return self._store_run("tiger-llm", "minilm-rqvae")

    # -- baselines
    def _example(self, script: str, key: str, extra: list[str]) -> dict:
        out = self.folder(key)
        cmd = [sys.executable, str(ROOT / "examples" / script), "--output-dir", str(out)]
        cmd += ["--seed", str(self.seed), "--eval-seed", str(self.args.eval_seed), *extra]
        if self.test_users:
            cmd += ["--max-test-users", str(self.test_users)]
        if self.args.dataset:
            cmd += ["--dataset", self.args.dataset]
        t0 = time.perf_counter()
        with open(out.parent / f"{key}-seed{self.seed}.log", "w") as log:
            subprocess.run(cmd, check=True, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
        report = json.loads((out / "metrics.json").read_text())
        if report["test_users_evaluated"] != len(self.test):
            raise RuntimeError(f"{script} ranked {report['test_users_evaluated']} test users, "
                               f"the harness {len(self.test)}")  # fmt: skip
        shown = [os.path.relpath(cmd[1], ROOT), *cmd[2:]]
        ranks = json.loads((out / "ranks.json").read_text())
        return {
            "metrics": report[key],
            "ranks": self._aligned(ranks, out),
            "eval_seconds": report.get(
                "eval_seconds", report.get("seconds", {}).get("test_beam_search")
            ),
            "command": "python " + shlex.join(shown),
            "seconds": time.perf_counter() - t0,
        }

    def system_sasrec(self) -> dict:
        return self._example("train_sasrec.py", "sasrec", ["--threads", "1"])

    def system_tiger(self) -> dict:
        return self._example("train_tiger.py", "tiger", ["--size", "cpu", "--threads", "1"])

    def _ranker(self, model, name: str) -> dict:
        t0 = time.perf_counter()
        model.fit(self.splits["train"], item_ids=self.dataset.item_ids)
        t1 = time.perf_counter()
        ranks = model.rank_targets(self.test["history"], self.test["target"])
        return {
            "metrics": ranking_metrics(ranks, KS),
            "ranks": ranks.tolist(),
            "eval_seconds": time.perf_counter() - t1,
            "command": f"store_hf.baselines.{name}.fit(train).rank_targets(test)",
            "seconds": time.perf_counter() - t0,
        }

    def system_popular(self) -> dict:
        from store_hf.baselines import MostPopular

        return self._ranker(MostPopular(), "MostPopular")

    def system_random(self) -> dict:
        from store_hf.baselines import RandomRecommender

        return self._ranker(RandomRecommender(seed=self.seed), "RandomRecommender")

    def run(self, system: str) -> dict | None:
        """The system's result for this seed, from its folder if already computed (``None``
        under ``--table-only`` when it is not)."""
        path = self.folder(system) / "result.json"
        if path.is_file() and not self.args.force:
            return json.loads(path.read_text())
        if self.args.table_only:
            return None
        logger.info("%s, seed %d: started", system, self.seed)
        result = getattr(self, "system_" + system.replace("-", "_"))()
        result |= {
            "seed": self.seed,
            "eval_seed": self.args.eval_seed,
            "test_users": len(self.test),
            "user_id": list(self.test["user_id"]),
        }
        write_json_atomic(path, result)
        logger.info("%s, seed %d: %s", system, self.seed, result["metrics"])
        return result


PAIRED = ("recall@10", "ndcg@10")  # the metrics given intervals and paired tests


def per_user(runs: list[dict], metric: str) -> np.ndarray:
    """``(num_users,)`` per-user values of ``metric``, averaged over the system's seeds (every
    seed ranks the same users, in the same order)."""
    return np.mean([per_user_metric(np.asarray(r["ranks"]), metric) for r in runs], axis=0)


def aggregate(results: dict[str, list[dict]], reference: str | None) -> dict[str, dict]:
    """Per system: mean and (several seeds) standard deviation over seeds of every metric; for
    ``PAIRED`` a 95% bootstrap interval over users and, against ``reference``, a paired
    bootstrap of the per-user difference and (hits@10) an exact McNemar test."""
    table = {}
    for system, runs in results.items():
        row = {
            "seeds": [r["seed"] for r in runs],
            "seconds": [round(r["seconds"]) for r in runs],
            "eval_seconds": [
                None if r.get("eval_seconds") is None else round(r["eval_seconds"]) for r in runs
            ],
        }
        for m in METRICS:
            values = [r["metrics"][m] for r in runs]
            row[m] = statistics.fmean(values)
            row[m + "_std"] = statistics.stdev(values) if len(values) > 1 else None
        if all("ranks" in r for r in runs):
            for m in PAIRED:
                row[m + "_ci95"] = bootstrap_interval(per_user(runs, m))
        row["commands"] = [r["command"] for r in runs]
        row["test_users"] = runs[0]["test_users"]
        table[system] = row
    if reference in results and all("ranks" in r for r in results[reference]):
        base = results[reference]
        for system, runs in results.items():
            if system == reference or not all("ranks" in r for r in runs):
                continue
            paired = {}
            for m in PAIRED:
                paired[m] = paired_bootstrap(per_user(base, m), per_user(runs, m))
            hits = [per_user_metric(np.asarray(r[0]["ranks"]), "recall@10") for r in (base, runs)]
            paired["recall@10"]["mcnemar"] = mcnemar_test(hits[0], hits[1])
            table[system]["versus_" + reference] = paired
    return table


def in_user_order(saved_users: list, values: list, users: list, source: Path) -> list[int]:
    """``values`` (one per user of ``saved_users``) in the order of ``users``; both must be the
    same users, or the paired tests would compare different people."""
    if sorted(saved_users) != sorted(users):
        raise RuntimeError(
            f"{source}: ranked other test users than the harness ({len(saved_users)} vs "
            f"{len(users)}); rerun it with the same --test-users and --eval-seed"
        )
    by_user = dict(zip(saved_users, values))
    return [int(by_user[u]) for u in users]


def earlier_results(path: Path, user_ids: list, eval_seed: int) -> dict[str, list[dict]]:
    """The per-seed results of an earlier report ``path`` (``quality-*.json``, its per-user
    ranks in ``quality-*-ranks.json`` beside it), in the form :meth:`Harness.run` returns.

    Every metric is recomputed from the ranks and must match the earlier table, and the earlier
    report must have ranked ``user_ids`` (in any order) with ``eval_seed``: otherwise its paired
    tests would compare other people."""
    ranks_path = path.with_name(path.stem + "-ranks.json")
    for f in (path, ranks_path):
        if not f.is_file():
            raise FileNotFoundError(f"{f} does not exist")
    table = json.loads(path.read_text())["systems"]
    saved = json.loads(ranks_path.read_text())
    if saved["eval_seed"] != eval_seed:
        raise ValueError(
            f"{ranks_path} ranked other test users (eval seed {saved['eval_seed']}) "
            f"than this run (eval seed {eval_seed})"
        )
    results: dict[str, list[dict]] = {}
    for system, by_seed in saved["ranks"].items():
        row = table.get(system)
        if row is None:
            raise ValueError(f"{ranks_path} has ranks of {system!r}, {path} no row")
        runs = []
        for seed, ranks in by_seed.items():
            i = row["seeds"].index(int(seed))
            ordered = np.asarray(in_user_order(saved["user_id"], ranks, user_ids, ranks_path))
            metrics = {m: float(per_user_metric(ordered, m).mean()) for m in METRICS}
            runs.append(
                {
                    "metrics": metrics,
                    "ranks": ordered.tolist(),
                    "seed": int(seed),
                    "seconds": row["seconds"][i],
                    "eval_seconds": row["eval_seconds"][i],
                    "command": row["commands"][i],
                    "test_users": len(user_ids),
                }
            )
        for m in METRICS:  # the ranks are those the table was computed from
            mean = statistics.fmean(r["metrics"][m] for r in runs)
            if not np.isclose(mean, row[m], rtol=0, atol=1e-9):
                raise ValueError(f"{system} {m} from {ranks_path} is {mean}, {path} {row[m]}")
        results[system] = runs
    return results


def _verdict(test: dict, reference: str, system: str, alpha: float = 0.05) -> str:
    if test["p_value"] >= alpha:
        return "within noise"
    return f"{reference} better" if test["difference"] > 0 else f"{system} better"


def markdown(info: dict, table: dict, title: str, reference: str | None) -> str:
    def cell(row, m):
        std = row[m + "_std"]
        return f"{row[m]:.4f}" + (f" ± {std:.4f}" if std is not None else "")

    def interval(row, m):
        ci = row.get(m + "_ci95")
        return f"{row[m]:.4f} [{ci[0]:.4f}, {ci[1]:.4f}]" if ci else f"{row[m]:.4f}"

    def paired(row, system, m):
        test = row.get(f"versus_{reference}", {}).get(m)
        if test is None:
            return "reference" if system == reference else "n/a"
        # the bootstrap p has a resolution of 2 / resamples: 0 means below that
        p = f"p={test['p_value']:.3g}" if test["p_value"] > 0 else "p<0.0002"
        return (
            f"{test['difference']:+.4f} [{test['low']:+.4f}, {test['high']:+.4f}], "
            f"{p} ({_verdict(test, reference, system)})"
        )

    lines = [
        f"# Recommendation quality: {title}",
        "",
        f"Written by `benchmarks/quality.py` on {info['date']}.",
        "",
        f"- command: `{info['command']}`",
        f"- machine: {info['cpu']}, {info['cores']} cores, GPU {info['gpu'] or 'none'}; "
        f"python {info['python']}, torch {info['torch']}, transformers {info['transformers']}",
        f"- {info['split']}",
        *(
            [
                f"- the rows of the systems this command did not run are those of "
                f"`{info['merged']}` (same users; their own commands are listed below)"
            ]
            if info.get("merged")
            else []
        ),
        "- every system and seed is ranked on the same test users (fixed evaluation seed); "
        "per-user ranks are kept in `result.json` of each system's folder",
        "",
        "## Intervals and paired tests",
        "",
        "Mean over seeds with a 95% bootstrap interval over users (10,000 resamples of the "
        f"users). The last columns compare each system with **{reference}** on the same users: "
        f"the mean per-user difference {reference} minus system, its 95% paired-bootstrap "
        "interval and two-sided p-value, and the exact McNemar test on hits@10; differences with "
        "p >= 0.05 are within noise.",
        "",
        f"| system | R@10 [95% CI] | N@10 [95% CI] | {reference} - system, R@10 | "
        f"{reference} - system, N@10 | McNemar p (hits@10) | eval s |",
        "|---|---|---|---|---|---|---|",
    ]
    for system, row in table.items():
        mc = row.get(f"versus_{reference}", {}).get("recall@10", {}).get("mcnemar")
        evals = ",".join("-" if e is None else str(e) for e in row["eval_seconds"])
        lines.append(
            f"| {system} | {interval(row, 'recall@10')} | {interval(row, 'ndcg@10')} | "
            f"{paired(row, system, 'recall@10')} | {paired(row, system, 'ndcg@10')} | "
            f"{'' if mc is None else format(mc['p_value'], '.3g')} | {evals} |"
        )
    lines += [
        "",
        "## All metrics",
        "",
        "Mean over seeds; ± is the standard deviation over seeds where there are several.",
        "",
        "| system | "
        + " | ".join(m.replace("recall", "R").replace("ndcg", "N") for m in METRICS)
        + " | seeds | wall s |",
        "|---" * (len(METRICS) + 3) + "|",
    ]
    for system, row in table.items():
        cells = [cell(row, m) for m in METRICS]
        seeds = ",".join(map(str, row["seeds"]))
        wall = ",".join(map(str, row["seconds"]))
        lines.append(f"| {system} | " + " | ".join(cells) + f" | {seeds} | {wall} |")
    lines += ["", "## Commands", ""]
    for system, row in table.items():
        lines += [f"- {system}:"] + [f"  - `{c}`" for c in row["commands"]]
    return "\n".join(lines) + "\n"


def parse_settings(text: str) -> dict:
    """``key=value,...`` -> a dict, values read as JSON where they parse (numbers, null)."""
    out = {}
    for pair in filter(None, text.split(",")):
        key, _, value = pair.partition("=")
        try:
            out[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            out[key.strip()] = value.strip()
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--systems", default=",".join(SYSTEMS), help="comma-separated")
    p.add_argument("--seeds", default="0", help="comma-separated, e.g. 0,1,2")
    p.add_argument("--preset", default="cpu", help="store-hf preset of the STORE runs")
    p.add_argument("--dataset", help="dataset folder (default: the embedded Amazon Scientific)")
    p.add_argument(
        "--test-users",
        type=int,
        default=2000,
        help="test users to rank, drawn with --eval-seed (default 2,000; 0: all of them)",
    )
    p.add_argument(
        "--eval-seed",
        type=int,
        default=EVAL_SEED,
        help="seed of the test-user sample: fixed, apart from the training seeds",
    )
    p.add_argument(
        "--reference", default="store", help="the system every other row is compared with"
    )
    p.add_argument(
        "--recommender",
        type=parse_settings,
        default={},
        help="recommender settings of the STORE systems over the preset's, e.g. "
        "'num_epochs=0.25,early_stopping_metric=loss' (part of their run identity)",
    )
    p.add_argument("--work-dir", type=Path, default=ROOT / "runs" / "quality")
    p.add_argument(
        "--reuse", nargs="*", default=[], help="finished store-hf runs to use where they match"
    )
    p.add_argument("--force", action="store_true", help="recompute finished systems")
    p.add_argument(
        "--merge",
        type=Path,
        help="an earlier report (quality-*.json, its -ranks.json beside it) whose rows join the "
        "table for the systems not run now (same test users and eval seed)",
    )
    p.add_argument(
        "--table-only",
        action="store_true",
        help="compute nothing: tabulate the finished results of these systems and seeds (a "
        "system's row then averages the seeds it has)",
    )
    p.add_argument("--output-dir", type=Path, default=ROOT / "benchmarks" / "results")
    args = p.parse_args()
    systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    unknown = sorted(set(systems) - set(SYSTEMS))
    if unknown:
        p.error(f"unknown systems {unknown}; known: {', '.join(SYSTEMS)}")
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("datasets").setLevel(logging.WARNING)

    info = machine_info(preset=args.preset, systems=systems)
    results: dict[str, list[dict]] = {s: [] for s in systems}
    seeds = [int(s) for s in args.seeds.split(",")]
    earlier: dict[str, list[dict]] = {}
    harness = Harness(args, seeds[0])
    if args.merge:  # checked before anything trains
        users = list(harness.test["user_id"])
        try:
            earlier = earlier_results(args.merge, users, args.eval_seed)
        except (OSError, ValueError, RuntimeError, KeyError) as e:
            p.error(f"{args.merge}: {e!r}" if isinstance(e, KeyError) else f"--merge: {e}")
        info["merged"] = str(args.merge)
    for seed in seeds:
        if seed != harness.seed:
            harness = Harness(args, seed)
        for system in systems:
            result = harness.run(system)
            if result is not None:
                results[system].append(result)
    results = {s: runs for s, runs in results.items() if runs}
    # the earlier rows first, in their order; a system run now replaces its earlier row
    results = {s: runs for s, runs in earlier.items() if s not in results} | results
    if not results:
        p.error(f"no finished results in {args.work_dir} for these systems and seeds")
    name = harness.dataset.name
    info["split"] = (
        f"{name}: {harness.dataset.num_items:,} items, {harness.dataset.num_users:,} users; "
        f"leave-one-out test split, {len(harness.test):,} of {len(harness.splits['test']):,} "
        f"test users (eval seed {args.eval_seed}: the sample `store-hf evaluate` ranks), full "
        "ranking over all items"
    )
    reference = args.reference if args.reference in results else next(iter(results))
    table = aggregate(results, reference)
    stem = f"quality-{name.lower()}-{args.preset}"
    md = markdown(info, table, f"{name}, preset {args.preset}", reference)
    args.output_dir.mkdir(parents=True, exist_ok=True)
    (args.output_dir / f"{stem}.md").write_text(md)
    write_json_atomic(args.output_dir / f"{stem}.json", {"machine": info, "systems": table})
    # every system's per-user target ranks (0: not retrieved), for later paired comparisons
    ranked = {s: runs for s, runs in results.items() if all("ranks" in r for r in runs)}
    if ranked:
        write_json_atomic(
            args.output_dir / f"{stem}-ranks.json",
            {
                "user_id": list(harness.test["user_id"]),
                "eval_seed": args.eval_seed,
                "ranks": {
                    s: {str(r["seed"]): r["ranks"] for r in runs} for s, runs in ranked.items()
                },
            },
            indent=None,
        )
    print(md)


if __name__ == "__main__":
    main()
