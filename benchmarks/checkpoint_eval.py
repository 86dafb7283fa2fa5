"""Rank a training checkpoint of a finished run on the run's own test users, and compare it user
by user with the run's final model: did the rest of the training help?

    python benchmarks/checkpoint_eval.py runs/quality-full/store-seed0 \
        checkpoints/recommender/joint/checkpoint-796 --name "after stage 1"

    python benchmarks/checkpoint_eval.py runs/quality-full-v3/store-seed0 \
        checkpoints/recommender/rec/checkpoint-524 \
        --versus benchmarks/results/quality-scientific-full-v2-ranks.json

The checkpoint (a ``Trainer`` checkpoint of the recommender, LoRA unmerged) is ranked exactly as
the evaluate stage ranks (the same test users drawn with the run's evaluation seed, beam size,
bf16 where native); the paired bootstrap and McNemar test are against ``evaluate/ranks.json``
where the run has finished, and with ``--versus`` against every system and seed of a quality
report's ``-ranks.json`` on the same users (as ``benchmarks/quality.py`` pairs them: seed-averaged
per-user values, McNemar for every seed pair), so a run stopped during training is compared with
the baselines too. Writes ``--output`` (default
``benchmarks/results/checkpoint-<run>-<checkpoint>.json``) and prints markdown tables.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.quality import aggregate, format_p, in_user_order  # noqa: E402
from store_hf.backbones import resolve_bf16  # noqa: E402
from store_hf.evaluation import evaluate_recommender  # noqa: E402
from store_hf.files import read_json, write_json_atomic  # noqa: E402
from store_hf.metrics import bootstrap_interval, compare_systems, per_user_metric  # noqa: E402
from store_hf.modeling_store import StoreForGenerativeRec  # noqa: E402
from store_hf.pipeline import Pipeline, RunConfig  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("run_dir", type=Path, help="a finished store-hf run folder")
    p.add_argument("checkpoint", type=Path, help="checkpoint folder (relative to run_dir or not)")
    p.add_argument("--name", default=None, help="the checkpoint's row name in the table")
    p.add_argument("--output", type=Path, default=None)
    p.add_argument(
        "--num-beams",
        type=int,
        default=None,
        help="beam width of the ranking (default: the run's preset's, at least 20)",
    )
    p.add_argument(
        "--versus",
        type=Path,
        default=None,
        help="a quality report's -ranks.json on the same test users: compare with its systems",
    )
    args = p.parse_args()
    if args.versus is not None and not args.versus.is_file():
        p.error(f"--versus {args.versus}: file not found")
    run_dir = args.run_dir
    ckpt = args.checkpoint if args.checkpoint.is_dir() else run_dir / args.checkpoint
    name = args.name or ckpt.name
    config = read_json(run_dir / "run_config.json")["config"]
    pipeline = Pipeline(RunConfig.from_dict({**config, "output_dir": str(run_dir)}))
    settings = pipeline.preset.recommender
    test = pipeline.test_users()

    model = StoreForGenerativeRec.from_pretrained(ckpt)
    if model.config.lora_active:
        model.merge_lora()
    if resolve_bf16(settings.eval_bf16):
        model = model.to(torch.bfloat16)
    ks = (1, 5, 10, 20)
    beams = args.num_beams or max(settings.num_beams, max(ks))
    result = evaluate_recommender(
        model,
        test,
        ks=ks,
        num_beams=beams,
        batch_size=settings.eval_batch_size,
        return_ranks=True,
    )
    ranks = result.pop("ranks")
    users = list(test["user_id"])
    rows = {name: ranks}
    final_path = run_dir / "evaluate" / "ranks.json"
    if final_path.is_file():
        final = read_json(final_path)
        if final["user_id"] != users:
            raise SystemExit(f"{final_path}: other test users than the run's")
        rows["final model"] = np.asarray(final["ranks"]["STORE"])
    lines = [
        f"{len(test)} test users of `{run_dir}`, {beams} beams.",
        "",
        "| model | R@10 [95% interval] | N@10 [95% interval] |",
        "|---|---|---|",
    ]
    for label, r in rows.items():
        cells = []
        for metric in ("recall@10", "ndcg@10"):
            values = per_user_metric(r, metric)
            low, high = bootstrap_interval(values)
            cells.append(f"{values.mean():.4f} [{low:.4f}, {high:.4f}]")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    paired = None
    if "final model" in rows:
        paired = compare_systems(ranks, rows["final model"], ks=(10,))
        lines.append("")
        lines.append(
            f"{name} - final model: R@10 {paired['recall@10']['difference']:+.4f} "
            f"(p = {paired['recall@10']['p_value']:.3g}, McNemar p = "
            f"{paired['recall@10']['mcnemar_p_value']:.3g}), N@10 "
            f"{paired['ndcg@10']['difference']:+.4f} (p = {paired['ndcg@10']['p_value']:.3g}); "
            f"{len(test)} test users."
        )
    versus = None
    if args.versus is not None:
        versus = _versus(name, ranks, users, args.versus)
        lines += ["", f"Against the systems of `{args.versus}` ({len(users)} test users):", ""]
        lines += [
            "| system | seeds | R@10 | N@10 | checkpoint - system, R@10 | N@10 | McNemar p |",
            "|---|---|---|---|---|---|---|",
        ]
        for system, row in versus.items():
            if system == name:
                continue
            v = row["versus_" + name]
            lines.append(
                f"| {system} | {', '.join(map(str, row['seeds']))} | {row['recall@10']:.4f} | "
                f"{row['ndcg@10']:.4f} | {v['recall@10']['difference']:+.4f}, "
                f"{format_p(v['recall@10']['p_value'])} | {v['ndcg@10']['difference']:+.4f}, "
                f"{format_p(v['ndcg@10']['p_value'])} | "
                f"{v['recall@10']['mcnemar']['p_value']:.3g} |"
            )
    output = args.output or ROOT / "benchmarks" / "results" / (
        f"checkpoint-{run_dir.name}-{ckpt.parent.name}-{ckpt.name}.json"
    )
    write_json_atomic(
        output,
        {
            "run_dir": str(run_dir),
            "checkpoint": str(ckpt),
            "name": name,
            "metrics": result,
            "num_beams": beams,
            "paired_vs_final": paired,
            "versus": versus,
            "versus_file": None if args.versus is None else str(args.versus),
            "user_id": users,
            "ranks": ranks,
        },
    )
    print("\n".join(lines))


def _versus(name: str, ranks, users: list, path: Path) -> dict[str, dict]:
    """``benchmarks.quality.aggregate`` of the checkpoint (as the reference) and every system
    and seed of the ranks file ``path`` (aligned to ``users``; other users are refused)."""
    saved = read_json(path)
    results = {name: [_run(0, ranks, f"checkpoint {name}", len(users))]}
    for system, seeds in saved["ranks"].items():
        results[system] = [
            _run(
                int(seed), in_user_order(saved["user_id"], values, users, path), system, len(users)
            )
            for seed, values in seeds.items()
        ]
    return aggregate(results, name)


def _run(seed: int, ranks, command: str, n: int) -> dict:
    return {
        "seed": seed,
        "ranks": list(map(int, ranks)),
        "seconds": 0,
        "command": command,
        "test_users": n,
    }


if __name__ == "__main__":
    main()
