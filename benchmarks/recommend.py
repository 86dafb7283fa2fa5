"""Speed of ``StoreForGenerativeRec.recommend`` vs stock ``generate`` with the trie processor.

    python benchmarks/recommend.py                         # SmolLM2-135M, 16 users x 10 beams
    python benchmarks/recommend.py --backbone tiny-llama --users 8 --beams 4

Both run the same trie-constrained beam search over the ``v`` code positions of the real
catalogue (embedded Amazon Scientific set, 4,344 items) with random but valid codes (distinct
tuples, v=4, k=256) and real user histories (leave-one-out test split). ``recommend`` prefills
each prompt once and repeats its KV cache across the beams; stock ``generate`` repeats each prompt
``num_beams`` times before the prefill. Prints, measured in this run (variants interleaved,
median of --repeats after one warm-up each), the seconds per user of both and the speed-up, and
checks that both return the same beams (code sequences, best first) with the same scores.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
from transformers import LogitsProcessorList

from store_hf.data import load_embedded_dataset
from store_hf.data.splits import leave_one_out
from store_hf.modeling_store import StoreForGenerativeRec, StoreTokenizerModel
from store_hf.prompts import left_pad


def random_codes(num_items: int, v: int, k: int, seed: int = 0) -> torch.LongTensor:
    """``(num_items, v)`` random codes in ``[0, k)``, every item a distinct tuple."""
    if num_items > k**v:
        raise ValueError(f"{num_items} items do not fit in {k}**{v} distinct code tuples")
    rng = np.random.default_rng(seed)
    keys = np.empty(0, dtype=np.int64)
    while len(keys) < num_items:  # draw, drop repeats (keeping the first), draw again if short
        draw = np.concatenate([keys, rng.integers(0, k**v, size=2 * num_items, dtype=np.int64)])
        _, first = np.unique(draw, return_index=True)
        keys = draw[np.sort(first)]
    keys = keys[:num_items]
    digits = [(keys // k ** (v - 1 - p)) % k for p in range(v)]
    return torch.from_numpy(np.stack(digits, axis=1))


def load_tokenizer_model(backbone: str, v: int = 4, k: int = 256, seed: int = 0, **config):
    """``(tokenizer_model, tokenizer)`` on ``backbone`` with the Amazon content attributes
    (title, brand, categories) unless ``config`` (more :class:`StoreConfig` fields) says else."""
    torch.manual_seed(seed)
    config.setdefault("content_attributes", ["title", "brand", "categories"])
    return StoreTokenizerModel.from_backbone(
        backbone, num_dense_tokens=v, codebook_size=k, **config
    )


def build_recommender(
    tok_model, tokenizer, item_ids: list[str], k: int = 256, seed: int = 0
) -> StoreForGenerativeRec:
    """The recommender on ``tok_model``'s backbone (shared, not copied) with random valid codes."""
    codes = random_codes(len(item_ids), tok_model.config.num_dense_tokens, k, seed)
    rec = StoreForGenerativeRec.from_tokenizer_model(
        tok_model, tokenizer, item_ids, codes, codebook_size=k
    )
    return rec.eval()


def sample_test_rows(dataset, users: int, seed: int = 0) -> list[dict]:
    """``users`` random rows (``user_id``, ``history``, ``target``) of the leave-one-out test
    split."""
    test = leave_one_out(dataset)["test"]
    rows = np.random.default_rng(seed).choice(len(test), size=users, replace=False)
    return [test[int(r)] for r in rows]


def user_histories(dataset, users: int, seed: int = 0) -> list[list[str]]:
    """Histories of ``users`` random users of the leave-one-out test split."""
    return [row["history"] for row in sample_test_rows(dataset, users, seed)]


def stock_generate(rec, ids, mask, beams: int) -> tuple[torch.LongTensor, torch.FloatTensor]:
    """Stock beam search with the trie processor: ``codes (B, beams, v)``, ``scores (B, beams)``
    (summed log-probabilities, as ``recommend`` reports them)."""
    v, k = rec.config.num_dense_tokens, rec.config.codebook_size
    with torch.no_grad():
        out = rec.generate(
            input_ids=ids,
            attention_mask=mask,
            num_beams=beams,
            num_return_sequences=beams,
            max_new_tokens=v,
            do_sample=False,
            logits_processor=LogitsProcessorList([rec.trie_processor()]),
            output_scores=True,
            return_dict_in_generate=True,
        )
    offsets = rec.config.code_token_offset + torch.arange(v) * k
    codes = (out.sequences[:, -v:] - offsets).view(len(ids), beams, v)
    # generate divides the summed log-probability by the generated length (v for every beam)
    return codes, out.sequences_scores.view(-1, beams) * v


def interleaved(fns: dict, repeats: int, warmup: bool = True) -> dict[str, list[float]]:
    """Seconds of each call, ``repeats`` rounds with the variants interleaved (a change in machine
    load hits all of them alike); with ``warmup`` one untimed call of each goes first."""
    for fn in fns.values() if warmup else ():
        fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return times


def compare(rec, histories: list[list[str]], beams: int, repeats: int) -> dict:
    """Time ``recommend`` vs stock ``generate`` on the same users; check they agree.

    Returns seconds per batch (median, and all), per user, the speed-up and the check.
    """
    ids, mask = left_pad(rec._history_prompts(histories), rec._pad_id(), rec.device)
    ours = rec.recommend(histories, k=beams, num_beams=beams, batch_size=len(histories))
    stock_codes, stock_scores = stock_generate(rec, ids, mask, beams)
    finite = torch.isfinite(ours.scores)
    same_codes = torch.equal(ours.codes, stock_codes)
    max_score_diff = float((ours.scores - stock_scores)[finite].abs().max())
    if not torch.equal(ours.codes[:, 0], stock_codes[:, 0]):
        raise AssertionError("recommend and stock generate disagree on the top sequence")
    if not same_codes:
        raise AssertionError(
            "recommend and stock generate return different beams "
            f"(top sequences agree, max score difference {max_score_diff:.2e})"
        )
    if max_score_diff > 1e-3:
        raise AssertionError(f"same beams but scores differ by up to {max_score_diff:.2e}")
    times = interleaved(  # the check above was the warm-up of both
        {
            "recommend": lambda: rec.recommend(
                histories, k=beams, num_beams=beams, batch_size=len(histories)
            ),
            "generate": lambda: stock_generate(rec, ids, mask, beams),
        },
        repeats,
        warmup=False,
    )
    rec_s, gen_s = statistics.median(times["recommend"]), statistics.median(times["generate"])
    n = len(histories)
    return {
        "users": n,
        "beams": beams,
        "prompt_length_max": int(ids.shape[1]),
        "prompt_length_mean": float(mask.sum(1).float().mean()),
        "recommend_s": rec_s,
        "generate_s": gen_s,
        "recommend_s_per_user": rec_s / n,
        "generate_s_per_user": gen_s / n,
        "speedup": gen_s / rec_s,
        "times": times,
        "same_beams": same_codes,
        "max_score_diff": max_score_diff,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--backbone", default="smollm2-135m")
    p.add_argument("--users", type=int, default=16, help="users, all in one batch")
    p.add_argument("--beams", type=int, default=10, help="beams = recommendations per user")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch default)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    dataset = load_embedded_dataset()
    t0 = time.perf_counter()
    tok_model, tokenizer = load_tokenizer_model(args.backbone)
    rec = build_recommender(tok_model, tokenizer, dataset.item_ids)
    print(f"built {args.backbone} recommender in {time.perf_counter() - t0:.1f} s")
    r = compare(rec, user_histories(dataset, args.users), args.beams, args.repeats)
    print(
        f"backbone {args.backbone}, {len(dataset.item_ids):,} items (v=4, k=256), "
        f"{r['users']} users x {r['beams']} beams, prompts {r['prompt_length_mean']:.0f} tokens "
        f"on average ({r['prompt_length_max']} max), torch threads {torch.get_num_threads()}, "
        f"median of {args.repeats}"
    )
    print(f"{'variant':<34} {'s / batch':>10} {'s / user':>9}")
    for label, key in (
        ("stock generate + trie processor", "generate"),
        ("recommend (one prefill per user)", "recommend"),
    ):
        print(f"{label:<34} {r[key + '_s']:>10.3f} {r[key + '_s_per_user']:>9.3f}")
    print(
        f"speed-up of recommend: {r['speedup']:.2f}x; same beams: {r['same_beams']} "
        f"(max score difference {r['max_score_diff']:.2e})"
    )


if __name__ == "__main__":
    main()
