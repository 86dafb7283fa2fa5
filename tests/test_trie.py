"""CodeTrie and TrieLogitsProcessor: brute-force checks and generate runs on tiny models."""

import itertools

import numpy as np
import pytest
import torch
from transformers import (
    LlamaConfig,
    LlamaForCausalLM,
    LogitsProcessorList,
    OPTConfig,
    OPTForCausalLM,
)

from store_hf.trie import CodeTrie, TrieLogitsProcessor, code_token_ids, token_ids_to_codes

TEXT_VOCAB = 64  # ids 0..63 are "text" tokens; the code tokens follow
PAD, BOS, EOS = 0, 1, 2


def tiny_model(family: str, v: int, k: int, seed: int = 0):
    torch.manual_seed(seed)
    vocab = TEXT_VOCAB + v * k
    if family == "opt":
        cfg = OPTConfig(
            vocab_size=vocab,
            hidden_size=32,
            num_hidden_layers=2,
            ffn_dim=64,
            num_attention_heads=4,
            word_embed_proj_dim=32,
            max_position_embeddings=128,
            dropout=0.0,
            attention_dropout=0.0,
            pad_token_id=PAD,
            bos_token_id=BOS,
            eos_token_id=EOS,
        )
        model = OPTForCausalLM(cfg)
    else:
        cfg = LlamaConfig(
            vocab_size=vocab,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=128,
            pad_token_id=PAD,
            bos_token_id=BOS,
            eos_token_id=EOS,
        )
        model = LlamaForCausalLM(cfg)
    return model.eval()


def brute_allowed(tuples: set[tuple[int, ...]], prefix: tuple[int, ...], k: int) -> list[bool]:
    d = len(prefix)
    return [any(t[:d] == prefix and t[d] == c for t in tuples) for c in range(k)]


def make_prompts(codes: torch.Tensor, k: int, n: int, end_with_item: bool, seed: int):
    """``n`` prompts ``(n, L)``: bos, text, two history items (text separators), and either a
    final text token or (``end_with_item``) a final history item's codes."""
    g = torch.Generator().manual_seed(seed)
    v = codes.shape[1]
    tok = code_token_ids(codes, k, TEXT_VOCAB)
    rows = []
    for _ in range(n):
        hist = tok[torch.randint(len(codes), (3,), generator=g)]
        text = torch.randint(3, TEXT_VOCAB, (4,), generator=g)
        parts = [torch.tensor([BOS]), text[:2], hist[0], text[2:3], hist[1]]
        parts += [hist[2]] if end_with_item else [text[3:4]]
        rows.append(torch.cat(parts))
    out = torch.stack(rows)
    assert (out[:, -1] >= TEXT_VOCAB).all() == end_with_item
    assert out.shape[1] == (4 + 3 * v if end_with_item else 5 + 2 * v)
    return out


def generated_codes(sequences: torch.Tensor, v: int, k: int) -> torch.Tensor:
    return token_ids_to_codes(sequences[:, -v:], k, TEXT_VOCAB, strict=False)


# ---------------------------------------------------------------- token layout


def test_code_token_ids_layout_and_inverse():
    codes = torch.tensor([[0, 0, 0], [3, 1, 4], [7, 7, 7]])
    tok = code_token_ids(codes, 8, 100)
    assert tok.tolist() == [[100, 108, 116], [103, 109, 120], [107, 115, 123]]
    assert torch.equal(token_ids_to_codes(tok, 8, 100), codes)
    assert torch.equal(code_token_ids(codes.numpy(), 8, 100), tok)  # numpy in, tensor out
    with pytest.raises(ValueError, match=r"\[0, 8\)"):
        code_token_ids(torch.tensor([[8, 0, 0]]), 8, 100)
    swapped = tok[:, [1, 0, 2]]  # position-1 token in column 0
    with pytest.raises(ValueError, match="not a code token of position 0"):
        token_ids_to_codes(swapped, 8, 100)
    lax = token_ids_to_codes(torch.tensor([[108, 99, 116]]), 8, 100, strict=False)
    assert lax.tolist() == [[-1, -1, 0]]


# ---------------------------------------------------------------- CodeTrie


@pytest.mark.parametrize("seed", range(6))
def test_allowed_mask_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    v, k = int(rng.integers(1, 5)), int(rng.integers(2, 10))
    n = int(rng.integers(1, 60))
    codes = rng.integers(0, k, size=(n, v))
    codes = np.concatenate([codes, codes[: n // 3]])  # duplicate tuples
    rng.shuffle(codes)
    trie = CodeTrie(codes, k, TEXT_VOCAB)
    tuples = set(map(tuple, codes.tolist()))
    assert trie.num_items == len(codes) and trie.num_unique == len(tuples)
    for d in range(v):
        prefixes = list(itertools.product(range(k), repeat=d))[:400]
        prefixes += [t[:d] for t in tuples]  # make sure valid prefixes are covered
        mask = trie.allowed_mask(torch.tensor(prefixes, dtype=torch.long).reshape(len(prefixes), d))
        assert mask.shape == (len(prefixes), k) and mask.dtype == torch.bool
        for row, p in zip(mask.tolist(), prefixes):
            assert row == brute_allowed(tuples, p, k), (d, p)


def test_contains_and_lookup():
    rng = np.random.default_rng(1)
    codes = rng.integers(0, 6, size=(50, 3))
    codes[10] = codes[3]  # duplicate: lookup returns the smallest item index
    trie = CodeTrie(torch.from_numpy(codes), 6, TEXT_VOCAB)
    queries = np.concatenate([codes, rng.integers(0, 6, size=(100, 3)), [[-1, 0, 0], [0, 6, 0]]])
    tuples = [tuple(r) for r in codes.tolist()]
    found = trie.contains(torch.from_numpy(queries))
    assert found.tolist() == [tuple(q) in tuples for q in queries.tolist()]
    idx = trie.lookup(torch.from_numpy(queries)).tolist()
    for q, i in zip(queries.tolist(), idx):
        assert i == (tuples.index(tuple(q)) if tuple(q) in tuples else -1)
    assert idx[10] == 3


def test_invalid_prefix_gives_empty_row_and_bad_arguments_raise():
    trie = CodeTrie(np.array([[0, 1, 2], [0, 1, 3]]), 4, TEXT_VOCAB)
    mask = trie.allowed_mask(torch.tensor([[0, 1], [1, 1], [0, 0]]))
    assert mask.tolist() == [[False, False, True, True], [False] * 4, [False] * 4]
    assert (
        trie.allowed_mask(torch.empty(2, 0, dtype=torch.long)).tolist()
        == [[True, False, False, False]] * 2
    )
    with pytest.raises(ValueError, match="d < v"):
        trie.allowed_mask(torch.zeros(1, 3, dtype=torch.long))
    with pytest.raises(ValueError, match=r"\[0, 4\)"):
        CodeTrie(np.array([[0, 4, 0]]), 4, 0)
    with pytest.raises(ValueError, match="integers"):
        CodeTrie(np.zeros((2, 3)), 4, 0)


def test_memory_is_small_for_a_large_catalogue():
    rng = np.random.default_rng(0)
    n, v, k = 200_000, 4, 256
    codes = rng.integers(0, k, size=(n, v))
    trie = CodeTrie(codes, k, 50_000)
    sizes = trie.level_sizes
    internal = sum(sizes[:v])
    expected = internal * k // 8 + 8 * (sum(sizes) - 1) + 8 * (n + sizes[v] + 1) + v * k
    assert trie.memory_bytes == expected
    assert trie.memory_bytes < 16 * 2**20  # a dense int32 child table would need > 60 MB
    sample = torch.from_numpy(codes[rng.choice(n, 1000)])
    assert trie.contains(sample).all()
    assert trie.allowed_mask(sample[:, :3]).gather(1, sample[:, 3:]).all()


# ---------------------------------------------------------------- processor on fixed inputs


def test_processor_masks_whole_vocab_for_mixed_depths():
    v, k, off = 3, 5, TEXT_VOCAB
    rng = np.random.default_rng(2)
    codes = rng.integers(0, k, size=(20, v))
    trie = CodeTrie(codes, k, off)
    tuples = set(map(tuple, codes.tolist()))
    tok = code_token_ids(torch.from_numpy(codes), k, off)
    text = torch.tensor([7, 8])
    rows, prefixes = [], []
    for i in range(6):  # rows at depths 0 (text end), 0 (item end), 1, 2 in one batch
        item = tok[i]
        for d, tail in [(0, text), (0, item), (1, item[:1]), (2, item[:2])]:
            rows.append(torch.cat([text, tok[(i + 1) % 20], tail])[-(v + 3) :])
            prefixes.append(tuple(codes[i][:d]) if tail is not text else ())
    ids = torch.stack(rows)
    width = off + v * k + 11  # extra columns beyond the tokenizer vocabulary
    scores = torch.randn(len(rows), width)
    out = TrieLogitsProcessor(trie)(ids, scores)
    assert out.shape == scores.shape
    for r, p in enumerate(prefixes):
        expected = torch.full((width,), float("-inf"))
        d = len(p)
        for c, ok in enumerate(brute_allowed(tuples, p, k)):
            if ok:
                expected[off + d * k + c] = scores[r, off + d * k + c]
        assert torch.equal(out[r], expected), r


def test_position_mode_allows_exactly_the_position_sets():
    v, k, off = 3, 16, TEXT_VOCAB
    rng = np.random.default_rng(3)
    codes = rng.integers(0, k // 2, size=(12, v)) * 2  # only even codes occur
    codes[:, 1] += 1  # position 1: only odd codes
    trie = CodeTrie(codes, k, off)
    proc = TrieLogitsProcessor(trie, mode="position")
    for d in range(v):
        sets = {off + d * k + c for c in codes[:, d].tolist()}
        # prefixes that are NOT catalogue prefixes still get the whole position set
        tail = code_token_ids(torch.tensor([[k - 1] * v]), k, off)[0, :d]
        ids = torch.cat([torch.tensor([5, 6, 7]), tail])[None]
        out = proc(ids, torch.zeros(1, off + v * k))
        assert set(torch.isfinite(out[0]).nonzero().flatten().tolist()) == sets
    assert torch.equal(
        trie.position_mask[0], torch.bincount(torch.tensor(codes[:, 0]), minlength=k) > 0
    )
    # the trie mode is stricter on the same rows
    ids = torch.cat(
        [torch.tensor([5]), code_token_ids(torch.tensor([[codes[0, 0], 1, 0]]), k, off)[0, :1]]
    )
    trie_allowed = torch.isfinite(TrieLogitsProcessor(trie)(ids[None], torch.zeros(1, off + v * k)))
    pos_allowed = torch.isfinite(proc(ids[None], torch.zeros(1, off + v * k)))
    assert (trie_allowed <= pos_allowed).all() and trie_allowed.sum() < pos_allowed.sum()


def test_scores_too_narrow_raises():
    trie = CodeTrie(np.array([[0, 1]]), 4, TEXT_VOCAB)
    with pytest.raises(ValueError, match="resize_token_embeddings"):
        TrieLogitsProcessor(trie)(torch.tensor([[3]]), torch.zeros(1, TEXT_VOCAB + 7))


def test_dead_rows_raise_or_fall_back_to_eos():
    v, k, off = 3, 4, TEXT_VOCAB
    trie = CodeTrie(np.array([[0, 1, 2]]), k, off)
    # ends with codes (1, 1) of positions 0, 1: depth 2, not a catalogue prefix
    bad = torch.tensor([[5, off + 1, off + k + 1]])
    good = torch.tensor([[5, 6, off + 0]])
    ids, scores = torch.cat([good, bad]), torch.randn(2, off + v * k)
    with pytest.raises(ValueError, match="no valid next code"):
        TrieLogitsProcessor(trie)(ids, scores)
    # a code of position 1 right after a text token is no prefix either
    with pytest.raises(ValueError, match="no valid next code"):
        TrieLogitsProcessor(trie)(torch.tensor([[5, off + k + 1]]), scores[:1])
    out = TrieLogitsProcessor(trie, eos_token_id=EOS)(ids, scores)
    assert torch.isfinite(out[1]).nonzero().flatten().tolist() == [EOS] and out[1, EOS] == 0
    assert torch.isfinite(out[0]).nonzero().flatten().tolist() == [off + k + 1]
    assert out[0, off + k + 1] == scores[0, off + k + 1]
    with pytest.raises(ValueError, match="non-code"):
        TrieLogitsProcessor(trie, eos_token_id=off + 3)
    with pytest.raises(ValueError, match="needs eos_token_id"):
        TrieLogitsProcessor(trie, force_eos_after_item=True)


# ---------------------------------------------------------------- real generate runs


def catalogue(kind: str, v: int, k: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(7)
    if kind == "few":  # fewer distinct items than beams
        return torch.tensor([[1, 2, 3], [1, 2, 4], [5, 0, 0]])
    codes = torch.randint(0, k, (40, v), generator=g)
    if kind == "duplicates":
        codes = torch.cat([codes, codes[:15], codes[:5]])
    return codes


@pytest.mark.parametrize("family", ["llama", "opt"])
@pytest.mark.parametrize("kind", ["random", "duplicates", "few"])
@pytest.mark.parametrize("end_with_item", [False, True], ids=["text_end", "item_end"])
def test_beam_search_returns_only_catalogue_items(family, kind, end_with_item):
    v, k, beams = 3, 8, 8
    model = tiny_model(family, v, k)
    codes = catalogue(kind, v, k)
    trie = CodeTrie(codes, k, TEXT_VOCAB)
    prompts = make_prompts(codes, k, 32, end_with_item, seed=1)
    kwargs = dict(num_beams=beams, num_return_sequences=beams, max_new_tokens=v, do_sample=False)
    with torch.no_grad():
        out = model.generate(
            prompts,
            attention_mask=torch.ones_like(prompts),
            logits_processor=LogitsProcessorList([TrieLogitsProcessor(trie)]),
            output_scores=True,
            return_dict_in_generate=True,
            **kwargs,
        )
        free = model.generate(prompts, attention_mask=torch.ones_like(prompts), **kwargs)
    seq = out.sequences
    assert seq.shape == (32 * beams, prompts.shape[1] + v)
    assert torch.equal(seq[:, : prompts.shape[1]], prompts.repeat_interleave(beams, 0))
    assert trie.contains(generated_codes(seq, v, k)).all()
    # negative control: the random model alone rarely produces catalogue items
    assert trie.contains(generated_codes(free, v, k)).float().mean() < 0.5

    per_prompt = generated_codes(seq, v, k).reshape(32, beams, v)
    scores = out.sequences_scores.reshape(32, beams)
    n_real = min(trie.num_unique, beams)
    for p in range(32):
        top = {tuple(r) for r in per_prompt[p, :n_real].tolist()}
        assert len(top) == n_real  # the best n_real beams are distinct items
        assert (scores[p, :n_real] > -1e4).all()
    if kind == "few":
        # transformers fills the remaining beams with repeats of real items, scored about
        # -1e9 / v (its initial score of the non-first beams): valid, but to be dropped.
        assert (scores[:, n_real:] < -1e8).all()
        assert {tuple(r) for r in per_prompt[:, :n_real].reshape(-1, v).tolist()} == {
            tuple(r) for r in codes.tolist()
        }


@pytest.mark.parametrize("family", ["llama", "opt"])
def test_left_padded_batch(family):
    v, k, beams = 3, 8, 4
    model = tiny_model(family, v, k, seed=1)
    codes = catalogue("duplicates", v, k)
    trie = CodeTrie(codes, k, TEXT_VOCAB)
    long = make_prompts(codes, k, 8, True, seed=2)
    short = make_prompts(codes, k, 8, False, seed=3)[:, 5:]
    width = long.shape[1]
    pad = width - short.shape[1]
    ids = torch.cat([long, torch.cat([torch.full((8, pad), PAD), short], 1)])
    mask = torch.cat([torch.ones_like(long), (torch.arange(width) >= pad).long().expand(8, -1)])
    with torch.no_grad():
        seq = model.generate(
            ids,
            attention_mask=mask,
            num_beams=beams,
            num_return_sequences=beams,
            max_new_tokens=v,
            do_sample=False,
            logits_processor=LogitsProcessorList([TrieLogitsProcessor(trie)]),
        )
    assert seq.shape == (16 * beams, width + v)
    assert trie.contains(generated_codes(seq, v, k)).all()


@pytest.mark.parametrize("family", ["llama", "opt"])
@pytest.mark.parametrize("do_sample", [False, True], ids=["greedy", "sampling"])
def test_greedy_and_sampling(family, do_sample):
    v, k = 3, 8
    model = tiny_model(family, v, k)
    codes = catalogue("random", v, k)
    trie = CodeTrie(codes, k, TEXT_VOCAB)
    for end_with_item in (False, True):
        prompts = make_prompts(codes, k, 32, end_with_item, seed=4)
        with torch.no_grad():
            seq = model.generate(
                prompts,
                attention_mask=torch.ones_like(prompts),
                max_new_tokens=v,
                do_sample=do_sample,
                top_k=0,
                logits_processor=LogitsProcessorList([TrieLogitsProcessor(trie)]),
            )
        assert seq.shape == (32, prompts.shape[1] + v)
        assert trie.contains(generated_codes(seq, v, k)).all()


def test_position_mode_generate_stays_in_position_sets():
    v, k, beams = 3, 8, 8
    model = tiny_model("llama", v, k)
    codes = catalogue("random", v, k)[:6]
    trie = CodeTrie(codes, k, TEXT_VOCAB)
    prompts = make_prompts(codes, k, 32, False, seed=6)
    with torch.no_grad():
        seq = model.generate(
            prompts,
            attention_mask=torch.ones_like(prompts),
            num_beams=beams,
            num_return_sequences=beams,
            max_new_tokens=v,
            do_sample=False,
            logits_processor=LogitsProcessorList([TrieLogitsProcessor(trie, mode="position")]),
        )
    got = generated_codes(seq, v, k)
    assert (got >= 0).all()
    for p in range(v):
        assert trie.position_mask[p, got[:, p]].all()
    # without the conditional constraint some beams are not catalogue items
    assert not trie.contains(got).all()


@pytest.mark.parametrize("num_beams", [1, 4])
def test_force_eos_after_item(num_beams):
    v, k = 3, 8
    model = tiny_model("llama", v, k)
    codes = catalogue("random", v, k)
    trie = CodeTrie(codes, k, TEXT_VOCAB)
    prompts = make_prompts(codes, k, 8, False, seed=7)
    proc = TrieLogitsProcessor(trie, eos_token_id=EOS, force_eos_after_item=True)
    with torch.no_grad():
        seq = model.generate(
            prompts,
            attention_mask=torch.ones_like(prompts),
            num_beams=num_beams,
            num_return_sequences=num_beams,
            max_new_tokens=v + 3,
            do_sample=False,
            logits_processor=LogitsProcessorList([proc]),
        )
    new = seq[:, prompts.shape[1] :]
    assert new.shape[1] == v + 1  # v codes, then EOS stops every row
    assert (new[:, v] == EOS).all()
    assert trie.contains(token_ids_to_codes(new[:, :v], k, TEXT_VOCAB)).all()


def test_reused_output_matches_a_fresh_one_and_is_never_shared():
    v, k = 3, 8
    codes = catalogue("duplicates", v, k)
    trie = CodeTrie(codes, k, TEXT_VOCAB)
    fresh, reuse = TrieLogitsProcessor(trie, reuse_output=False), TrieLogitsProcessor(trie)
    width = TEXT_VOCAB + v * k + 3
    steps, plan = [], [(0, 1), (2, 2), (1, 3), (2, 4), (0, 5)]
    for depth, seed in plan:
        ids = make_prompts(codes, k, 6, True, seed=seed)
        ids = torch.cat([ids, code_token_ids(codes[seed : seed + 6], k, TEXT_VOCAB)[:, :depth]], 1)
        steps.append((ids, torch.randn(6, width)))

    ptrs = []
    for (depth, seed), (ids, scores) in zip(plan, steps):  # nothing kept: one buffer, reset
        out = reuse(ids, scores)
        assert torch.equal(out, fresh(ids, scores))
        allowed = trie.allowed_mask(codes[seed : seed + 6, :depth])
        assert torch.isfinite(out).sum(1).tolist() == allowed.sum(1).tolist()
        ptrs.append(out.data_ptr())
        del out
    assert len(set(ptrs)) == 1

    kept = reuse(*steps[1])  # a caller keeps the output: the next call must not touch it
    snapshot = kept.clone()
    nxt = reuse(*steps[2])
    assert nxt.data_ptr() != kept.data_ptr() and torch.equal(kept, snapshot)
    view = nxt[:, : TEXT_VOCAB + k]  # a view of it kept, the tensor itself dropped
    view_snapshot = view.clone()
    del nxt
    later = reuse(*steps[3])
    assert torch.equal(view, view_snapshot) and torch.equal(later, fresh(*steps[3]))

    model = tiny_model("llama", v, k)
    prompts = make_prompts(codes, k, 8, False, seed=9)
    common = dict(attention_mask=torch.ones_like(prompts), max_new_tokens=v, do_sample=False)
    common.update(return_dict_in_generate=True, output_scores=True)
    with torch.no_grad():
        for extra in (dict(num_beams=4, num_return_sequences=4), dict(num_beams=1)):
            a, b = (
                model.generate(
                    prompts, logits_processor=LogitsProcessorList([proc]), **extra, **common
                )
                for proc in (
                    TrieLogitsProcessor(trie, reuse_output=False),
                    TrieLogitsProcessor(trie),
                )
            )
            assert torch.equal(a.sequences, b.sequences)
            assert all(torch.equal(x, y) for x, y in zip(a.scores, b.scores))


def test_generate_from_inputs_embeds():
    """With inputs_embeds, processors see only the generated tokens (none at the first step)."""
    v, k = 3, 8
    model = tiny_model("llama", v, k)
    codes = catalogue("random", v, k)
    trie = CodeTrie(codes, k, TEXT_VOCAB)
    prompts = make_prompts(codes, k, 8, True, seed=10)
    embeds = model.get_input_embeddings()(prompts)
    with torch.no_grad():
        seq = model.generate(
            inputs_embeds=embeds,
            attention_mask=torch.ones_like(prompts),
            num_beams=4,
            num_return_sequences=4,
            max_new_tokens=v,
            do_sample=False,
            logits_processor=LogitsProcessorList([TrieLogitsProcessor(trie)]),
        )
    assert seq.shape == (32, v)
    assert trie.contains(generated_codes(seq, v, k)).all()
