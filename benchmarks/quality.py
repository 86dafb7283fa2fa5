"""Recommendation quality of STORE, its ablations and the baselines, side by side.

    python benchmarks/quality.py                                   # cpu preset, seed 0, all
    python benchmarks/quality.py --systems store,sasrec,popular --seeds 0,1,2
    python benchmarks/quality.py --reuse runs/demo                 # a finished `make demo` run
    python benchmarks/quality.py --seeds 0,1,2 --table-only        # tabulate what has finished

Every system is scored by the same metric code (:mod:`store_hf.metrics`) on the same users: the
leave-one-out test split, or the seeded sample of ``--test-users`` users of it that
``store-hf evaluate`` ranks for the same seed; every ranking is over the whole catalogue. Writes
``benchmarks/results/quality-<dataset>-<preset>.md`` and ``.json``: Recall and NDCG at 1/5/10/20
per system (the mean over seeds, and the standard deviation where there are several), each
system's command, seeds and wall time, and the machine.

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
on a rerun (``--force`` recomputes), so the harness can be stopped and resumed.
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

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # ``benchmarks`` (no __init__) imports as a namespace package

from benchmarks.machine import machine_info  # noqa: E402
from store_hf.data import (  # noqa: E402
    leave_one_out,
    load_embedded_dataset,
    read_dataset,
    sample_users,
)
from store_hf.metrics import ranking_metrics  # noqa: E402
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


def write_json(path: Path, value) -> None:
    """Write atomically: a killed run never leaves a half-written result that looks finished."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(value, indent=1, default=str) + "\n")
    os.replace(tmp, path)


class Harness:
    """Runs the systems for one seed; each ``system_<name>`` returns the metrics, the command
    that reproduces them and the seconds it took."""

    def __init__(self, args: argparse.Namespace, seed: int) -> None:
        self.args, self.seed = args, seed
        self.preset = get_preset(args.preset)
        self.test_users = args.test_users or self.preset.recommender.max_eval_users
        self.dataset = read_dataset(args.dataset) if args.dataset else load_embedded_dataset()
        max_history = self.preset.recommender.max_history
        self.splits = leave_one_out(self.dataset, max_history=max_history)
        # the users `store-hf evaluate` ranks for this seed (pipeline: seed + 1 for the test)
        self.test = sample_users(self.splits["test"], self.test_users, seed + 1)

    def folder(self, system: str) -> Path:
        return self.args.work_dir / f"{system}-seed{self.seed}"

    # -- STORE and its ablations
    def _run_config(self, system: str, semantic_ids: str = "store", **recommender) -> RunConfig:
        if self.test_users != self.preset.recommender.max_eval_users:
            recommender["max_eval_users"] = self.test_users
        values = {
            "output_dir": str(self.folder(system)),
            "preset": self.args.preset,
            "seed": self.seed,
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

    def _store_run(self, system: str, semantic_ids: str = "store") -> dict:
        """A whole pipeline run, scored as ``store-hf evaluate`` scores it (item trie)."""
        config = self._run_config(system, semantic_ids)
        pipeline, seconds = self._pipeline(config)
        metrics = json.loads((pipeline.out / "evaluate" / "metrics.json").read_text())
        command = self._store_command(config)
        return {"metrics": metrics["systems"]["STORE"], "command": command, "seconds": seconds}

    def _position_constrained(self, system: str, semantic_ids: str = "store") -> dict:
        """The recommender of the run ``system`` with beam search constrained per position (any
        code valid at that position, LC-Rec's soft constraint) instead of the item trie."""
        from store_hf.rec_training import evaluate_recommender

        pipeline, _ = self._pipeline(self._run_config(system, semantic_ids))
        settings = self.preset.recommender
        t0 = time.perf_counter()
        metrics = evaluate_recommender(
            pipeline.load_recommender(),
            self.test,
            ks=KS,
            num_beams=max(settings.num_beams, max(KS)),
            batch_size=settings.eval_batch_size,
            mode="position",
        )
        command = f"StoreForGenerativeRec.recommend(..., mode='position') on {pipeline.out}"
        return {"metrics": metrics, "command": command, "seconds": time.perf_counter() - t0}

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
        metrics = json.loads((pipeline.out / "evaluate" / "metrics.json").read_text())
        command = self._store_command(config, f" {yaml} --reuse-stages-from {base}")
        return {"metrics": metrics["systems"]["STORE"], "command": command, "seconds": seconds}

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
        cmd += ["--seed", str(self.seed), *extra]
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
        return {
            "metrics": report[key],
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
        ranks = model.rank_targets(self.test["history"], self.test["target"])
        return {
            "metrics": ranking_metrics(ranks, KS),
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
        result |= {"seed": self.seed, "test_users": len(self.test)}
        write_json(path, result)
        logger.info("%s, seed %d: %s", system, self.seed, result["metrics"])
        return result


def aggregate(results: dict[str, list[dict]]) -> dict[str, dict]:
    """Per system: mean and (several seeds) standard deviation of every metric."""
    table = {}
    for system, runs in results.items():
        row = {"seeds": [r["seed"] for r in runs], "seconds": [round(r["seconds"]) for r in runs]}
        for m in METRICS:
            values = [r["metrics"][m] for r in runs]
            row[m] = statistics.fmean(values)
            row[m + "_std"] = statistics.stdev(values) if len(values) > 1 else None
        row["commands"] = [r["command"] for r in runs]
        row["test_users"] = runs[0]["test_users"]
        table[system] = row
    return table


def markdown(info: dict, table: dict, title: str) -> str:
    def cell(row, m):
        std = row[m + "_std"]
        return f"{row[m]:.4f}" + (f" ± {std:.4f}" if std is not None else "")

    lines = [
        f"# Recommendation quality: {title}",
        "",
        f"Written by `benchmarks/quality.py` on {info['date']}.",
        "",
        f"- command: `{info['command']}`",
        f"- machine: {info['cpu']}, {info['cores']} cores, GPU {info['gpu'] or 'none'}; "
        f"python {info['python']}, torch {info['torch']}, transformers {info['transformers']}",
        f"- {info['split']}",
        "- mean over seeds; ± is the standard deviation over seeds where there are several",
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


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--systems", default=",".join(SYSTEMS), help="comma-separated")
    p.add_argument("--seeds", default="0", help="comma-separated, e.g. 0,1,2")
    p.add_argument("--preset", default="cpu", help="store-hf preset of the STORE runs")
    p.add_argument("--dataset", help="dataset folder (default: the embedded Amazon Scientific)")
    p.add_argument(
        "--test-users", type=int, help="test users to rank (default: the preset's, cpu: 300)"
    )
    p.add_argument("--work-dir", type=Path, default=ROOT / "runs" / "quality")
    p.add_argument(
        "--reuse", nargs="*", default=[], help="finished store-hf runs to use where they match"
    )
    p.add_argument("--force", action="store_true", help="recompute finished systems")
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
    harness = None
    for seed in (int(s) for s in args.seeds.split(",")):
        harness = Harness(args, seed)
        for system in systems:
            result = harness.run(system)
            if result is not None:
                results[system].append(result)
    results = {s: runs for s, runs in results.items() if runs}
    if not results:
        p.error(f"no finished results in {args.work_dir} for these systems and seeds")
    name = harness.dataset.name
    info["split"] = (
        f"{name}: {harness.dataset.num_items:,} items, {harness.dataset.num_users:,} users; "
        f"leave-one-out test split, {len(harness.test):,} of {len(harness.splits['test']):,} "
        "test users (the seeded sample `store-hf evaluate` ranks), full ranking over all items"
    )
    table = aggregate(results)
    stem = f"quality-{name.lower()}-{args.preset}"
    md = markdown(info, table, f"{name}, preset {args.preset}")
    args.output_dir.mkdir(parents=True, exist_ok=True)
    (args.output_dir / f"{stem}.md").write_text(md)
    write_json(args.output_dir / f"{stem}.json", {"machine": info, "systems": table})
    print(md)


if __name__ == "__main__":
    main()
