"""Packed vs per-prefix recommendation training: tokens and wall time per epoch.

    python benchmarks/packing.py                          # SmolLM2-135M, 128 sampled users
    python benchmarks/packing.py --backbone tiny-llama --users 32 --threads 1

Both layouts train the same objective (the codes of every training item after the first, given
the prompt prefix and every earlier item; ``store_hf.packing``) on the same model (the cpu
preset's recommender: LoRA r 16 on SmolLM2-135M, random valid codes for the 4,344 items of the
embedded Amazon Scientific set, bf16 autocast where the CPU computes bf16 natively) and the same
users. Tokens per epoch are counted over every training user; wall time is measured on one pass
over ``--users`` sampled users (batches of 16 examples of similar length, AdamW steps, the two
layouts interleaved batch by batch so load changes hit both) and scaled to the whole epoch by
tokens. Writes ``benchmarks/results/packing.md`` and ``.json``.
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
from benchmarks.recommend import load_tokenizer_model, random_codes  # noqa: E402
from store_hf.backbones import native_bf16  # noqa: E402
from store_hf.data import leave_one_out, load_embedded_dataset, sample_users  # noqa: E402
from store_hf.files import write_json_atomic  # noqa: E402
from store_hf.modeling_store import StoreForGenerativeRec  # noqa: E402
from store_hf.presets import get_preset  # noqa: E402
from store_hf.templates import packed_templates  # noqa: E402
from store_hf.training import RecCollator, RecInstructionData  # noqa: E402


def batches(dataset, size: int) -> list[list[dict]]:
    """Examples sorted by length, in batches of ``size`` (what length grouping approaches)."""
    order = np.argsort(dataset["length"], kind="stable")
    rows = [dataset[int(i)] for i in order]
    return [rows[i : i + size] for i in range(0, len(rows), size)]


def packed_cpu_recommender(backbone: str):
    """``(recommender, tokenizer, dataset, train split)``: the cpu preset's recommender (packed
    templates, no LoRA yet) on ``backbone`` with random valid codes for the items of the
    embedded Amazon Scientific set, seeded."""
    settings = get_preset("cpu").recommender
    dataset = load_embedded_dataset()
    train = leave_one_out(dataset, max_history=settings.max_history)["train"]
    tok_model, tokenizer = load_tokenizer_model(backbone)
    codes = random_codes(len(dataset.item_ids), tok_model.config.num_dense_tokens, 256)
    torch.manual_seed(0)
    rec = StoreForGenerativeRec.from_tokenizer_model(
        tok_model,
        tokenizer,
        dataset.item_ids,
        codes,
        lora_r=settings.lora_r,
        lora_alpha=settings.lora_alpha,
        lora_dropout=settings.lora_dropout,
        max_history=settings.max_history,
        templates=packed_templates(tok_model.config.templates),
    )
    return rec, tokenizer, dataset, train


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--backbone", default="smollm2-135m")
    p.add_argument("--users", type=int, default=128, help="users timed (tokens: all users)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--threads", type=int)
    p.add_argument("--output-dir", type=Path, default=ROOT / "benchmarks" / "results")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    rec, tokenizer, dataset, train = packed_cpu_recommender(args.backbone)
    rec.add_lora()
    data = RecInstructionData(rec, tokenizer)
    layouts = {"packed": data.packed, "per-prefix": data.recommendation}
    full = {name: build(train) for name, build in layouts.items()}
    sample = sample_users(train, args.users, seed=0)
    timed = {name: build(sample) for name, build in layouts.items()}

    bf16 = native_bf16()
    collate = RecCollator(rec._pad_id())
    optimizer = torch.optim.AdamW([q for q in rec.parameters() if q.requires_grad], lr=1e-4)
    rec.train()
    seconds = dict.fromkeys(layouts, 0.0)
    plans = {name: batches(ds, args.batch_size) for name, ds in timed.items()}
    for step in range(max(len(b) for b in plans.values())):
        for name, plan in plans.items():  # interleaved: a load change hits both layouts
            if step >= len(plan):
                continue
            batch = collate(plan[step])
            t0 = time.perf_counter()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                loss = rec(**batch).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            seconds[name] += time.perf_counter() - t0

    rows = {}
    for name in layouts:
        tokens_all, tokens_timed = sum(full[name]["length"]), sum(timed[name]["length"])
        rows[name] = {
            "examples_per_epoch": len(full[name]),
            "tokens_per_epoch": tokens_all,
            "supervised_tokens_per_epoch": sum(
                sum(t != -100 for t in ex) for ex in full[name]["labels"]
            ),
            "timed_examples": len(timed[name]),
            "timed_tokens": tokens_timed,
            "timed_seconds": round(seconds[name], 1),
            "tokens_per_second": round(tokens_timed / seconds[name], 1),
            "seconds_per_epoch": round(seconds[name] * tokens_all / tokens_timed, 1),
        }
    packed, prefix = rows["packed"], rows["per-prefix"]
    ratios = {
        "tokens": round(prefix["tokens_per_epoch"] / packed["tokens_per_epoch"], 2),
        "wall_time": round(prefix["seconds_per_epoch"] / packed["seconds_per_epoch"], 2),
    }
    info = machine_info(backbone=args.backbone, users_timed=args.users, bf16=bf16)
    write_json_atomic(
        args.output_dir / "packing.json", {"machine": info, "layouts": rows, "ratios": ratios}
    )
    lines = [
        "# Packed vs per-prefix recommendation training",
        "",
        f"Written by `benchmarks/packing.py` on {info['date']}: `{info['command']}`; "
        f"{info['cpu']}, {info['torch_threads']} torch threads, bf16 autocast {bf16}.",
        "",
        "Same model (cpu preset recommender on "
        f"{args.backbone}), same objective; tokens over every training user of the embedded "
        f"Amazon Scientific set, wall time measured on {args.users} sampled users and scaled "
        "by tokens.",
        "",
        "| layout | examples / epoch | tokens / epoch | supervised tokens | tokens/s | s / epoch |",
        "|---|---|---|---|---|---|",
    ]
    for name, r in rows.items():
        lines.append(
            f"| {name} | {r['examples_per_epoch']:,} | {r['tokens_per_epoch']:,} | "
            f"{r['supervised_tokens_per_epoch']:,} | {r['tokens_per_second']} | "
            f"{r['seconds_per_epoch']:,} |"
        )
    lines += [
        "",
        f"Per-prefix / packed: **{ratios['tokens']}x** the tokens, **{ratios['wall_time']}x** "
        "the wall time per epoch.",
    ]
    (args.output_dir / "packing.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
