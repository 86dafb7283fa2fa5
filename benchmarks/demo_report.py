"""What a finished `make demo` (or any `store-hf run`) measured, as a committed result file.

    python benchmarks/demo_report.py runs/demo

Reads the run folder's stage summaries (each stage's wall time) and its evaluate stage's
metrics, and writes ``benchmarks/results/demo.md`` and ``.json`` with the machine it ran on
(this machine: run it where the run ran) and the load average now, so that the README's
numbers about `make demo` come from a file.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.machine import machine_info  # noqa: E402
from store_hf.files import write_json_atomic  # noqa: E402
from store_hf.pipeline import STAGES  # noqa: E402

METRICS = ("recall@10", "ndcg@10", "recall@20", "ndcg@20")


def summarize(run: Path) -> dict:
    """Stage seconds, the evaluate stage's metrics and the run's settings of a finished run."""
    missing = [s for s in STAGES if not (run / s / "stage.json").is_file()]
    if missing:
        raise SystemExit(f"{run}: stages {missing} have not finished (no stage.json)")
    seconds = {s: json.loads((run / s / "stage.json").read_text()).get("seconds") for s in STAGES}
    metrics = json.loads((run / "evaluate" / "metrics.json").read_text())
    config = json.loads((run / "run_config.json").read_text())["config"]
    return {
        "run": str(run),
        "preset": config["preset"],
        "seed": config["seed"],
        "stage_seconds": seconds,
        "total_seconds": round(sum(v or 0 for v in seconds.values()), 1),
        "note": metrics["note"],
        "metrics": {name: {m: row[m] for m in METRICS} for name, row in metrics["systems"].items()},
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("run", type=Path, help="a finished store-hf run folder")
    p.add_argument("--output-dir", type=Path, default=ROOT / "benchmarks" / "results")
    p.add_argument("--name", default="demo")
    args = p.parse_args()
    summary = summarize(args.run)
    info = machine_info()
    write_json_atomic(args.output_dir / f"{args.name}.json", {"machine": info, **summary})
    lines = [
        f"# `store-hf run --preset {summary['preset']}` (what `make demo` runs)",
        "",
        f"Written by `benchmarks/demo_report.py` on {info['date']}: `{info['command']}`; run "
        f"`{summary['run']}`, seed {summary['seed']}; machine {info['cpu']}, {info['cores']} "
        f"cores; load average now {info['load_average_at_start']}.",
        "",
        "| stage | seconds |",
        "|---|---|",
        *[f"| {s} | {v} |" for s, v in summary["stage_seconds"].items()],
        f"| all stages | {summary['total_seconds']} |",
        "",
        f"Evaluation: {summary['note']}.",
        "",
        "| system | " + " | ".join(METRICS) + " |",
        "|---" * (len(METRICS) + 1) + "|",
        *[
            f"| {name} | " + " | ".join(f"{row[m]:.4f}" for m in METRICS) + " |"
            for name, row in summary["metrics"].items()
        ],
    ]
    (args.output_dir / f"{args.name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
