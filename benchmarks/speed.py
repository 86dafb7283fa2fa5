"""Speed of store-hf's inference and training paths, in one run, as ratios measured in that run.

    python benchmarks/speed.py                           # SmolLM2-135M, ~10 minutes on 2 cores
    python benchmarks/speed.py --only recommend,scoring  # some sections
    python benchmarks/speed.py --quick --output-dir /tmp/speed   # tiny backbones, seconds

Writes ``speed.md`` (machine, command, one table of every ratio, then details) and ``speed.json``
(the same numbers and the raw timings) to --output-dir (default benchmarks/results). Sections:

  trie_step        TrieLogitsProcessor vs a dict trie through prefix_allowed_tokens_fn, per
                   generation step (benchmarks/trie.py, per_step)
  beam_search      beam search unconstrained vs trie-constrained (benchmarks/trie.py, end_to_end)
  recommend        recommend() (one prefill per user) vs stock generate + trie processor, on the
                   real catalogue and real histories (benchmarks/recommend.py)
  tokenizer_paths  dense tokenizer fast vs literal path, forward + backward
                   (benchmarks/tokenizer_paths.py)
  scoring          scoring mode with semantic codes vs with item titles in the prompt: prompt
                   length and samples/s of a batched forward pass at the last position
  encode           encode_items fp32 vs bf16 autocast, items/s

Timed variants are interleaved (a change in machine load hits all of them alike), each after one
untimed warm-up, and the median of --repeats is reported; ratios are only taken within this run.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import io
import json
import math
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # ``benchmarks`` (no __init__) imports as a namespace package

from benchmarks import recommend as rec_bench  # noqa: E402
from benchmarks import tokenizer_paths as tok_bench  # noqa: E402
from benchmarks import trie as trie_bench  # noqa: E402
from benchmarks.machine import machine_info  # noqa: E402
from store_hf.data import load_embedded_dataset  # noqa: E402
from store_hf.prompts import left_pad  # noqa: E402
from store_hf.templates import default_task_setup  # noqa: E402
from store_hf.training import (  # noqa: E402
    DenseTokenizerCollator,
    item_texts,  # noqa: E402
    tokenize_items,
)
from store_hf.trie import CodeTrie, code_token_ids  # noqa: E402

SECTIONS = ("trie_step", "beam_search", "recommend", "tokenizer_paths", "scoring", "encode")

#: Sizes per section: full run (real backbone) and --quick (tiny backbones, for tests).
SIZES = {
    "full": {
        "trie_step": dict(items=25000, rows=160, beams=10, vocab=50000, repeat=20),
        "beam_search": dict(
            items=25000, hidden=256, layers=4, vocab=50000, prompts=16, beams=10, repeat_generate=9
        ),
        "recommend": dict(users=16, beams=10),  # as measured in the issue
        "tokenizer_paths": dict(items=2),  # literal path: ~3 GB per item on SmolLM2
        "scoring": dict(users=16, batch_size=8, length_users=1000),
        "encode": dict(items=32, batch_size=16),
    },
    "quick": {
        "trie_step": dict(items=2000, rows=8, beams=4, vocab=5000, repeat=3),
        "beam_search": dict(
            items=2000, hidden=64, layers=1, vocab=2000, prompts=4, beams=4, repeat_generate=3
        ),
        "recommend": dict(users=2, beams=3),
        "tokenizer_paths": dict(items=1),
        "scoring": dict(users=4, batch_size=4, length_users=50),
        "encode": dict(items=4, batch_size=4),
    },
}


# ---------------------------------------------------------------------------------- helpers
def median_times(
    fns: dict, repeats: int, warmup: bool = True
) -> tuple[dict[str, float], dict[str, list[float]]]:
    """Median and all seconds of each function, interleaved (``benchmarks/recommend.py``'s
    timer)."""
    times = rec_bench.interleaved(fns, repeats, warmup)
    return {name: statistics.median(ts) for name, ts in times.items()}, times


def captured(fn, *args) -> str:
    """Run ``fn(*args)``, echo and return what it printed."""
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        fn(*args)
    print(buf.getvalue(), end="")
    return buf.getvalue()


def trie_setup(v: int, k: int, items: int, vocab: int):
    codes = np.random.default_rng(0).integers(0, k, size=(items, v))
    trie = CodeTrie(codes, k, vocab)
    root = trie_bench.dict_trie(code_token_ids(torch.from_numpy(codes), k, vocab).numpy())
    return codes, trie, root


class Context:
    """Lazily loaded data and models shared by the sections (each gets its own model copy)."""

    def __init__(self, args) -> None:
        self.args = args
        self._dataset = self._base = self._rec = None

    @property
    def dataset(self):
        if self._dataset is None:
            self._dataset = load_embedded_dataset()
        return self._dataset

    def tokenizer_model(self):
        """A fresh copy of the tokenizer model on --backbone (loaded once) and its tokenizer."""
        if self._base is None:
            content, tasks = default_task_setup(self.dataset.attributes)
            t0 = time.perf_counter()
            self._base = rec_bench.load_tokenizer_model(
                self.args.backbone,
                content_attributes=content,
                tasks=tasks,
                max_content_length=128,
                max_target_length=32,
            )
            print(f"loaded {self.args.backbone} in {time.perf_counter() - t0:.1f} s")
        model, tokenizer = self._base
        return copy.deepcopy(model), tokenizer

    def recommender(self):
        """The recommender (random valid codes for the whole catalogue), built once."""
        if self._rec is None:
            model, tokenizer = self.tokenizer_model()
            self._rec = rec_bench.build_recommender(model, tokenizer, self.dataset.item_ids)
        return self._rec, self._base[1]


# ---------------------------------------------------------------------------------- sections
def section_trie_step(ctx: Context, size: dict) -> dict:
    """(a) TrieLogitsProcessor vs dict trie + PrefixConstrainedLogitsProcessor, per step."""
    v, k = 4, 256
    codes, trie, root = trie_setup(v, k, size["items"], size["vocab"])
    ns = argparse.Namespace(v=v, k=k, **size)
    out = captured(trie_bench.per_step, ns, codes, trie, root)
    # two tables, caches warm then cold, each ending in a "mean" row: trie, fresh, dict (ms)
    means = [line.split()[1:4] for line in out.splitlines() if line.split()[:1] == ["mean"]]
    if len(means) != 2:
        raise RuntimeError("benchmarks/trie.py per_step printed no warm and cold 'mean' rows")
    result: dict = {"summary": [], "settings": vars(ns), "output": out}
    for regime, mean in zip(("warm", "cold"), means):
        ours, fresh, base = (float(x) / 1e3 for x in mean)
        result["summary"].append(
            {
                "comparison": f"per-step processor time, caches {regime}, dict trie via "
                "prefix_allowed_tokens_fn (A) vs TrieLogitsProcessor (B); "
                f"{size['items']:,} items, {size['rows']} rows, v={v}, k={k}, "
                f"text vocab {size['vocab']:,}, mean over depths",
                "a": f"{base * 1e3:.3f} ms",
                "b": f"{ours * 1e3:.3f} ms",
                "ratio": base / ours,
                "meaning": "speed-up A/B",
            }
        )
        result[regime] = {
            "dict_s": base,
            "trie_s": ours,
            "trie_fresh_output_s": fresh,
            "speedup": base / ours,
            "speedup_fresh_output": base / fresh,
        }
    return result


BEAM_VARIANTS = (
    "unconstrained",
    "TrieLogitsProcessor",
    "TrieLogitsProcessor(reuse_output=False)",
    "dict trie (prefix_allowed_tokens_fn)",
)


def section_beam_search(ctx: Context, size: dict) -> dict:
    """(b) beam search wall time: unconstrained vs TrieLogitsProcessor vs dict trie."""
    v, k = 4, 256
    codes, trie, root = trie_setup(v, k, size["items"], size["vocab"])
    ns = argparse.Namespace(v=v, k=k, **size)
    out = captured(trie_bench.end_to_end, ns, codes, trie, root)
    times = {}
    for line in out.splitlines():  # rows "<name> <median s> <min s> <overhead>%"
        parts = line.rsplit(maxsplit=3)
        if len(parts) == 4 and parts[0] in BEAM_VARIANTS:
            times[parts[0]] = float(parts[1])
    if set(times) != set(BEAM_VARIANTS):
        raise RuntimeError(
            f"benchmarks/trie.py end_to_end rows missing: {set(BEAM_VARIANTS) - set(times)}"
        )
    free, ours, base = times["unconstrained"], times["TrieLogitsProcessor"], times[BEAM_VARIANTS[3]]
    what = (
        f"random Llama hidden {size['hidden']}, {size['layers']} layers, vocab "
        f"{size['vocab'] + v * k:,}, {size['prompts']} prompts x {size['beams']} beams"
    )
    return {
        "summary": [
            {
                "comparison": f"beam search wall time, unconstrained (A) vs TrieLogitsProcessor "
                f"(B); {what}",
                "a": f"{free:.3f} s",
                "b": f"{ours:.3f} s",
                "ratio": ours / free,
                "meaning": "overhead B/A",
            },
            {
                "comparison": "beam search wall time, dict trie via prefix_allowed_tokens_fn (A) "
                "vs TrieLogitsProcessor (B); same",
                "a": f"{base:.3f} s",
                "b": f"{ours:.3f} s",
                "ratio": base / ours,
                "meaning": "speed-up A/B",
            },
        ],
        "seconds": times,
        "settings": vars(ns),
        "output": out,
    }


def section_recommend(ctx: Context, size: dict) -> dict:
    """(c) recommend vs stock generate with the trie processor (benchmarks/recommend.py)."""
    rec, _ = ctx.recommender()
    histories = rec_bench.user_histories(ctx.dataset, size["users"])
    r = rec_bench.compare(rec, histories, size["beams"], ctx.args.repeats)
    print(
        f"stock generate {r['generate_s_per_user']:.3f} s/user, recommend "
        f"{r['recommend_s_per_user']:.3f} s/user: {r['speedup']:.2f}x, same beams {r['same_beams']}"
    )
    return {
        "summary": [
            {
                "comparison": "top-k recommendation, stock generate + trie processor (A) vs "
                f"recommend (B), s per user; {ctx.args.backbone}, "
                f"{len(rec.config.item_ids):,} items, {r['users']} users x {r['beams']} beams "
                f"in one batch, prompts {r['prompt_length_mean']:.0f} tokens on average",
                "a": f"{r['generate_s_per_user']:.3f} s",
                "b": f"{r['recommend_s_per_user']:.3f} s",
                "ratio": r["speedup"],
                "meaning": "speed-up A/B",
            }
        ],
        **r,
    }


def section_tokenizer_paths(ctx: Context, size: dict) -> dict:
    """(d) dense tokenizer fast vs literal path, forward + backward (tokenizer_paths.py)."""
    model, tokenizer = ctx.tokenizer_model()
    model.add_lora().train()
    n = size["items"]
    items = tokenize_items(ctx.dataset.items.select(range(n)), tokenizer, model.config)
    batch = DenseTokenizerCollator(tokenizer.pad_token_id)([items[i] for i in range(n)])
    # one call of time_path = its own warm-up + one timed step; only the timed step counts
    paths = ("literal", "fast")
    times = {p: [] for p in paths}
    for _ in range(ctx.args.repeats):
        for p in paths:
            times[p].append(tok_bench.time_path(model, batch, p, 1))
    literal, fast = (statistics.median(times[p]) for p in paths)
    tasks = len(model.config.tasks)
    print(f"literal {literal / n * 1e3:.1f} ms/item, fast {fast / n * 1e3:.1f} ms/item")
    return {
        "summary": [
            {
                "comparison": "dense tokenizer forward + backward, literal path (A) vs fast path "
                f"(B), per item; {ctx.args.backbone} + LoRA, {n} items x {tasks} tasks",
                "a": f"{literal / n * 1e3:.1f} ms",
                "b": f"{fast / n * 1e3:.1f} ms",
                "ratio": literal / fast,
                "meaning": "speed-up A/B",
            }
        ],
        "literal_s": literal,
        "fast_s": fast,
        "items": n,
        "tasks": tasks,
        "speedup": literal / fast,
        "times": times,
    }


def scoring_prompts(rec, tokenizer, dataset, rows: list[dict]) -> tuple[list, list]:
    """The scoring prompt of each row with the items as semantic codes, and with the same items as
    their titles (" " + title, tokenized) between the same template pieces."""
    builder, pieces = rec.prompts, rec.config.prompt_token_ids
    keep = rec.config.max_history
    index = dataset.item_index()
    titles = dataset.items["title"]
    cache: dict[str, list[int]] = {}

    def title_ids(item: str) -> list[int]:
        if item not in cache:
            text = " " + titles[index[item]]
            cache[item] = tokenizer(text, add_special_tokens=False)["input_ids"]
        return cache[item]

    codes, text = [], []
    for row in rows:
        history, target = row["history"][-keep:], row["target"]
        codes.append(
            builder.scoring(
                rec.item_codes[rec.item_rows(history)].cpu(),
                rec.item_codes[rec.item_rows([target])][0].cpu(),
            )
        )
        text.append(
            pieces["score_prefix"]
            + [t for item in history for t in title_ids(item)]
            + pieces["score_candidate"]
            + title_ids(target)
            + pieces["score_suffix"]
        )
    return codes, text


@torch.no_grad()
def score_forward(rec, prompts: list[list[int]], batch_size: int) -> torch.Tensor:
    """P(yes) at the last position of each prompt, batched as ``rec.score`` does (prompts sorted
    by length first so that both variants pay as little padding as they can)."""
    yes, no = rec.prompts.answer_ids
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    out = torch.empty(len(prompts))
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        ids, mask = left_pad([prompts[i] for i in idx], rec._pad_id(), rec.device)
        logits = rec(input_ids=ids, attention_mask=mask, logits_to_keep=1).logits[:, -1]
        out[idx] = torch.softmax(logits[:, [yes, no]].float(), dim=-1)[:, 0].cpu()
    return out


def section_scoring(ctx: Context, size: dict) -> dict:
    """(e) scoring throughput with semantic codes vs item titles in the prompt."""
    rec, tokenizer = ctx.recommender()
    # prompt lengths over many users (cheap); throughput over the first ``users`` of them
    rows = rec_bench.sample_test_rows(ctx.dataset, size["length_users"], seed=1)
    all_codes, all_text = scoring_prompts(rec, tokenizer, ctx.dataset, rows)
    n, bs = size["users"], size["batch_size"]
    codes, text = all_codes[:n], all_text[:n]
    med, times = median_times(
        {
            "codes": lambda: score_forward(rec, codes, bs),
            "text": lambda: score_forward(rec, text, bs),
        },
        ctx.args.repeats,
    )
    len_codes = float(np.mean([len(p) for p in all_codes]))
    len_text = float(np.mean([len(p) for p in all_text]))
    sps_codes, sps_text = n / med["codes"], n / med["text"]
    print(
        f"prompt length over {len(rows)} users: codes {len_codes:.1f} vs text {len_text:.1f} "
        f"tokens ({len_text / len_codes:.2f}x); {n} users: {sps_codes:.2f} vs {sps_text:.2f} "
        f"samples/s ({sps_codes / sps_text:.2f}x)"
    )
    what = f"{ctx.args.backbone}, history <= {rec.config.max_history} items"
    return {
        "summary": [
            {
                "comparison": "scoring prompt length in tokens (mean), item titles (A) vs "
                f"semantic codes (B); {len(rows)} test users, {what}",
                "a": f"{len_text:.1f}",
                "b": f"{len_codes:.1f}",
                "ratio": len_text / len_codes,
                "meaning": "shortening A/B",
            },
            {
                "comparison": "scoring throughput (forward, logits at the last position), item "
                f"titles (A) vs semantic codes (B), samples/s; {n} of those users in batches of "
                f"{bs} (mean prompt {np.mean([len(p) for p in text]):.0f} vs "
                f"{np.mean([len(p) for p in codes]):.0f} tokens), {what}",
                "a": f"{sps_text:.2f}",
                "b": f"{sps_codes:.2f}",
                "ratio": sps_codes / sps_text,
                "meaning": "speed-up B/A",
            },
        ],
        "users": n,
        "length_users": len(rows),
        "batch_size": bs,
        "prompt_length_codes": len_codes,
        "prompt_length_text": len_text,
        "prompt_length_max_codes": max(len(p) for p in all_codes),
        "prompt_length_max_text": max(len(p) for p in all_text),
        "timed_prompt_length_codes": float(np.mean([len(p) for p in codes])),
        "timed_prompt_length_text": float(np.mean([len(p) for p in text])),
        "samples_per_s_codes": sps_codes,
        "samples_per_s_text": sps_text,
        "times": times,
    }


def section_encode(ctx: Context, size: dict) -> dict:
    """(f) encode_items fp32 vs bf16 autocast."""
    model, tokenizer = ctx.tokenizer_model()
    n, bs = size["items"], size["batch_size"]
    texts = item_texts(ctx.dataset.items.select(range(n)), model.config.content_attributes)

    def encode(bf16: bool):
        return model.encode_items(texts, tokenizer, batch_size=bs, bf16=bf16)

    # the agreement check is the warm-up of both
    agree = float(torch.nn.functional.cosine_similarity(encode(False), encode(True), -1).min())
    med, times = median_times(
        {"fp32": lambda: encode(False), "bf16": lambda: encode(True)}, ctx.args.repeats, False
    )
    ips32, ips16 = n / med["fp32"], n / med["bf16"]
    print(f"fp32 {ips32:.2f} items/s, bf16 {ips16:.2f} items/s ({ips16 / ips32:.2f}x)")
    return {
        "summary": [
            {
                "comparison": f"encode_items, fp32 (A) vs bf16 autocast (B), items/s; "
                f"{ctx.args.backbone}, {n} real items, batches of {bs}, "
                f"min cosine(fp32, bf16) of a dense token {agree:.4f}",
                "a": f"{ips32:.2f}",
                "b": f"{ips16:.2f}",
                "ratio": ips16 / ips32,
                "meaning": "speed-up B/A",
            }
        ],
        "items": n,
        "batch_size": bs,
        "items_per_s_fp32": ips32,
        "items_per_s_bf16": ips16,
        "min_cosine_fp32_bf16": agree,
        "times": times,
    }


# ---------------------------------------------------------------------------------- report
def markdown(info: dict, results: dict, wall: float) -> str:
    lines = [
        "# store-hf speed benchmarks",
        "",
        f"Written by `benchmarks/speed.py` on {info['date']}.",
        "",
        f"- command: `{info['command']}`",
        f"- CPU: {info['cpu']}, {info['cores']} cores, torch threads {info['torch_threads']}, "
        f"load average (1, 5, 15 min) at start {info['load_average_at_start']}, at end "
        f"{info['load_average_at_end']}",
        f"- GPU: {info['gpu'] or 'none (CPU run)'}",
        f"- python {info['python']}, torch {info['torch']}, transformers {info['transformers']}",
        f"- backbone {info['backbone']}; every time is the median of {info['repeats']} "
        "interleaved repeats after a warm-up; total wall time "
        f"{wall / 60:.1f} min",
        "",
        "Only the ratios are comparable across machines: each compares two variants timed in "
        "the same run, interleaved. A is the baseline, B the STORE / store-hf path.",
        "",
        "| section | comparison | A | B | ratio | ratio is |",
        "|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        for row in r["summary"]:
            lines.append(
                f"| {name} | {row['comparison']} | {row['a']} | {row['b']} | "
                f"{row['ratio']:.3g}x | {row['meaning']} |"
            )
    for name, r in results.items():
        if "output" in r:
            lines += [
                "",
                f"## {name}: output of benchmarks/trie.py",
                "",
                "```",
                r["output"].rstrip(),
                "```",
            ]
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--backbone", default=None, help="default smollm2-135m (--quick: tiny-llama)")
    p.add_argument("--only", default=",".join(SECTIONS), help="comma-separated sections")
    p.add_argument("--repeats", type=int, default=None, help="default 3 (--quick: 2)")
    p.add_argument("--quick", action="store_true", help="tiny backbones and sizes (tests)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch default)")
    p.add_argument("--output-dir", type=Path, default=ROOT / "benchmarks" / "results")
    args = p.parse_args()
    args.backbone = args.backbone or ("tiny-llama" if args.quick else "smollm2-135m")
    args.repeats = args.repeats or (2 if args.quick else 3)
    only = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = set(only) - set(SECTIONS)
    if unknown:
        p.error(f"unknown sections {sorted(unknown)}; known: {', '.join(SECTIONS)}")
    if args.threads:
        torch.set_num_threads(args.threads)
    sizes = SIZES["quick" if args.quick else "full"]
    info = machine_info(backbone=args.backbone, repeats=args.repeats)
    ctx = Context(args)
    start = time.perf_counter()
    results = {}
    for name in (s for s in SECTIONS if s in only):
        print(f"\n######## {name}", flush=True)
        t0 = time.perf_counter()
        results[name] = globals()[f"section_{name}"](ctx, sizes[name])
        results[name]["wall_s"] = time.perf_counter() - t0
        print(f"({name}: {results[name]['wall_s']:.0f} s)", flush=True)
    wall = time.perf_counter() - start
    info["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    for r in results.values():
        for row in r["summary"]:
            if not (math.isfinite(row["ratio"]) and row["ratio"] > 0):
                raise RuntimeError(f"bad ratio {row}")
    args.output_dir.mkdir(parents=True, exist_ok=True)
    md = markdown(info, results, wall)
    (args.output_dir / "speed.md").write_text(md)
    payload = {"machine": info, "wall_s": wall, "sections": results}
    (args.output_dir / "speed.json").write_text(json.dumps(payload, indent=2, default=str) + "\n")
    print("\n" + md.split("\n## ")[0].rstrip())  # without the captured trie.py output
    print(f"\nwrote {args.output_dir / 'speed.md'} and speed.json")


if __name__ == "__main__":
    main()
