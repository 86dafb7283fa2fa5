"""Is the dense tokenizer's training stable across seeds? The held-out dense-information gap.

    python benchmarks/tokenizer_stability.py --preset full --seeds 0,1,2
    python benchmarks/tokenizer_stability.py --preset full --seeds 0,1,2 \\
        --reuse runs/quality-full/store-seed0        # a finished run's tokenizer stands in
    python benchmarks/tokenizer_stability.py --preset cpu --tokenizer max_items=512 \\
        --name cpu-512-items                         # the preset with other tokenizer settings

Runs the tokenizer stage of ``store-hf run --preset P --seed S`` for every seed (in
``WORK_DIR/<preset>-seed<S>``; a finished stage is not computed again, and a run folder given
with ``--reuse`` whose settings differ only in the recommender lends its tokenizer stage) and
reads what the stage measured on its held-out items: the target loss of the task block with an
item's own dense tokens and with another item's, before and after training. The gap (other -
own, nats per target token) is what the dense tokens tell the task block about their item.
Writes ``benchmarks/results/tokenizer-stability-<preset>.md`` and ``.json``: every seed, the
mean and standard deviation of the gap after training, and its smallest value.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.machine import machine_info  # noqa: E402
from benchmarks.quality import parse_settings  # noqa: E402
from store_hf.files import atomic_write, read_json, write_json_atomic  # noqa: E402
from store_hf.pipeline import Pipeline, RunConfig  # noqa: E402


def tokenizer_stage(
    preset: str, seed: int, work_dir: Path, reuse: list[Path], settings: dict, name: str
) -> dict:
    """The tokenizer stage's ``stage.json`` for ``preset`` and ``seed``, the preset's tokenizer
    settings overridden by ``settings`` (computed if needed, in ``WORK_DIR/<name>-seed<S>``)."""
    config = RunConfig.from_dict(
        {
            "output_dir": str(work_dir / f"{name}-seed{seed}"),
            "preset": preset,
            "seed": seed,
            "tokenizer": settings,
        }
    )
    pipeline = Pipeline(config)
    for source in reuse:
        if not pipeline.is_done("tokenizer") and config.differences(source) in (
            [],
            ["recommender"],
        ):
            pipeline.reuse_stages(source)
    pipeline.run(until="tokenizer")
    return read_json(pipeline.stage_dir("tokenizer") / "stage.json")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--preset", default="full")
    p.add_argument("--seeds", default="0,1,2", help="comma-separated")
    p.add_argument("--work-dir", type=Path, default=ROOT / "runs" / "tokenizer-stability")
    p.add_argument("--reuse", type=Path, nargs="*", default=[], help="finished run folders")
    p.add_argument(
        "--tokenizer",
        type=parse_settings,
        default={},
        help="tokenizer settings over the preset's, e.g. 'max_items=512'",
    )
    p.add_argument("--name", help="results and run folders' name (default: the preset's)")
    p.add_argument("--output-dir", type=Path, default=ROOT / "benchmarks" / "results")
    args = p.parse_args()
    name = args.name or args.preset
    if args.tokenizer and not args.name:
        p.error("--tokenizer changes the preset's settings: give the results a --name")
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )

    rows = []
    for seed in (int(s) for s in args.seeds.split(",")):
        stage = tokenizer_stage(args.preset, seed, args.work_dir, args.reuse, args.tokenizer, name)
        before, after = stage["dense_information_before"], stage["dense_information_after"]
        rows.append(
            {
                "seed": seed,
                "train_items": stage["train_items"],
                "eval_items": stage["eval_items"],
                "seconds": stage["seconds"],
                "before": before,
                "after": after,
            }
        )
        print(f"seed {seed}: gap {before['gap']:.3f} -> {after['gap']:.3f}", flush=True)

    gaps = [r["after"]["gap"] for r in rows]
    summary = {
        "preset": args.preset,
        "tokenizer_settings": args.tokenizer,
        "seeds": [r["seed"] for r in rows],
        "gap_after_mean": statistics.mean(gaps),
        "gap_after_std": statistics.stdev(gaps) if len(gaps) > 1 else 0.0,
        "gap_after_min": min(gaps),
        "rows": rows,
        "machine": machine_info(),
    }
    lines = [
        f"# Dense tokenizer stability: `{args.preset}` preset"
        + (f" with {args.tokenizer}" if args.tokenizer else "")
        + f", seeds {args.seeds}",
        "",
        f"`{summary['machine']['command']}`. Held-out items: {rows[0]['eval_items']}; "
        "loss = the task block's target loss (nats per token) with the item's own dense tokens "
        "and with another item's; gap = other - own.",
        "",
        "| seed | train items | before: own / other (gap) | after: own / other (gap) | seconds |",
        "|---|---|---|---|---|",
        *(
            f"| {r['seed']} | {r['train_items']} | {r['before']['loss_own']:.2f} / "
            f"{r['before']['loss_other']:.2f} ({r['before']['gap']:.3f}) | "
            f"{r['after']['loss_own']:.2f} / {r['after']['loss_other']:.2f} "
            f"({r['after']['gap']:.3f}) | {r['seconds']:.0f} |"
            for r in rows
        ),
        "",
        f"Gap after training: mean {summary['gap_after_mean']:.3f}, standard deviation "
        f"{summary['gap_after_std']:.3f}, smallest {summary['gap_after_min']:.3f}.",
        "",
    ]
    args.output_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(args.output_dir / f"tokenizer-stability-{name}.json", summary)
    atomic_write(args.output_dir / f"tokenizer-stability-{name}.md", "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
