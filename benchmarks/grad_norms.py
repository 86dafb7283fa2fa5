"""Gradient norms of a recommender run's optimiser steps: how often clipping would act.

    python benchmarks/grad_norms.py runs/quality-full-v3/store-seed0

The Trainer logs each step's gradient norm before clipping. This reads the recommender stage's
``recommender/log_history.json`` of a finished ``store-hf run`` folder and writes, per training
stage (stage 1, recommendation + alignment; stage 2, recommendation), the norm's percentiles,
the share of steps above 1.0 (those the Trainer's default ``max_grad_norm=1.0`` rescales) and the
rank correlation of the norm with the step's input tokens (packed steps differ in length, and
under constant loss normalisation their summed gradients with them). Writes
``benchmarks/results/grad-norms.md`` and ``.json`` (``--name`` changes the stem).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.machine import command_line  # noqa: E402
from store_hf.files import atomic_write, read_json, write_json_atomic  # noqa: E402

PERCENTILES = (5, 25, 50, 75, 95, 99)
STAGES = {"joint": "stage 1 (recommendation + alignment)", "rec": "stage 2 (recommendation)"}


def stage_norms(log: list[dict]) -> dict:
    """Statistics of one stage's training steps (log entries with a ``grad_norm``)."""
    steps = [e for e in log if "grad_norm" in e and "loss" in e]
    if not steps:
        raise ValueError("no training step with a logged grad_norm")
    norms = np.array([e["grad_norm"] for e in steps], dtype=float)
    row = {
        "steps": len(steps),
        "percentiles": {str(p): float(np.percentile(norms, p)) for p in PERCENTILES},
        "share_above_1": float(np.mean(norms > 1.0)),
    }
    seen = [e.get("num_input_tokens_seen") for e in steps]
    if None not in seen and len(seen) > 2:
        # tokens of each step: the difference of the running count (the first step has none)
        tokens = np.diff(np.array(seen, dtype=float))
        row["spearman_norm_vs_tokens"] = float(spearmanr(norms[1:], tokens).statistic)
    return row


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("run", type=Path, help="a store-hf run folder with a finished recommender stage")
    p.add_argument("--name", default="grad-norms")
    p.add_argument("--output-dir", type=Path, default=ROOT / "benchmarks" / "results")
    args = p.parse_args(argv)
    path = args.run / "recommender" / "log_history.json"
    if not path.is_file():
        p.error(f"{path}: not found (is the recommender stage of {args.run} finished?)")
    logs = read_json(path)
    stage = read_json(args.run / "recommender" / "stage.json")
    rows = {key: stage_norms(logs[key]) for key in STAGES if logs.get(key)}
    settings = {
        k: stage.get(k) for k in ("finetune", "loss_normalization", "max_grad_norm", "layout")
    }
    report = {"command": command_line(), "run": str(args.run), "settings": settings, "stages": rows}
    write_json_atomic(args.output_dir / f"{args.name}.json", report)
    lines = [
        "# Gradient norms of the recommender's training steps",
        "",
        f"Written by `{report['command']}` from `{path}` (settings {json.dumps(settings)}).",
        "The norm is the Trainer's, before any clipping.",
        "",
        "| stage | steps | "
        + " | ".join(f"p{q}" for q in PERCENTILES)
        + " | share > 1.0 | Spearman, norm vs step tokens |",
        "|---" * (len(PERCENTILES) + 4) + "|",
    ]
    for key, row in rows.items():
        pct = " | ".join(f"{row['percentiles'][str(q)]:.2f}" for q in PERCENTILES)
        rho = row.get("spearman_norm_vs_tokens")
        lines.append(
            f"| {STAGES[key]} | {row['steps']} | {pct} | {row['share_above_1']:.1%} | "
            + (f"{rho:.2f}" if rho is not None else "-")
            + " |"
        )
    text = "\n".join(lines) + "\n"
    atomic_write(args.output_dir / f"{args.name}.md", text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
