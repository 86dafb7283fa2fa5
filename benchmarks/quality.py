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
command, seeds, wall and evaluation time, the seconds of each pipeline stage of the STORE rows
(validation included), and the machine.

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
  tiger           TIGER: MiniLM embeddings, RQ-VAE codes, T5 at the paper's size (4 + 4 layers,
                  d_model 128, 6 heads, d_ff 1024; examples/train_tiger.py --size paper)
  tiger-cpu       the same with a down-sized T5 (2 + 2 layers, d_ff 256; --size cpu)
  popular         the most popular training items
  random          a uniform random ranking

Each system's result for a seed is kept in ``WORK_DIR/<system>-seed<S>/`` and not computed again
on a rerun (``--force`` recomputes), so the harness can be stopped and resumed. ``--merge
RESULTS.json`` adds the rows of an earlier report (its ``-ranks.json`` beside it) for the systems
not run now, so a new ablation is compared with STORE on the same users without training STORE
again; the earlier rows are rebuilt from their per-user ranks and checked against their table.
For a system run now, the merged report's other seeds of it join its row where each was run
under the same identity (system, sample, dataset, preset, settings), so the seeds of one
configuration can be trained in different sessions: ``--systems store --seeds 1 --merge
quality-...-seed0.json`` tabulates seeds 0 and 1 as one row.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import shlex
import statistics
import subprocess
import sys
import time
from functools import partial
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # ``benchmarks`` (no __init__) imports as a namespace package

from benchmarks.machine import machine_info  # noqa: E402
from store_hf.backbones import resolve_bf16  # noqa: E402
from store_hf.data import (  # noqa: E402
    CONFIRMATION_SEED,
    EVAL_SEED,
    confirmation_sample,
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
    "tiger-cpu",
    "popular",
    "random",
)
METRICS = [f"{m}@{k}" for m in ("recall", "ndcg") for k in KS]
#: The stages of a ``store-hf run``, in order; each records its seconds in its ``stage.json``.
STAGES = ("tokenizer", "encode", "codebook", "recommender", "evaluate")
logger = logging.getLogger("quality")


VARIANTS = {  # ranks key of a result -> how the history is treated
    "ranks": "history items kept",
    "ranks_excluding_history": "history items excluded",
}


class ResultMismatch(ValueError):
    """A saved result was computed for another run than the one asked for."""


class Harness:
    """Runs the systems for one seed; each ``system_<name>`` returns both variants of the
    per-user ranks (``VARIANTS``), the command that reproduces them and the seconds it took."""

    def __init__(self, args: argparse.Namespace, seed: int) -> None:
        self.args, self.seed = args, seed
        self.preset = get_preset(args.preset)
        self.test_users = None if args.test_users == 0 else args.test_users
        self.dataset = load_dataset_or_embedded(args.dataset)
        self.splits = self._splits(self.preset.recommender.max_history)
        if args.final:  # users no tuning round has looked at (store_hf.data.confirmation_sample)
            self.test = confirmation_sample(self.splits["test"], args.test_users or 2000)
            self.sample = f"confirmation (seed {CONFIRMATION_SEED}, {len(self.test)} users)"
        else:
            # the users `store-hf evaluate` ranks: drawn with the fixed evaluation seed, the
            # same for every system and training seed
            self.test = sample_users(self.splits["test"], self.test_users, args.eval_seed)
            self.sample = f"eval seed {args.eval_seed}, {len(self.test)} users"

    def _splits(self, max_history: int) -> dict:
        return leave_one_out(self.dataset, max_history=max_history)

    def rows(self, max_history: int):
        """The test users' rows with histories cut to ``max_history`` items (each system is
        given the history it was trained to read), in the order of ``self.test``."""
        if max_history == self.preset.recommender.max_history:
            return self.test
        split = self._splits(max_history)["test"]
        index = {u: i for i, u in enumerate(split["user_id"])}
        return split.select([index[u] for u in self.test["user_id"]])

    def folder(self, system: str) -> Path:
        return self.args.work_dir / f"{system}-seed{self.seed}"

    def identity(self, system: str) -> dict:
        """What a saved result must match to stand in for this run of ``system``."""
        ident = {
            "system": system,
            "seed": self.seed,
            "sample": self.sample,
            "dataset": [self.dataset.name, self.dataset.num_items, self.dataset.num_users],
        }
        if system.startswith("store") or system in ("lcrec", "tiger-llm"):
            ident |= {"preset": self.args.preset, "recommender": self.args.recommender}
            # what the preset resolves to today: its defaults can change between two runs
            ident["settings"] = self._run_config("store").settings()
        return ident

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
    ) -> tuple[Pipeline, dict[str, float]]:
        """The finished run of ``config`` (its first stages taken from ``reuse_from``) and the
        seconds of the stages it computed itself (:func:`stage_seconds`)."""
        pipeline = Pipeline(config)
        if reuse_from is not None:
            pipeline.reuse_stages(reuse_from)
        out = pipeline.run()
        return pipeline, stage_seconds(out, reused=reuse_from is not None)

    def _timed(
        self, ranked: dict, command: str, stages: dict[str, float], pipeline: Pipeline
    ) -> dict:
        """A STORE system's result: its ranks, command, stage times, total seconds and the
        fingerprint of the codes its model ranked with (:func:`codes_fingerprint`)."""
        seconds = sum(v for k, v in stages.items() if k in STAGES) + ranked["eval_seconds"]
        return {
            **ranked,
            "command": command,
            "stage_seconds": stages,
            "seconds": seconds,
            "codes": codes_fingerprint(pipeline.out),
        }

    def _ranked(self, pipeline: Pipeline, mode: str = "trie") -> dict:
        """Both variants of the ranks of the run's recommender on the harness' users, ranked
        as the evaluate stage ranks (precision, beams); the kept-history ranks of the trie are
        the evaluate stage's own where it ranked these users."""
        from store_hf.evaluation import rank_targets

        settings = self.preset.recommender
        t0 = time.perf_counter()
        model = None
        ranks = {}
        for key in VARIANTS:
            exclude = key != "ranks"
            saved = pipeline.out / "evaluate" / "ranks.json"
            if not exclude and mode == "trie" and not self.args.final and saved.is_file():
                ranks[key] = self._aligned(json.loads(saved.read_text()), saved, "STORE")
                continue
            if model is None:
                model = pipeline.load_recommender()
                if resolve_bf16(settings.eval_bf16):  # as the evaluate stage ranks
                    model = model.to(torch.bfloat16)
            ranks[key] = rank_targets(
                model,
                self.test,
                k=max(KS),
                num_beams=max(settings.num_beams, max(KS)),
                batch_size=settings.eval_batch_size,
                mode=mode,
                exclude_history=exclude,
            ).tolist()
        return {**ranks, "eval_seconds": time.perf_counter() - t0}

    def _aligned(self, ranks: dict, source: Path, system: str | None = None) -> list[int]:
        """The ranks of a ``ranks.json`` (those of ``system`` where it holds several) in the
        harness' test-user order."""
        values = ranks["ranks"][system] if system else ranks["ranks"]
        return in_user_order(ranks["user_id"], values, list(self.test["user_id"]), source)

    def _store_run(self, system: str, semantic_ids: str = "store", mode: str = "trie") -> dict:
        """A whole pipeline run, its recommender ranked with the item trie (``mode="trie"``,
        as ``store-hf evaluate`` ranks) or per position."""
        config = self._run_config(system, semantic_ids)
        pipeline, stages = self._pipeline(config)
        command = self._store_command(config)
        if mode != "trie":  # another system's model, ranked otherwise: no stage is this row's
            command = f"StoreForGenerativeRec.recommend(..., mode={mode!r}) on {pipeline.out}"
            stages = {}
        return self._timed(self._ranked(pipeline, mode), command, stages, pipeline)

    def system_store(self) -> dict:
        return self._store_run("store")

    def system_store_no_cbs(self) -> dict:
        return self._store_run("store", mode="position")

    def system_store_no_align(self) -> dict:
        base = Path(self._run_config("store").output_dir)
        self._pipeline(self._run_config("store"))  # the stages to share must exist
        config = self._run_config("store-no-align", alignment=False)
        yaml = self.folder("store-no-align").parent / "no-align.yaml"
        if not yaml.exists():
            yaml.parent.mkdir(parents=True, exist_ok=True)
            yaml.write_text("recommender:\n  alignment: false\n")
        pipeline, stages = self._pipeline(config, reuse_from=base)
        command = self._store_command(config, f" {yaml} --reuse-stages-from {base}")
        return self._timed(self._ranked(pipeline), command, stages, pipeline)

    def system_store_no_dt(self) -> dict:
        return self._store_run("store-no-dt", "llm-rqvae")

    def system_lcrec(self) -> dict:
        return self._store_run("store-no-dt", "llm-rqvae", mode="position")

    def system_tiger_llm(self) -> dict:
        return self._store_run("tiger-llm", "minilm-rqvae")

    # -- baselines
    def _example(self, script: str, key: str, extra: list[str], load) -> dict:
        """Train with ``examples/<script>`` (once per seed: a trained model in its folder from
        the same command is reused, e.g. by ``--final``), then rank the harness' users with the
        saved model, both variants."""
        out = self.folder(key)
        cmd = [sys.executable, str(ROOT / "examples" / script), "--output-dir", str(out)]
        cmd += ["--seed", str(self.seed), "--eval-seed", str(self.args.eval_seed), *extra]
        if self.test_users:
            cmd += ["--max-test-users", str(self.test_users)]
        if self.args.dataset:
            cmd += ["--dataset", self.args.dataset]
        shown = "python " + shlex.join([os.path.relpath(cmd[1], ROOT), *cmd[2:]])
        stamp = out / "harness-command.txt"
        t0 = time.perf_counter()
        if self.args.force or not stamp.is_file() or stamp.read_text() != shown:
            out.mkdir(parents=True, exist_ok=True)
            stamp.unlink(missing_ok=True)
            with open(out.parent / f"{key}-seed{self.seed}.log", "w") as log:
                subprocess.run(cmd, check=True, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
            stamp.write_text(shown)
        train_seconds = time.perf_counter() - t0
        report = json.loads((out / "metrics.json").read_text())
        t1 = time.perf_counter()
        model = load(out / "model")
        rank = partial(_rank_variants, model, self.rows(_max_history(model)))
        ranks = {key: rank(exclude_history=key != "ranks").tolist() for key in VARIANTS}
        if not self.args.final and ranks["ranks"] != self._aligned(
            json.loads((out / "ranks.json").read_text()), out
        ):
            raise RuntimeError(
                f"{out}: the saved model ranks the test users otherwise than its script"
            )
        eval_seconds = time.perf_counter() - t1
        recorded = report.get("seconds")  # the script's own total: stays right when reused
        train = recorded.get("total") if isinstance(recorded, dict) else None
        train = train or report.get("total_seconds") or train_seconds
        return {
            **ranks,
            "eval_seconds": eval_seconds,
            "command": shown,
            "seconds": train + eval_seconds,
        }

    def system_sasrec(self) -> dict:
        from store_hf.baselines import SASRec

        return self._example("train_sasrec.py", "sasrec", ["--threads", "1"], SASRec.load)

    def _tiger(self, key: str, size: str) -> dict:
        from store_hf.baselines import TIGER

        extra = ["--size", size, "--threads", "1"]
        return self._example("train_tiger.py", key, extra, TIGER.load)

    def system_tiger(self) -> dict:
        return self._tiger("tiger", "paper")

    def system_tiger_cpu(self) -> dict:
        return self._tiger("tiger-cpu", "cpu")

    def _ranker(self, model, name: str) -> dict:
        t0 = time.perf_counter()
        model.fit(self.splits["train"], item_ids=self.dataset.item_ids)
        t1 = time.perf_counter()
        ranks = {
            key: _rank_variants(model, self.test, exclude_history=key != "ranks").tolist()
            for key in VARIANTS
        }
        return {
            **ranks,
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

    def result_path(self, system: str) -> Path:
        return self.folder(system) / ("result-final.json" if self.args.final else "result.json")

    def run(self, system: str) -> dict | None:
        """The system's result for this seed, from its folder if already computed for the same
        identity and users (``None`` under ``--table-only`` when it is not).

        Raises:
            ResultMismatch: the saved result was computed for another run.
        """
        path = self.result_path(system)
        if path.is_file() and not self.args.force:
            result = self.check_saved(json.loads(path.read_text()), system, path)
            if (
                "stage_seconds" not in result
                and (self.folder(system) / "run_config.json").is_file()
            ):
                # written before results kept their stage times: the run folder has them
                reused = system == "store-no-align"
                result["stage_seconds"] = stage_seconds(self.folder(system), reused)
            if "codes" not in result and system.startswith("store"):
                # written before results kept it: from the run folder, where it still exists
                result["codes"] = codes_fingerprint(self.folder(system))
            return result
        if self.args.table_only:
            return None
        logger.info("%s, seed %d: started", system, self.seed)
        result = getattr(self, "system_" + system.replace("-", "_"))()
        result |= {
            "metrics": ranking_metrics(result["ranks"], KS),
            "metrics_excluding_history": ranking_metrics(result["ranks_excluding_history"], KS),
            "identity": self.identity(system),
            "provenance": provenance(self.args.commit),
            "seed": self.seed,
            "eval_seed": self.args.eval_seed,
            "test_users": len(self.test),
            "user_id": list(self.test["user_id"]),
        }
        write_json_atomic(path, result)
        logger.info("%s, seed %d: %s", system, self.seed, result["metrics"])
        return result

    def check_saved(self, result: dict, system: str, path: Path) -> dict:
        """``result`` if it was computed for this run of ``system`` on these users."""
        expected = self.identity(system)
        saved = result.get("identity")
        if saved is None:
            raise ResultMismatch(
                f"{path} records no identity (written by an older harness); move it away or "
                "pass --force to recompute it"
            )
        differ = {k: (saved.get(k), v) for k, v in expected.items() if saved.get(k) != v}
        if "settings" in differ:  # name the settings, not two dicts of a hundred
            old, new = differ.pop("settings")
            if old is None:
                differ["settings"] = ("not recorded (an older harness)", "the preset's today")
            else:
                for k in sorted(set(old) | set(new)):
                    if old.get(k) != new.get(k):
                        differ[k] = (old.get(k), new.get(k))
        if differ:
            detail = "; ".join(f"{k}: saved {a!r}, asked {b!r}" for k, (a, b) in differ.items())
            raise ResultMismatch(f"{path} was computed for another run ({detail}); pass "
                                 "--force to recompute it or use another --work-dir")  # fmt: skip
        if result.get("user_id") != list(self.test["user_id"]):
            raise ResultMismatch(
                f"{path} ranked other test users ({len(result.get('user_id', []))} users) than "
                f"this run ({len(self.test)}, {self.sample}); pass --force to recompute it"
            )
        return result


def stage_seconds(out: Path, reused: bool = False) -> dict[str, float]:
    """Seconds of each stage the run folder ``out`` computed (``reused``: its stages before the
    recommender came from another run), from their ``stage.json``, plus ``validation``: the part
    of the recommender's seconds spent validating, where recorded. A resumed stage records the
    seconds of its last session only."""
    own = STAGES[STAGES.index("recommender") :] if reused else STAGES
    times = {s: json.loads((out / s / "stage.json").read_text())["seconds"] for s in own}
    validation = json.loads((out / "recommender" / "stage.json").read_text()).get(
        "validation_seconds"
    )
    return times | ({"validation": validation} if validation is not None else {})


def codes_fingerprint(out: Path) -> str | None:
    """The first 16 hex digits of the SHA-256 of the item ids, codebook size and ``(items, v)``
    codes of the run folder ``out``'s codebook stage (``None`` where it has none): two rows with
    the same fingerprint ranked items coded the same way, the premise of a paired lever
    comparison that changes only the recommender."""
    if not (out / "codebook" / "stage.json").is_file():
        return None
    item_ids, codes, size = Pipeline(RunConfig.from_run_folder(out)).item_codes()
    digest = hashlib.sha256(json.dumps([[str(i) for i in item_ids], int(size)]).encode())
    digest.update(np.ascontiguousarray(codes, dtype=np.int64).tobytes())
    return digest.hexdigest()[:16]


def _max_history(model) -> int:
    config = model.config
    return getattr(config, "max_history", None) or config.max_len


def _rank_variants(model, rows, exclude_history: bool) -> np.ndarray:
    """``model.rank_targets`` of ``rows`` with or without the history excluded."""
    return np.asarray(
        model.rank_targets(rows["history"], rows["target"], exclude_history=exclude_history)
    )


def git_commit() -> str:
    """The project's commit, ``+dirty`` when tracked files differ from it."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", "store_hf",
             "benchmarks", "examples"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()  # fmt: skip
    except OSError:
        return "unknown"
    return (head or "unknown") + ("+dirty" if dirty else "")


def provenance(commit: str) -> dict:
    """Where and when a result was computed: machine, date, command and ``commit``, the
    project's commit when the command started (the code it loaded: a commit made while a long
    run trains is not the code it ran)."""
    info = machine_info()
    return {
        "date": info["date"],
        "machine": f"{info['cpu']}, {info['cores']} cores, GPU {info['gpu'] or 'none'}",
        "command": info["command"],
        "commit": commit,
    }


PAIRED = ("recall@10", "ndcg@10")  # the metrics given intervals and paired tests


def per_user(runs: list[dict], metric: str, key: str = "ranks") -> np.ndarray:
    """``(num_users,)`` per-user values of ``metric`` from the ranks ``key``, averaged over the
    system's seeds (every seed ranks the same users, in the same order)."""
    return np.mean([per_user_metric(np.asarray(r[key]), metric) for r in runs], axis=0)


def seed_pairs(base: list[dict], runs: list[dict]) -> list[tuple[dict, dict]]:
    """The runs McNemar pairs: the same training seed where both systems have it, every pair of
    seeds otherwise (a system without seeds, e.g. most-popular, against each reference seed)."""
    same = [(b, r) for b in base for r in runs if b["seed"] == r["seed"]]
    return same if len(same) == max(len(base), len(runs)) else [(b, r) for b in base for r in runs]


def aggregate(
    results: dict[str, list[dict]], reference: str | None, key: str = "ranks"
) -> dict[str, dict]:
    """Per system, from the ranks ``key`` (one of ``VARIANTS``): mean and (several seeds)
    standard deviation over seeds of every metric; for ``PAIRED`` a 95% bootstrap interval over
    users of the seed-averaged per-user values and, against ``reference``, a paired bootstrap of
    the per-user difference (seed-averaged) and exact McNemar tests of hits@10 for every seed
    pair (``seed_pairs``; the largest p is the row's). Systems without ranks ``key`` are left
    out (the caller names them)."""
    table = {}
    for system, runs in results.items():
        if not all(key in r for r in runs):
            continue
        row = {
            "seeds": [r["seed"] for r in runs],
            "seconds": [round(r["seconds"]) for r in runs],
            "eval_seconds": [
                None if r.get("eval_seconds") is None else round(r["eval_seconds"]) for r in runs
            ],
        }
        per_seed = [ranking_metrics(r[key], KS) for r in runs]
        for m in METRICS:
            values = [metrics[m] for metrics in per_seed]
            row[m] = statistics.fmean(values)
            row[m + "_std"] = statistics.stdev(values) if len(values) > 1 else None
        for m in PAIRED:
            row[m + "_ci95"] = bootstrap_interval(per_user(runs, m, key))
        row["commands"] = [r["command"] for r in runs]
        row["stage_seconds"] = [r.get("stage_seconds") for r in runs]
        row["provenance"] = [r.get("provenance") for r in runs]
        row["codes"] = [r.get("codes") for r in runs]
        row["identity"] = [r.get("identity") for r in runs]  # what --merge checks to join seeds
        row["test_users"] = runs[0]["test_users"]
        table[system] = row
    if reference in table:
        base = results[reference]
        for system, runs in results.items():
            if system == reference or system not in table:
                continue
            paired = {
                m: paired_bootstrap(per_user(base, m, key), per_user(runs, m, key)) for m in PAIRED
            }
            tests = [
                mcnemar_test(*(per_user_metric(np.asarray(r[key]), "recall@10") for r in pair))
                | {"seeds": [pair[0]["seed"], pair[1]["seed"]]}
                for pair in seed_pairs(base, runs)
            ]
            paired["recall@10"]["mcnemar"] = max(tests, key=lambda t: t["p_value"]) | {
                "per_seed_pair": tests
            }
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


def earlier_results(
    path: Path, user_ids: list, eval_seed: int, setting: dict
) -> tuple[dict[str, list[dict]], list[str]]:
    """The per-seed results of an earlier report ``path`` (``quality-*.json``, its per-user
    ranks in ``quality-*-ranks.json`` beside it), in the form :meth:`Harness.run` returns, and
    the names of its rows that cannot join (no per-user ranks).

    Every metric is recomputed from the ranks and must match the earlier table; the earlier
    report must have ranked ``user_ids`` (in any order) with ``eval_seed`` and, where it records
    them, with the same ``setting`` (preset, recommender overrides, sample): otherwise its rows
    would compare other people or another configuration. Each row keeps its own provenance
    (the earlier report's machine, date, command and commit where the row has none)."""
    ranks_path = path.with_name(path.stem + "-ranks.json")
    for f in (path, ranks_path):
        if not f.is_file():
            raise FileNotFoundError(f"{f} does not exist")
    report = json.loads(path.read_text())
    table, machine = report["systems"], report.get("machine", {})
    saved = json.loads(ranks_path.read_text())
    if saved["eval_seed"] != eval_seed:
        raise ValueError(
            f"{ranks_path} ranked other test users (eval seed {saved['eval_seed']}) "
            f"than this run (eval seed {eval_seed})"
        )
    unrecorded = {"recommender": {}, "final": False}  # older reports: preset defaults only
    for name, value in setting.items():
        earlier = machine.get(name, unrecorded.get(name))
        if earlier != value:
            raise ValueError(f"{path} was run with {name} {earlier!r}, this run with {value!r}")

    def fallback(system: str) -> dict:
        """What is known of a row of a report that kept no provenance per row: when it was
        committed, not where it ran (the report's header names only the merging machine)."""
        return {
            "date": machine.get("date"),
            "machine": f"unrecorded (report written on {machine.get('cpu')})",
            "command": machine.get("command"),
            "commit": machine.get("commit") or _committed_in(path, system),
        }

    variants = {k: saved.get(k, {}) for k in VARIANTS}
    results: dict[str, list[dict]] = {}
    for system, by_seed in variants["ranks"].items():
        row = table.get(system)
        if row is None:
            raise ValueError(f"{ranks_path} has ranks of {system!r}, {path} no row")
        name = _current_name(system, row)
        runs = []
        for seed in by_seed:
            i = row["seeds"].index(int(seed))
            run = {
                "seed": int(seed),
                "seconds": row["seconds"][i],
                "eval_seconds": row["eval_seconds"][i],
                "command": row["commands"][i],
                "stage_seconds": (row.get("stage_seconds") or [None] * len(row["seeds"]))[i],
                "provenance": (row.get("provenance") or [None] * len(row["seeds"]))[i]
                or fallback(system),
                "codes": (row.get("codes") or [None] * len(row["seeds"]))[i],
                "identity": (row.get("identity") or [None] * len(row["seeds"]))[i],
                "merged_from": path.name,
                "test_users": len(user_ids),
            }
            for key, by_system in variants.items():
                if seed in by_system.get(system, {}):
                    ordered = in_user_order(
                        saved["user_id"], by_system[system][seed], user_ids, ranks_path
                    )
                    run[key] = ordered
            runs.append(run)
        for m in METRICS:  # the ranks are those the table was computed from
            mean = statistics.fmean(ranking_metrics(r["ranks"], KS)[m] for r in runs)
            if not np.isclose(mean, row[m], rtol=0, atol=1e-9):
                raise ValueError(f"{system} {m} from {ranks_path} is {mean}, {path} {row[m]}")
        results[name] = runs
    dropped = [s for s in table if _current_name(s, table[s]) not in results]
    return results, dropped


def join_seeds(
    runs: list[dict], earlier: list[dict], identity: dict
) -> tuple[list[dict], list[str]]:
    """``runs`` of a system run now, joined by the ``earlier`` (merged) runs of other seeds whose
    recorded identity is this run's (``identity``, the seed aside), in seed order; and why each
    earlier run left out was (a seed run now replaces its earlier run). Lets the seeds of one
    configuration be trained in different sessions and tabulated as one row."""
    ours = {r["seed"] for r in runs}
    joined, left = list(runs), []
    want = {k: v for k, v in identity.items() if k != "seed"}
    for run in earlier:
        if run["seed"] in ours:
            continue
        saved = run.get("identity")
        where = f"{identity['system']} seed {run['seed']} of {run.get('merged_from')}"
        if saved is None:
            left.append(f"{where} (no recorded identity: an older report)")
            continue
        differ = sorted(
            k for k in (set(want) | set(saved)) - {"seed"} if saved.get(k) != want.get(k)
        )
        if differ:
            left.append(f"{where} (another run: {', '.join(differ)} differ)")
            continue
        joined.append(run)
    return sorted(joined, key=lambda r: r["seed"]), left


def _committed_in(path: Path, system: str) -> str:
    """``"before <commit>"``: the first commit whose ``path`` holds a row of ``system`` (the row
    ran on that commit's parent or earlier), or ``"unrecorded"``."""
    try:
        found = subprocess.run(
            ["git", "log", "--reverse", "--format=%h", "-S", json.dumps(system), "--", str(path)],
            cwd=ROOT, capture_output=True, text=True,
        ).stdout.split()  # fmt: skip
    except OSError:
        found = []
    return f"before {found[0]}" if found else "unrecorded"


def _current_name(system: str, row: dict) -> str:
    """The name a row of an older report has now: its ``tiger`` row ran the down-sized T5."""
    if system == "tiger" and all("--size cpu" in c for c in row["commands"]):
        return "tiger-cpu"
    return system


def _verdict(test: dict, reference: str, system: str, alpha: float = 0.05) -> str:
    if test["p_value"] >= alpha:
        return "within noise"
    return f"{reference} better" if test["difference"] > 0 else f"{system} better"


def format_p(p: float) -> str:
    """A p-value as the table prints it: below 0.001 the bootstrap (10,000 resamples) cannot
    resolve it, so it is given as a bound."""
    return "p < 0.001" if p < 0.001 else f"p = {p:.3g}"


def _main_table(table: dict, reference: str) -> list[str]:
    def interval(row, m):
        ci = row.get(m + "_ci95")
        std = row.get(m + "_std")
        spread = f" (sd over seeds {std:.4f})" if std is not None else ""
        return (f"{row[m]:.4f} [{ci[0]:.4f}, {ci[1]:.4f}]" if ci else f"{row[m]:.4f}") + spread

    def paired(row, system, m):
        test = row.get(f"versus_{reference}", {}).get(m)
        if test is None:
            return "reference" if system == reference else "n/a"
        return (
            f"{test['difference']:+.4f} [{test['low']:+.4f}, {test['high']:+.4f}], "
            f"{format_p(test['p_value'])} ({_verdict(test, reference, system)})"
        )

    lines = [
        f"| system | seeds | R@10 [95% CI] | N@10 [95% CI] | {reference} - system, R@10 | "
        f"{reference} - system, N@10 | McNemar p (hits@10) | eval s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for system, row in table.items():
        mc = row.get(f"versus_{reference}", {}).get("recall@10", {}).get("mcnemar")
        evals = ",".join("-" if e is None else str(e) for e in row["eval_seconds"])
        lines.append(
            f"| {system} | {','.join(map(str, row['seeds']))} | {interval(row, 'recall@10')} | "
            f"{interval(row, 'ndcg@10')} | {paired(row, system, 'recall@10')} | "
            f"{paired(row, system, 'ndcg@10')} | "
            f"{'' if mc is None else format(mc['p_value'], '.3g')} | {evals} |"
        )
    return lines


def markdown(info: dict, tables: dict[str, dict], title: str, reference: str, dropped: dict) -> str:
    lines = [
        f"# Recommendation quality: {title}",
        "",
        f"Written by `benchmarks/quality.py` on {info['date']}.",
        "",
        f"- command: `{info['command']}` (commit {info.get('commit', 'unrecorded')})",
        f"- this command's machine: {info['cpu']}, {info['cores']} cores, GPU "
        f"{info['gpu'] or 'none'}; python {info['python']}, torch {info['torch']}, "
        f"transformers {info['transformers']}; each row's own machine, date and commit are "
        "under Provenance",
        f"- {info['split']}",
        *(
            [
                f"- rows of systems this command did not run come from `{m}` (same users, "
                "rebuilt from its per-user ranks)"
                for m in info.get("merged", [])
            ]
        ),
        *[
            f"- left out of the {VARIANTS[k]} table: {', '.join(v)} ({why})"
            for k, (v, why) in dropped.items()
            if v
        ],  # fmt: skip
        *[
            f"- a merged seed not joined to the row run now: {line}"
            for line in info.get("not_joined", [])
        ],
        "",
        "## Intervals and paired tests",
        "",
        "Mean over seeds with a 95% bootstrap interval over users (10,000 resamples of the "
        "users; the per-user value is averaged over seeds) and, with several seeds, the standard "
        f"deviation over seeds. The last columns compare each system with **{reference}** on "
        f"the same users: the mean per-user difference {reference} minus system, its 95% "
        "paired-bootstrap interval and two-sided p-value (add-one Monte Carlo estimate; "
        "`p < 0.001` is the resolution of 10,000 resamples), and the exact McNemar test on "
        "hits@10 (the largest p over the seed pairs); differences with p >= 0.05 are within "
        "noise.",
    ]
    commits = {
        (p or {}).get("commit", "unrecorded")
        for table in tables.values()
        for row in table.values()
        for p in row["provenance"]
    }
    if len(commits) > 1:
        lines += [
            "",
            f"**The rows ran on {len(commits)} code versions** ({', '.join(sorted(commits))}): "
            "see Provenance.",
        ]
    for key, table in tables.items():
        lines += ["", f"### {VARIANTS[key].capitalize()}", "", *_main_table(table, reference)]
    main = tables["ranks"]
    lines += [
        "",
        "## All metrics (history items kept)",
        "",
        "Mean over seeds; ± is the standard deviation over seeds where there are several.",
        "",
        "| system | "
        + " | ".join(m.replace("recall", "R").replace("ndcg", "N") for m in METRICS)
        + " | seeds | wall s |",
        "|---" * (len(METRICS) + 3) + "|",
    ]
    for system, row in main.items():
        cells = [
            f"{row[m]:.4f}" + (f" ± {row[m + '_std']:.4f}" if row[m + "_std"] is not None else "")
            for m in METRICS
        ]
        seeds = ",".join(map(str, row["seeds"]))
        wall = ",".join(map(str, row["seconds"]))
        lines.append(f"| {system} | " + " | ".join(cells) + f" | {seeds} | {wall} |")
    timed = [
        (s, seed, t) for s, r in main.items() for seed, t in zip(r["seeds"], r["stage_seconds"])
    ]
    timed = [(s, seed, t) for s, seed, t in timed if t]
    if timed:
        lines += [
            "",
            "## Stage times",
            "",
            "Seconds of each stage a STORE row computed itself (from its `stage.json`; `-`: "
            "taken from another run), the part of the recommender stage spent validating, and "
            "the harness' own ranking of its users (eval s above). A stage resumed from a "
            "checkpoint records its last session only.",
            "",
            "| system | seed | " + " | ".join(STAGES) + " | of which validation | total |",
            "|---" * (len(STAGES) + 4) + "|",
        ]
        for system, seed, t in timed:
            cells = [f"{t[s]:,.0f}" if s in t else "-" for s in STAGES]
            valid = f"{t['validation']:,.0f}" if "validation" in t else "-"
            total = sum(t[s] for s in STAGES if s in t)
            lines.append(
                f"| {system} | {seed} | " + " | ".join(cells) + f" | {valid} | {total:,.0f} |"
            )
    lines += [
        "",
        "## Provenance",
        "",
        "Codes: a fingerprint of the semantic IDs a STORE row's model ranked with (SHA-256 of "
        "the item ids and codes, `benchmarks.quality.codes_fingerprint`); rows with the same "
        "fingerprint share their codes, `-` where unrecorded or not STORE's.",
        "",
        "| system | seed | commit | machine | date | codes |",
        "|---|---|---|---|---|---|",
    ]
    for system, row in main.items():
        codes = row.get("codes") or [None] * len(row["seeds"])
        for seed, p, code in zip(row["seeds"], row["provenance"], codes):
            p = p or {}
            lines.append(
                f"| {system} | {seed} | {p.get('commit', 'unrecorded')} | {p.get('machine')} | "
                f"{p.get('date')} | {code or '-'} |"
            )
    lines += ["", "## Commands", ""]
    for system, row in main.items():
        lines += [f"- {system}:"] + [f"  - `{c}`" for c in row["commands"]]
    return "\n".join(lines) + "\n"


def record_final_use(path: Path, info: dict, systems: list[str], seeds: list[int]) -> None:
    """Append one line per ranking of the confirmation sample, so its uses stay countable."""
    entry = {k: info[k] for k in ("date", "command", "commit", "cpu")}
    entry |= {"systems": systems, "seeds": seeds}
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        f.write(json.dumps(entry) + "\n")


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
        "--final",
        action="store_true",
        help="rank the confirmation sample (2,000 test users outside every sample tuning has "
        "used; store_hf.data.confirmation_sample) instead: for final tables only; every use "
        "is recorded in benchmarks/results/confirmation-uses.jsonl",
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
        action="append",
        default=[],
        help="an earlier report (quality-*.json, its -ranks.json beside it) whose rows join the "
        "table for the systems not run now (same test users, eval seed, preset and settings); "
        "for a system run now, its seeds that were not run now join the row where they were "
        "run under the same identity (so seeds trained in different sessions make one row); "
        "repeatable",
    )
    p.add_argument(
        "--table-only",
        action="store_true",
        help="compute nothing: tabulate the finished results of these systems and seeds (a "
        "system's row then averages the seeds it has)",
    )
    p.add_argument("--name", help="report name (default quality-<dataset>-<preset>[-final])")
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

    args.commit = git_commit()  # before anything runs: the code this command loaded
    info = machine_info(preset=args.preset, systems=systems, commit=args.commit)
    info |= {"recommender": args.recommender, "final": args.final}
    results: dict[str, list[dict]] = {s: [] for s in systems}
    seeds = [int(s) for s in args.seeds.split(",")]
    harness = Harness(args, seeds[0])
    name = harness.dataset.name
    stem = args.name or f"quality-{name.lower()}-{args.preset}" + ("-final" if args.final else "")
    report_path = args.output_dir / f"{stem}.json"
    earlier: dict[str, list[dict]] = {}
    dropped = []
    for merge in args.merge:  # checked before anything trains
        if merge.resolve() == report_path.resolve():
            p.error(f"--merge {merge} is the report this run writes; give another --name or "
                    "--output-dir (the input is never overwritten)")  # fmt: skip
        users = list(harness.test["user_id"])
        setting = {"preset": args.preset, "recommender": args.recommender, "final": args.final}
        try:
            rows, left = earlier_results(merge, users, args.eval_seed, setting)
        except (OSError, ValueError, RuntimeError, KeyError) as e:
            p.error(f"{merge}: {e!r}" if isinstance(e, KeyError) else f"--merge: {e}")
        earlier |= rows
        dropped += [f"{s} (of {merge.name})" for s in left]
    info["merged"] = [str(m) for m in args.merge]
    try:
        for seed in seeds:
            if seed != harness.seed:
                harness = Harness(args, seed)
            for system in systems:
                result = harness.run(system)
                if result is not None:
                    results[system].append(result)
    except ResultMismatch as e:
        p.error(str(e))
    if args.final and not args.table_only:
        record_final_use(args.output_dir / "confirmation-uses.jsonl", info, systems, seeds)
    results = {s: runs for s, runs in results.items() if runs}
    info["not_joined"] = []
    for system, runs in results.items():  # earlier seeds of a system run now join its row
        results[system], left = join_seeds(runs, earlier.get(system, []), harness.identity(system))
        info["not_joined"] += left
    # the earlier rows first, in their order
    results = {s: runs for s, runs in earlier.items() if s not in results} | results
    if not results:
        p.error(f"no finished results in {args.work_dir} for these systems and seeds")
    info["split"] = (
        f"{name}: {harness.dataset.num_items:,} items, {harness.dataset.num_users:,} users; "
        f"leave-one-out test split, {len(harness.test):,} of {len(harness.splits['test']):,} "
        f"test users ({harness.sample}"
        + ("" if args.final else ": the sample `store-hf evaluate` ranks")
        + "), full ranking over all items"
    )
    reference = args.reference if args.reference in results else next(iter(results))
    tables = {key: aggregate(results, reference, key) for key in VARIANTS}
    missing = {
        key: ([s for s in results if s not in table], "no per-user ranks of this variant")
        for key, table in tables.items()
    }
    if dropped:
        missing["ranks"] = (missing["ranks"][0] + dropped, "no per-user ranks")
    for key, (systems_left, why) in missing.items():
        if systems_left:
            logger.warning("left out of the %s table: %s (%s)", VARIANTS[key], systems_left, why)
    for line in info["not_joined"]:
        logger.warning("merged seed not joined: %s", line)
    title = f"{name}, preset {args.preset}" + (", confirmation sample" if args.final else "")
    md = markdown(info, tables, title, reference, missing)
    args.output_dir.mkdir(parents=True, exist_ok=True)
    (args.output_dir / f"{stem}.md").write_text(md)
    write_json_atomic(
        report_path,
        {
            "machine": info,
            "systems": tables["ranks"],
            "systems_excluding_history": tables["ranks_excluding_history"],
        },
    )
    # every system's per-user target ranks (0: not retrieved), for later paired comparisons
    write_json_atomic(
        args.output_dir / f"{stem}-ranks.json",
        {
            "user_id": list(harness.test["user_id"]),
            "eval_seed": args.eval_seed,
            "sample": harness.sample,
            **{
                key: {
                    s: {str(r["seed"]): r[key] for r in runs}
                    for s, runs in results.items()
                    if all(key in r for r in runs)
                }
                for key in VARIANTS
            },
        },
        indent=None,
    )
    print(md)


if __name__ == "__main__":
    main()
