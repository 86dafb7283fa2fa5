"""Starting rows of the recommender's code-token embeddings, taken from the dense tokens."""

from __future__ import annotations

import torch


@torch.no_grad()
def code_embeddings_from_dense(
    tokenizer_model, dense: torch.Tensor, codes: torch.Tensor, codebook_size: int
) -> torch.Tensor:
    """Initial code-token rows ``(v * k, dim)``: for code ``c`` at position ``p``, the mean
    placeholder input (scaled dense token ``p``) of the items in that cluster.

    Args:
        tokenizer_model: a ``StoreTokenizerModel`` (its ``placeholder_scaler`` and ``dtype``).
        dense: ``(num_items, v, hidden)`` dense-token outputs of the items.
        codes: ``(num_items, v)`` integer codes in ``[0, codebook_size)``.
        codebook_size: ``k``.

    The recommender thus starts by reading a code token the way the tokenizer taught the LLM to
    read that cluster's dense tokens. Empty clusters get the mean over all items.
    """
    states = tokenizer_model.placeholder_scaler(dense.to(tokenizer_model.dtype)).float()
    n, v, dim = states.shape
    rows = (codes.long() + torch.arange(v) * codebook_size).reshape(-1)
    sums = torch.zeros(v * codebook_size, dim).index_add_(0, rows, states.reshape(-1, dim))
    counts = torch.bincount(rows, minlength=v * codebook_size).unsqueeze(1)
    fallback = states.mean(0).repeat_interleave(codebook_size, dim=0)  # per position
    return torch.where(counts > 0, sums / counts.clamp_min(1), fallback)
