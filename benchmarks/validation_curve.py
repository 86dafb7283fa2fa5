"""The validation curve of a finished run's recommender stage, both instruction-tuning stages.

    python benchmarks/validation_curve.py runs/quality-full-v3/store-seed0 --name full-v3

Reads ``RUN/recommender/log_history.json`` and ``stage.json`` and writes
``benchmarks/results/<name>-validation-curve.md`` and ``.json``: every validation (stage, step,
epoch, training tokens seen, NDCG@10 and R@10 of the validation users, validation loss, seconds
it took), the best checkpoint and whether stage 2 was kept, so a reader can see whether training
converged. ``--note`` adds what the log cannot say (a pause, a resume).
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from store_hf.files import read_json, write_json_atomic  # noqa: E402

STAGES = {"joint": "stage 1", "rec": "stage 2"}


def curve(log_history: dict[str, list[dict]]) -> list[dict]:
    """Every validation of both stages, in training order (``ndcg@10`` and ``recall@10``
    ``None`` where a validation measured the loss only)."""
    return [
        {
            "stage": name,
            "step": h["step"],
            "epoch": h["epoch"],
            "tokens_seen": h.get("num_input_tokens_seen"),
            "ndcg@10": h.get("eval_ndcg@10"),
            "recall@10": h.get("eval_recall@10"),
            "loss": h.get("eval_loss"),
            "seconds": h.get("eval_runtime"),
        }
        for key, name in STAGES.items()
        for h in log_history.get(key, [])
        if "eval_loss" in h or "eval_ndcg@10" in h
    ]


def _cell(value: float | None, digits: int) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("run", type=Path, help="a run folder whose recommender stage finished")
    p.add_argument("--name", required=True, help="report name: <name>-validation-curve.md")
    p.add_argument("--note", default="", help="a sentence the report adds under the table")
    p.add_argument("--output-dir", type=Path, default=ROOT / "benchmarks" / "results")
    args = p.parse_args()
    stage_dir = args.run / "recommender"
    stage = read_json(stage_dir / "stage.json")
    rows = curve(read_json(stage_dir / "log_history.json"))
    if not rows:
        p.error(f"{stage_dir / 'log_history.json'}: the recommender stage never validated")
    report = {
        "run": str(args.run),
        "validation_users": stage.get("num_validation_users"),
        "best_checkpoint": stage.get("best_checkpoint"),
        "best_metric": stage.get("best_metric"),
        "stage2_kept": stage.get("stage2_kept"),
        "validation_seconds": stage.get("validation_seconds"),
        "note": args.note,
        "curve": rows,
    }
    out = args.output_dir / f"{args.name}-validation-curve"
    write_json_atomic(out.with_suffix(".json"), report)
    users = report["validation_users"]
    header = (
        f"`python {shlex.join(sys.argv)}`: from `{stage_dir}/log_history.json`, "
        f"{users or 'the'} validation users; NDCG@10 and R@10 of the trie-constrained beam "
        f"search, validation loss. Best checkpoint `{report['best_checkpoint']}` "
        f"({stage.get('metric_for_best_model')} {report['best_metric']:.4f}), stage 2 "
        f"{'kept' if report['stage2_kept'] else 'discarded for stage 1'}."
    )
    lines = [
        f"# Validation curve of `{args.run}`",
        "",
        header,
        "",
        "| stage | step | epoch | tokens seen | N@10 | R@10 | loss | seconds |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        cells = [
            _cell(r[key], digits)
            for key, digits in (("ndcg@10", 4), ("recall@10", 3), ("loss", 3), ("seconds", 0))
        ]
        lines.append(
            f"| {r['stage']} | {r['step']} | {r['epoch']:.3f} | {r['tokens_seen']} | "
            + " | ".join(cells)
            + " |"
        )
    if args.note:
        lines += ["", args.note]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
