"""How fast the test users are ranked, and whether bf16 keeps the rankings.

    python benchmarks/evaluation.py runs/demo                      # a finished run folder
    python benchmarks/evaluation.py runs/demo --users 200 --batch-sizes 8,16,32

Ranks ``--users`` test users (the run's fixed evaluation sample) with the run's recommender at
its preset's beam width, in fp32, in fp32 under bf16 autocast (how the Trainer's validation
ranked before it cast a copy) and in bf16 (weights cast, as the evaluate stage and the
validation do where the hardware computes bf16 natively), for each batch size: users per second
of ``recommend``, and, between fp32 and bf16, the share of users whose target rank is the same,
whose top-10 list is the same, the R@10 / N@10 of each and an exact McNemar test on hits@10.
Writes ``benchmarks/results/evaluation.md`` and ``.json`` (``--name`` for another name).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.machine import machine_info  # noqa: E402
from store_hf.backbones import native_bf16  # noqa: E402
from store_hf.files import write_json_atomic  # noqa: E402
from store_hf.metrics import (  # noqa: E402
    mcnemar_test,
    per_user_metric,
    ranking_metrics,
    target_ranks,
)
from store_hf.pipeline import Pipeline, RunConfig  # noqa: E402

#: precision name -> (weight dtype, bf16 autocast); in this order, so that fp32 weights are cast
#: to bf16 last
PRECISIONS = {
    "float32": (torch.float32, False),
    "autocast": (torch.float32, True),
    "bfloat16": (torch.bfloat16, False),
}


def rank(
    model, test, k: int, beams: int, batch: int, autocast: bool = False
) -> tuple[np.ndarray, list, float]:
    """Target ranks (0: not in the top ``k``), top-10 lists and users per second."""
    start = time.perf_counter()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        out = model.recommend(test["history"], k=k, num_beams=beams, batch_size=batch)
    speed = len(test) / (time.perf_counter() - start)
    ranks = target_ranks(out.item_ids, test["target"])  # 0 where not retrieved
    return ranks, [ids[:10] for ids in out.item_ids], speed


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("run", type=Path, help="a finished store-hf run folder")
    p.add_argument("--users", type=int, default=200)
    p.add_argument("--batch-sizes", default="8,16,32")
    p.add_argument("--output-dir", type=Path, default=ROOT / "benchmarks" / "results")
    p.add_argument("--name", default="evaluation", help="report name: NAME.md and NAME.json")
    args = p.parse_args()
    config = RunConfig.from_dict({**_saved_config(args.run), "output_dir": str(args.run)})
    pipeline = Pipeline(config)
    settings = pipeline.preset.recommender
    test = pipeline.test_users().select(range(args.users))
    beams, k = max(settings.num_beams, 20), 20
    model = pipeline.load_recommender().eval()
    results: dict[str, dict] = {}
    for name, (dtype, autocast) in PRECISIONS.items():
        model = model.to(dtype)
        for batch in (int(b) for b in args.batch_sizes.split(",")):
            ranks, top10, speed = rank(model, test, k, beams, batch, autocast)
            results.setdefault(name, {"ranks": ranks, "top10": top10, "users_per_second": {}})
            results[name]["users_per_second"][batch] = round(speed, 2)
    fp32, bf16 = results["float32"], results["bfloat16"]
    agreement = {
        "same_target_rank": float(np.mean(fp32["ranks"] == bf16["ranks"])),
        "same_top10": float(np.mean([a == b for a, b in zip(fp32["top10"], bf16["top10"])])),
        "mcnemar_hits@10": mcnemar_test(
            per_user_metric(fp32["ranks"], "recall@10"), per_user_metric(bf16["ranks"], "recall@10")
        ),
        "fp32": ranking_metrics(fp32["ranks"], (10,)),
        "bf16": ranking_metrics(bf16["ranks"], (10,)),
        "autocast_vs_bf16_same_target_rank": float(
            np.mean(results["autocast"]["ranks"] == bf16["ranks"])
        ),
    }
    info = machine_info(run=str(args.run), users=args.users, native_bf16=native_bf16())
    speeds = {name: r["users_per_second"] for name, r in results.items()}
    write_json_atomic(
        args.output_dir / f"{args.name}.json",
        {"machine": info, "users_per_second": speeds, "agreement": agreement, "beams": beams},
    )
    lines = [
        "# Ranking the test users: speed and precision",
        "",
        f"Written by `benchmarks/evaluation.py` on {info['date']}: `{info['command']}`; "
        f"{info['cpu']}, {info['torch_threads']} torch threads, native bf16 {native_bf16()}.",
        "",
        f"`recommend` on {args.users} test users of `{args.run}` (its fixed evaluation sample), "
        f"{beams} beams, top {k}:",
        "",
        "| precision | " + " | ".join(f"batch {b}" for b in speeds["float32"]) + " |",
        "|---" * (len(speeds["float32"]) + 1) + "|",
    ]
    for name, row in speeds.items():
        lines.append(f"| {name} | " + " | ".join(f"{v} users/s" for v in row.values()) + " |")
    a = agreement
    lines += [
        "",
        f"fp32 vs bf16 on the same users: the target's rank is the same for "
        f"{a['same_target_rank']:.1%} of users and the top-10 list for {a['same_top10']:.1%}; "
        f"R@10 {a['fp32']['recall@10']:.4f} vs {a['bf16']['recall@10']:.4f}, N@10 "
        f"{a['fp32']['ndcg@10']:.4f} vs {a['bf16']['ndcg@10']:.4f}; McNemar on hits@10: "
        f"{a['mcnemar_hits@10']['a_only']} users hit only in fp32, "
        f"{a['mcnemar_hits@10']['b_only']} only in bf16, p = "
        f"{a['mcnemar_hits@10']['p_value']:.3g}. fp32 weights under bf16 autocast vs bf16 "
        f"weights: the same target rank for {a['autocast_vs_bf16_same_target_rank']:.1%} of "
        "users.",
    ]
    (args.output_dir / f"{args.name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def _saved_config(run: Path) -> dict:
    import json

    return json.loads((run / "run_config.json").read_text())["config"]


if __name__ == "__main__":
    main()
