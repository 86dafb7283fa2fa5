"""Decoding of STORE's generative recommender: beam search over code positions, top-k items
and the yes/no scoring mode.

These functions are :meth:`StoreForGenerativeRec.beam_search_codes`, ``recommend`` and
``score`` (the model binds them as methods), kept apart from the model definition as transformers keeps ``generate`` apart from
its models. They read the model through its forward pass, its ``trie`` (the catalogue's code
tuples, built once) and its prompt builder. Shipped with saved models through
``trust_remote_code``: torch, transformers and relative imports only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from transformers.modeling_outputs import CausalLMOutputWithPast
from transformers.utils import ModelOutput

from .prompts import left_pad

#: The KV cache's name in forward arguments and outputs: transformers 5.24 renamed
#: ``past_key_values`` to ``cache`` (the old name warns, and goes in 5.40).
CACHE = "cache" if "cache" in CausalLMOutputWithPast.__dataclass_fields__ else "past_key_values"


@dataclass
class RecommendationOutput(ModelOutput):
    """Output of :meth:`StoreForGenerativeRec.recommend`.

    Args:
        item_ids: per user, the top ``k`` item ids, best first (fewer when the beams found fewer).
        scores: ``(num_users, k)`` summed log-probabilities of each item's code sequence
            (``-inf`` where no item was found).
        codes: ``(num_users, num_beams, v)`` the beams' code sequences, best first.
    """

    item_ids: list[list[str]] | None = None
    scores: torch.FloatTensor | None = None
    codes: torch.LongTensor | None = None


def _next_code_logprobs(model, lo: int, **inputs) -> tuple[torch.Tensor, object]:
    """One decoding step: log-softmax over the whole vocabulary at the last position, sliced to
    the ``k`` code tokens starting at ``lo``: ``(rows, k)``, and the updated KV cache."""
    out = model(**inputs, use_cache=True, logits_to_keep=1)
    logp = torch.log_softmax(out.logits[:, -1].float(), dim=-1)
    return logp[:, lo : lo + model.config.codebook_size], getattr(out, CACHE)


@torch.no_grad()
def constrained_beam_search(
    model,
    input_ids: torch.LongTensor,
    attention_mask: torch.LongTensor,
    num_beams: int,
    mode: str = "trie",
) -> tuple[torch.LongTensor, torch.FloatTensor]:
    """Constrained beam search over the ``v`` code positions with one prefill per prompt
    (``StoreForGenerativeRec.beam_search_codes``).

    Stock ``generate`` repeats each prompt ``num_beams`` times before the prefill; here the
    prompt runs once and its KV cache is repeated across the beams. Scores are the same as
    ``generate``'s (log-softmax over the whole vocabulary, summed over the ``v`` steps).

    Args:
        model: a :class:`StoreForGenerativeRec`.
        input_ids / attention_mask: ``(B, L)`` left-padded prompts.
        mode: ``"trie"`` (only prefixes of real items) or ``"position"`` (any code of the
            right position: the ablation).

    Returns:
        ``codes`` ``(B, num_beams, v)`` and ``scores`` ``(B, num_beams)``, best first
        (``-inf`` for beams that found no valid sequence).
    """
    if mode not in ("trie", "position"):
        raise ValueError(f"mode must be 'trie' or 'position', got {mode!r}")
    v, k = model.config.num_dense_tokens, model.config.codebook_size
    off = model.config.code_token_offset
    trie = model.trie.to(input_ids.device)
    batch, nb = input_ids.shape[0], num_beams

    def allowed(prefix: torch.LongTensor) -> torch.BoolTensor:  # (rows, d) -> (rows, k)
        if mode == "trie":
            return trie.allowed_mask(prefix)
        return trie.position_mask[prefix.shape[1]].expand(prefix.shape[0], -1)

    step, cache = _next_code_logprobs(
        model, off, input_ids=input_ids, attention_mask=attention_mask
    )
    step = step.masked_fill(~allowed(input_ids.new_zeros(batch, 0)), -math.inf)
    if nb > k:  # more beams than first codes: the extra beams start dead and fill up later
        step = torch.cat([step, step.new_full((batch, nb - k), -math.inf)], dim=-1)
    beam_scores, first = step.topk(nb, dim=-1)  # (B, nb)
    codes = (first % k).unsqueeze(-1)  # (B, nb, 1)
    cache.batch_repeat_interleave(nb)
    mask = attention_mask.repeat_interleave(nb, dim=0)
    # the forward numbers real tokens from 0 (left padding): the next one is the count of them
    position = attention_mask.sum(-1, keepdim=True).repeat_interleave(nb, dim=0)
    rows = torch.arange(batch, device=input_ids.device).unsqueeze(1) * nb
    for depth in range(1, v):
        tokens = off + (depth - 1) * k + codes[:, :, -1].reshape(-1, 1)
        mask = torch.cat([mask, mask.new_ones(mask.shape[0], 1)], dim=1)
        step, cache = _next_code_logprobs(
            model,
            off + depth * k,
            input_ids=tokens,
            attention_mask=mask,
            position_ids=position + (depth - 1),
            cache=cache,
        )
        step = step.masked_fill(~allowed(codes.reshape(batch * nb, depth)), -math.inf)
        total = (beam_scores.reshape(-1, 1) + step).reshape(batch, nb * k)
        beam_scores, flat = total.topk(nb, dim=-1)
        parent, code = flat // k, flat % k
        codes = torch.cat(
            [codes.gather(1, parent.unsqueeze(-1).expand(-1, -1, depth)), code.unsqueeze(-1)],
            dim=-1,
        )
        cache.reorder_cache((rows + parent).reshape(-1))
    return codes, beam_scores


def _top_items(
    model, codes: torch.LongTensor, beam_scores: torch.FloatTensor, k: int
) -> tuple[list[list[str]], torch.FloatTensor]:
    """The first ``k`` catalogue items of each user's beams ``(B, nb, v)``, best beam first.

    A beam whose tuple several items share yields each of them (ascending row); beams that are
    no item (position mode) or dead (``-inf``) yield none. Returns the item ids per user and
    their scores ``(B, k)`` (``-inf`` where fewer than ``k`` were found).
    """
    batch, nb, v = codes.shape
    rows, owner = model.trie.items_of(codes.reshape(-1, v))
    flat = beam_scores.reshape(-1)[owner]
    keep = torch.isfinite(flat)
    rows, user, flat = rows[keep], owner[keep] // nb, flat[keep]
    counts = torch.bincount(user, minlength=batch)
    rank = torch.arange(len(user), device=user.device) - (counts.cumsum(0) - counts)[user]
    top = rank < k
    scores = torch.full((batch, k), -math.inf)
    scores[user[top].cpu(), rank[top].cpu()] = flat[top].cpu()
    ids = model.config.item_ids
    per_user = torch.split(rows[top].cpu(), counts.clamp(max=k).tolist())
    return [[ids[r] for r in chunk.tolist()] for chunk in per_user], scores


@torch.no_grad()
def recommend_items(
    model,
    histories: list[list[str]],
    k: int = 10,
    num_beams: int | None = None,
    batch_size: int = 16,
    mode: str = "trie",
) -> RecommendationOutput:
    """Top-``k`` next items for each user history (``StoreForGenerativeRec.recommend``).

    Beam search over the code positions (``num_beams`` defaults to ``k``, prompts in batches of
    ``batch_size``); when several items share a code sequence (collision resolution off) each
    of them is returned, so hits are counted per item. In ``mode="position"`` beams that are not
    real items are skipped.

    Args:
        model: a :class:`StoreForGenerativeRec`.
        histories: per user, item ids, oldest first.

    Returns:
        :class:`RecommendationOutput` (``scores`` ``(num_users, k)``, ``codes``
        ``(num_users, num_beams, v)``).
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    num_beams = max(num_beams or k, 1)
    was_training = model.training
    model.eval()
    item_ids, scores, all_codes = [], [], []
    for start in range(0, len(histories), batch_size):
        prompts = model._history_prompts(histories[start : start + batch_size])
        ids, mask = left_pad(prompts, model._pad_id(), model.device)
        codes, beam_scores = constrained_beam_search(model, ids, mask, num_beams, mode)
        chunk_ids, chunk_scores = _top_items(model, codes, beam_scores, k)
        item_ids += chunk_ids
        scores.append(chunk_scores)
        all_codes.append(codes.cpu())
    model.train(was_training)
    return RecommendationOutput(
        item_ids=item_ids, scores=torch.cat(scores), codes=torch.cat(all_codes)
    )


@torch.no_grad()
def score_candidates(
    model, histories: list[list[str]], candidates: list[str], batch_size: int = 32
) -> torch.FloatTensor:
    """Scoring mode (paper Figure 7, ``StoreForGenerativeRec.score``): the probability that each
    user takes the candidate, ``softmax([logit_yes, logit_no])[0]`` at the last prompt position.

    Args:
        model: a :class:`StoreForGenerativeRec`.
        histories: ``B`` item-id histories, oldest first; ``candidates``: ``B`` item ids.

    Returns:
        ``(B,)`` float probabilities on the CPU.
    """
    if len(histories) != len(candidates):
        raise ValueError(f"{len(histories)} histories but {len(candidates)} candidates")
    was_training = model.training
    model.eval()
    builder = model.prompts
    yes, no = builder.answer_ids
    cand_codes = model.item_codes[model.item_rows(candidates)].cpu()
    out = []
    for start in range(0, len(histories), batch_size):
        prompts = [
            builder.scoring(model.item_codes[model.item_rows(h)].cpu(), cand_codes[start + i])
            for i, h in enumerate(histories[start : start + batch_size])
        ]
        ids, mask = left_pad(prompts, model._pad_id(), model.device)
        logits = model(input_ids=ids, attention_mask=mask, logits_to_keep=1).logits[:, -1]
        pair = logits[:, [yes, no]].float()
        out.append(torch.softmax(pair, dim=-1)[:, 0].cpu())
    model.train(was_training)
    return torch.cat(out)


__all__ = [
    "RecommendationOutput",
    "constrained_beam_search",
    "recommend_items",
    "score_candidates",
]
