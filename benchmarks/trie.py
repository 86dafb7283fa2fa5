"""Speed of trie-constrained generation: TrieLogitsProcessor vs a Python dict trie.

    python benchmarks/trie.py                      # 25,000 items, 160 rows, 50k text vocab
    python benchmarks/trie.py --items 300000 --k 256 --v 4

Prints, measured in this run:

1. Per-step time of ``TrieLogitsProcessor.__call__`` against the usual baseline, a nested
   Python dict trie queried through transformers' ``PrefixConstrainedLogitsProcessor`` (what
   ``generate(prefix_allowed_tokens_fn=...)`` runs), on ``--rows`` rows (e.g. 16 users x 10
   beams) of random catalogue prefixes, for every depth ``0 .. v-1`` and averaged over them.
   Both processors are checked to allow exactly the same tokens.
2. Wall time of beam search (``--prompts`` prompts, ``--beams`` beams, ``max_new_tokens=v``)
   with a small random Llama whose vocabulary is ``--vocab`` text tokens plus ``v * k`` code
   tokens: unconstrained, with TrieLogitsProcessor, and with the dict trie.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
from transformers import LlamaConfig, LlamaForCausalLM, LogitsProcessorList
from transformers.generation.logits_process import PrefixConstrainedLogitsProcessor

from store_hf.trie import CodeTrie, TrieLogitsProcessor, code_token_ids


def dict_trie(token_ids: np.ndarray) -> dict:
    """Baseline: nested dicts ``{token: {token: ...}}`` over the items' code-token tuples."""
    root: dict = {}
    for row in token_ids.tolist():
        node = root
        for t in row:
            node = node.setdefault(t, {})
    return root


def dict_allowed_fn(root: dict, v: int, k: int, offset: int):
    """``prefix_allowed_tokens_fn`` for the dict trie, with the same stateless depth rule as
    TrieLogitsProcessor (depth from the trailing tokens)."""

    def fn(batch_id: int, sent: torch.Tensor) -> list[int]:
        last = int(sent[-1]) - offset
        depth = (last // k + 1) % v if 0 <= last < v * k else 0
        node = root
        for t in sent[len(sent) - depth :].tolist() if depth else ():
            node = node.get(t)
            if node is None:
                return []
        return list(node)

    return fn


def timed(fns: list, repeat: int, block: int = 1, before=None) -> list[float]:
    """Median seconds per call of each function, after one warm-up call each.

    The functions take turns in blocks of ``block`` consecutive calls (so a change in machine
    load hits all of them alike); ``before()``, if given, runs untimed before every call.
    """
    for fn in fns:
        fn()
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(max(1, repeat // block)):
        for fn, ts in zip(fns, times):
            for _ in range(block):
                if before is not None:
                    before()
                t0 = time.perf_counter()
                fn()
                ts.append(time.perf_counter() - t0)
    return [statistics.median(ts) for ts in times]


class CacheFlush:
    """Writes 64 MiB, more than any CPU cache: what a model's forward pass between two
    generation steps does to the caches, without its time."""

    def __init__(self) -> None:
        self.junk = torch.empty(16 * 2**20)

    def __call__(self) -> None:
        self.junk.fill_(1.0)


def per_step(args, codes: np.ndarray, trie: CodeTrie, root: dict) -> None:
    v, k, off = args.v, args.k, args.vocab
    width = off + v * k
    rng = np.random.default_rng(1)
    tok = code_token_ids(torch.from_numpy(codes), k, off)
    ours = TrieLogitsProcessor(trie)  # default: reuses its output buffer between calls
    ours_fresh = TrieLogitsProcessor(trie, reuse_output=False)  # a new (rows, V) tensor per call
    base = PrefixConstrainedLogitsProcessor(dict_allowed_fn(root, v, k, off), args.beams)
    print(
        f"\n== per-step processor time: {args.items:,} items, v={v}, k={k}, "
        f"{args.rows} rows, scores width {width:,}"
    )
    cases = []
    for d in range(v):
        # every row: 8 text tokens, one history item, then the first d codes of a random item
        text = torch.from_numpy(rng.integers(3, off, size=(args.rows, 8)))
        hist = tok[rng.integers(0, len(codes), args.rows)]
        cur = tok[rng.integers(0, len(codes), args.rows)][:, :d]
        ids = torch.cat([text, hist, text[:, :1], cur], 1)
        scores = torch.randn(args.rows, width)
        a, b = ours(ids, scores), base(ids, scores)
        assert torch.equal(torch.isfinite(a), torch.isfinite(b)), "processors disagree"
        assert torch.equal(ours_fresh(ids, scores), a)
        del a  # held, it would make the processor allocate a new buffer (by design)
        cases.append(
            [
                lambda ids=ids, scores=scores: ours(ids, scores),
                lambda ids=ids, scores=scores: ours_fresh(ids, scores),
                lambda ids=ids, scores=scores: base(ids, scores),
            ]
        )
    # Warm: each processor runs `block` calls in a row (its data stays in cache), like timeit.
    # Cold: caches flushed before every call, as by the model's forward pass in generation.
    head = ("depth", "trie (ms)", "fresh (ms)", "dict (ms)", "speed-up", "fresh s-up")
    for title, kw in (
        ("caches warm (5 calls in a row)", dict(block=5)),
        ("caches cold (64 MiB written before every call)", dict(before=CacheFlush())),
    ):
        print(f"-- {title}")
        print("{:>5} {:>10} {:>10} {:>10} {:>9} {:>10}".format(*head))
        rows = []
        for d, fns in enumerate(cases):
            rows.append(timed(fns, args.repeat, **kw))
            print_row(str(d), *rows[-1])
        print_row("mean", *np.mean(rows, axis=0))
    # The floor of a processor that returns a new tensor: allocating and filling it with -inf.
    (floor,) = timed([lambda: torch.full((args.rows, width), float("-inf"))], args.repeat)
    print(
        f"(allocating + filling a ({args.rows}, {width}) -inf tensor alone: {floor * 1e3:.3f} ms)"
    )
    # The trie work without the wide output: same codes, token_offset 0, scores width v * k + 1.
    narrow = TrieLogitsProcessor(CodeTrie(codes, k, 0))
    small = []
    for d in range(v):
        items = torch.from_numpy(codes[rng.integers(0, len(codes), args.rows)])
        ids = torch.cat([torch.full((args.rows, 1), v * k), code_token_ids(items, k, 0)[:, :d]], 1)
        scores = torch.randn(args.rows, v * k + 1)  # id v * k is the one non-code token
        small.append(timed([lambda ids=ids, scores=scores: narrow(ids, scores)], args.repeat)[0])
    print(
        f"(TrieLogitsProcessor on ({args.rows}, {v * k + 1}) scores, i.e. the trie work without "
        f"the wide output: {np.mean(small) * 1e3:.3f} ms per step)"
    )


def print_row(label: str, ours: float, fresh: float, base: float) -> None:
    print(
        f"{label:>5} {ours * 1e3:>10.3f} {fresh * 1e3:>10.3f} {base * 1e3:>10.3f} "
        f"{base / ours:>8.1f}x {base / fresh:>9.1f}x"
    )


def end_to_end(args, codes: np.ndarray, trie: CodeTrie, root: dict) -> None:
    v, k, off = args.v, args.k, args.vocab
    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=off + v * k,
        hidden_size=args.hidden,
        intermediate_size=2 * args.hidden,
        num_hidden_layers=args.layers,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=512,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
    )
    model = LlamaForCausalLM(cfg).eval()
    rng = np.random.default_rng(2)
    tok = code_token_ids(torch.from_numpy(codes), k, off)
    # prompt: bos, 10 history items separated by a text token, a final text token
    hist = tok[rng.integers(0, len(codes), (args.prompts, 10))]
    sep = torch.from_numpy(rng.integers(3, off, size=(args.prompts, 10, 1)))
    body = torch.cat([hist, sep], 2).reshape(args.prompts, -1)
    prompts = torch.cat([torch.ones(args.prompts, 1, dtype=torch.long), body], 1)
    gen = dict(
        attention_mask=torch.ones_like(prompts),
        num_beams=args.beams,
        num_return_sequences=args.beams,
        max_new_tokens=v,
        do_sample=False,
    )
    variants = {
        "unconstrained": {},
        "TrieLogitsProcessor": {
            "logits_processor": LogitsProcessorList([TrieLogitsProcessor(trie)])
        },
        "TrieLogitsProcessor(reuse_output=False)": {
            "logits_processor": LogitsProcessorList([TrieLogitsProcessor(trie, reuse_output=False)])
        },
        "dict trie (prefix_allowed_tokens_fn)": {
            "prefix_allowed_tokens_fn": dict_allowed_fn(root, v, k, off)
        },
    }
    times: dict[str, list[float]] = {name: [] for name in variants}
    with torch.no_grad():
        for name, extra in variants.items():  # warm-up, and check validity
            out = model.generate(prompts, **gen, **extra)
            if extra:
                got = out[:, -v:] - off - torch.arange(v) * k
                assert trie.contains(got).all(), name
        for _ in range(args.repeat_generate):  # interleaved, so load changes hit all variants
            for name, extra in variants.items():
                t0 = time.perf_counter()
                model.generate(prompts, **gen, **extra)
                times[name].append(time.perf_counter() - t0)
    print(
        f"\n== beam search wall time: Llama hidden {args.hidden}, {args.layers} layers, vocab "
        f"{off + v * k:,}, {args.prompts} prompts x {args.beams} beams, prompt length "
        f"{prompts.shape[1]}, max_new_tokens={v}, median of {args.repeat_generate}"
    )
    base = statistics.median(times["unconstrained"])
    print(f"{'variant':<40} {'median s':>8} {'min s':>7} {'overhead':>9}")
    for name, ts in times.items():
        t = statistics.median(ts)
        print(f"{name:<40} {t:>8.3f} {min(ts):>7.3f} {(t / base - 1) * 100:>8.1f}%")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--items", type=int, default=25000)
    p.add_argument("--rows", type=int, default=160, help="rows per processor call")
    p.add_argument("--vocab", type=int, default=50000, help="text tokens before the code tokens")
    p.add_argument("--v", type=int, default=4)
    p.add_argument("--k", type=int, default=256)
    p.add_argument("--beams", type=int, default=10)
    p.add_argument("--prompts", type=int, default=16)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--repeat", type=int, default=20, help="timed calls per depth")
    p.add_argument("--repeat-generate", type=int, default=5)
    p.add_argument("--threads", type=int, default=1, help="torch threads (0: torch default)")
    p.add_argument("--skip-generate", action="store_true")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    codes = np.random.default_rng(0).integers(0, args.k, size=(args.items, args.v))
    t0 = time.perf_counter()
    trie = CodeTrie(codes, args.k, args.vocab)
    t_build = time.perf_counter() - t0
    t0 = time.perf_counter()
    root = dict_trie(code_token_ids(torch.from_numpy(codes), args.k, args.vocab).numpy())
    t_dict = time.perf_counter() - t0
    print(f"torch threads: {torch.get_num_threads()}")
    print(trie)
    print(
        f"build: CodeTrie {t_build * 1e3:.1f} ms ({trie.memory_bytes / 2**20:.2f} MiB), "
        f"dict trie {t_dict * 1e3:.1f} ms"
    )
    per_step(args, codes, trie, root)
    if not args.skip_generate:
        end_to_end(args, codes, trie, root)


if __name__ == "__main__":
    main()
