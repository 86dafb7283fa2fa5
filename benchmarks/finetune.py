"""Full fine-tuning vs LoRA for the recommender: training tokens per second and peak memory.

    python benchmarks/finetune.py                     # SmolLM2-135M, 64 sampled users
    python benchmarks/finetune.py --backbone tiny-llama --users 16 --threads 1

Both modes train the same packed examples (``--users`` users of the embedded Amazon Scientific
set sampled with seed 0, batches of 16 of similar length, AdamW, bf16 autocast where the CPU
computes bf16 natively) on the same model: the cpu preset's recommender on ``--backbone`` with
random valid codes for the 4,344 items. ``lora``: LoRA r 16 on the attention and MLP
projections, the code rows trainable; ``full``: every weight trainable (the backbone at the
preset's learning rate, the code rows at the code rate). Each mode runs in its own process, one
after the other, so that its peak resident memory (``ru_maxrss``) is its own. Writes
``benchmarks/results/finetune.md`` and ``.json``.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.machine import machine_info  # noqa: E402
from benchmarks.packing import batches, packed_cpu_recommender  # noqa: E402
from store_hf.backbones import native_bf16  # noqa: E402
from store_hf.data import sample_users  # noqa: E402
from store_hf.files import write_json_atomic  # noqa: E402
from store_hf.presets import get_preset  # noqa: E402
from store_hf.training import RecCollator, RecInstructionData  # noqa: E402
from store_hf.training.arguments import two_rate_optimizer  # noqa: E402

MODES = ("lora", "full")


def measure(mode: str, backbone: str, users: int, batch_size: int) -> dict:
    """Train one pass over the sampled users' packed examples in ``mode``; tokens/s, trainable
    parameters and this process's peak memory."""
    settings = get_preset("cpu").recommender
    rec, tokenizer, _, train = packed_cpu_recommender(backbone)
    if mode == "lora":
        rec.add_lora()
    else:
        rec.requires_grad_(True)
    examples = RecInstructionData(rec, tokenizer).packed(sample_users(train, users, seed=0))
    code_params = [p for n, p in rec.named_parameters() if n.endswith("code_weight")]
    rates = argparse.Namespace(learning_rate=settings.learning_rate, weight_decay=0.0)
    optimizer = two_rate_optimizer(rec, code_params, rates, settings.code_learning_rate)
    collate, bf16 = RecCollator(rec._pad_id()), native_bf16()
    plans = batches(examples, batch_size)
    if len(plans) < 2:
        raise SystemExit(f"--users {users} gives {len(plans)} batch of {batch_size}: time needs 2+")
    rec.train()
    seconds, tokens = 0.0, 0
    for step, plan in enumerate(plans):
        batch = collate(plan)
        t0 = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = rec(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        if step:  # the first step allocates the optimiser state: not timed
            seconds += time.perf_counter() - t0
            tokens += int(batch["attention_mask"].sum())
    return {
        "trainable_parameters": sum(p.numel() for p in rec.parameters() if p.requires_grad),
        "parameters": sum(p.numel() for p in rec.parameters()),
        "timed_tokens": tokens,
        "timed_seconds": round(seconds, 1),
        "tokens_per_second": round(tokens / seconds, 1),
        "peak_memory_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "bf16": bf16,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--backbone", default="smollm2-135m")
    p.add_argument("--users", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--threads", type=int)
    p.add_argument("--output-dir", type=Path, default=ROOT / "benchmarks" / "results")
    p.add_argument("--mode", choices=MODES, help=argparse.SUPPRESS)  # one mode, this process
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.mode:
        print(json.dumps(measure(args.mode, args.backbone, args.users, args.batch_size)))
        return
    info = machine_info(backbone=args.backbone, users=args.users)
    rows = {}
    for mode in MODES:
        cmd = [sys.executable, __file__, "--mode", mode, "--backbone", args.backbone]
        cmd += ["--users", str(args.users), "--batch-size", str(args.batch_size)]
        cmd += ["--threads", str(args.threads)] if args.threads else []
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode:
            raise SystemExit(f"{mode} failed:\n{proc.stderr[-3000:]}")
        rows[mode] = json.loads(proc.stdout.strip().splitlines()[-1])
    lora, full = rows["lora"], rows["full"]
    ratios = {
        "time_per_token": round(lora["tokens_per_second"] / full["tokens_per_second"], 2),
        "peak_memory": round(full["peak_memory_mib"] / lora["peak_memory_mib"], 2),
    }
    write_json_atomic(
        args.output_dir / "finetune.json", {"machine": info, "modes": rows, "ratios": ratios}
    )
    lines = [
        "# Full fine-tuning vs LoRA: recommender training cost",
        "",
        f"Written by `benchmarks/finetune.py` on {info['date']}: `{info['command']}`; "
        f"{info['cpu']}, {info['cores']} cores, {info['torch_threads']} torch threads, bf16 "
        f"autocast {lora['bf16']}; load average at start {info['load_average_at_start']}.",
        "",
        f"The cpu preset's recommender on {args.backbone}, packed examples of {args.users} "
        "sampled users of the embedded Amazon Scientific set, one pass per mode, each mode in "
        "its own process (peak resident memory of that process).",
        "",
        "| mode | trainable parameters | tokens/s | peak memory |",
        "|---|---|---|---|",
    ]
    for mode, r in rows.items():
        lines.append(
            f"| {mode} | {r['trainable_parameters']:,} of {r['parameters']:,} | "
            f"{r['tokens_per_second']} | {r['peak_memory_mib']:,} MiB |"
        )
    lines += [
        "",
        f"Full / LoRA: **{ratios['time_per_token']}x** the time per token, "
        f"**{ratios['peak_memory']}x** the peak memory.",
    ]
    (args.output_dir / "finetune.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
