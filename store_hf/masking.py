"""The cascaded attention mask of STORE's dense tokenizer (paper section 3.1, Figure 4).

A dense-tokenizer sequence is made of blocks, each position tagged with a block id::

    [content ...][DT_1 .. DT_v][PH_1 .. PH_v][task token, target ...][padding]
        CONTENT       DENSE      PLACEHOLDER           TASK              PAD

Inside a block attention is causal. Across blocks only two edges exist: the dense tokens see the
whole content block, and the task block sees the whole placeholder block. Everything the task
block learns about the item must therefore pass through the placeholders, which are filled with
the dense tokens' last-layer outputs (the dual forward).

The literal (paper) path of ``StoreTokenizerModel.forward(path="literal")`` is here too
(:func:`literal_inputs`, :func:`cascaded_forward`, :func:`literal_forward`): it is the only user
of this mask, the default fast path needs none. Shipped with saved models (torch only).
"""

from __future__ import annotations

import torch

PAD, CONTENT, DENSE, PLACEHOLDER, TASK = 0, 1, 2, 3, 4
NUM_BLOCK_TYPES = 5

#: (query block, key block) pairs allowed to attend across blocks.
CASCADED_EDGES: tuple[tuple[int, int], ...] = ((DENSE, CONTENT), (TASK, PLACEHOLDER))


def block_attention_allowed(
    block_ids: torch.LongTensor, edges: tuple[tuple[int, int], ...] = CASCADED_EDGES
) -> torch.BoolTensor:
    """Which position may attend to which.

    Args:
        block_ids: ``(batch, seq_len)`` block id per position (``PAD`` for padding). Blocks must be
            contiguous: a block id appears in one run per row.
        edges: allowed ``(query_block, key_block)`` pairs across blocks.

    Returns:
        ``(batch, seq_len, seq_len)`` bool, ``[b, q, k]`` True where query ``q`` may attend to key
        ``k``: causal within a block, full along ``edges``. Every position may attend to itself, so
        padding rows are never fully masked (a fully masked softmax row gives NaN under sdpa).
    """
    q = block_ids.unsqueeze(-1)  # (B, L, 1)
    k = block_ids.unsqueeze(-2)  # (B, 1, L)
    seq_len = block_ids.shape[-1]
    causal = torch.ones(seq_len, seq_len, dtype=torch.bool, device=block_ids.device).tril()
    allowed = (q == k) & (q != PAD) & causal
    edge_table = torch.zeros(
        NUM_BLOCK_TYPES, NUM_BLOCK_TYPES, dtype=torch.bool, device=block_ids.device
    )
    for query_block, key_block in edges:
        edge_table[query_block, key_block] = True
    allowed |= edge_table[q, k]
    allowed |= torch.eye(seq_len, dtype=torch.bool, device=block_ids.device)
    return allowed


def to_additive_mask(allowed: torch.BoolTensor, dtype: torch.dtype) -> torch.Tensor:
    """Turn a boolean ``(B, L, L)`` mask into the ``(B, 1, L, L)`` additive float mask models take.

    A 4D mask must be additive (0 where allowed, ``finfo(dtype).min`` where blocked): eager
    attention adds a 4D mask to the scores as is, so a boolean one would be added as 0/1 and leak.
    """
    blocked = torch.finfo(dtype).min
    mask = torch.zeros(allowed.shape, dtype=dtype, device=allowed.device)
    return mask.masked_fill_(~allowed, blocked).unsqueeze(1)


def cascaded_attention_mask(
    block_ids: torch.LongTensor, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """The cascaded mask as an additive float tensor of shape ``(batch, 1, seq_len, seq_len)``."""
    return to_additive_mask(block_attention_allowed(block_ids), dtype)


def block_position_ids(block_ids: torch.LongTensor) -> torch.LongTensor:
    """Position ids that count from 0 over content + dense tokens and restart at 0 at the
    placeholder block; padding gets 0.

    Restarting at the placeholders makes the literal sequence and the fast path's second pass see
    identical positions, which is what makes the two paths compute the same function (OPT's learned
    positions are absolute; for RoPE models only differences matter, and they match too).
    """
    real = block_ids != PAD
    second = (block_ids == PLACEHOLDER) | (block_ids == TASK)
    first = real & ~second
    pos_first = torch.cumsum(first.long(), dim=-1) - 1
    pos_second = torch.cumsum(second.long(), dim=-1) - 1
    return torch.where(
        first, pos_first, torch.where(second, pos_second, torch.zeros_like(pos_first))
    ).clamp_min(0)


# ---------------------------------------------------------------- the literal (paper) path
# StoreTokenizerModel.forward(path="literal") runs the paper's single sequence under this mask;
# the default fast path computes the same loss without it (see docs/tokenizer.md). The functions
# take the model as their first argument and use its embedding and backbone helpers.


def literal_inputs(
    model,
    content_input_ids: torch.LongTensor,
    content_attention_mask: torch.LongTensor,
    task_item_index: torch.LongTensor,
    task_ids: torch.LongTensor,
    labels: torch.LongTensor,
) -> tuple[torch.Tensor, torch.LongTensor]:
    """The paper's single sequence per sample, with the placeholder block still empty (zeros).

    Args:
        model: a ``StoreTokenizerModel``; the other arguments as in its ``forward``.

    Returns:
        ``inputs_embeds`` ``(num_samples, content_len + 2v + T, dim)`` laid out as
        ``[left pad][content][DT][PH][task][target][right pad]`` and its ``block_ids``
        ``(num_samples, content_len + 2v + T)``.
    """
    v = model.config.num_dense_tokens
    content = model._embed(content_input_ids[task_item_index])
    n, dtype = content.shape[0], content.dtype
    dense = model.dense_embeddings.to(dtype).unsqueeze(0).expand(n, -1, -1)
    task_inputs = model._task_inputs(task_ids, labels)
    embeds = torch.cat([content, dense, torch.zeros_like(dense), task_inputs], dim=1)
    task_real = torch.cat([labels.new_ones(n, 1, dtype=torch.bool), labels[:, :-1] != -100], dim=1)
    block_ids = torch.cat(
        [
            torch.where(content_attention_mask[task_item_index].bool(), CONTENT, PAD),
            torch.full((n, v), DENSE, device=labels.device),
            torch.full((n, v), PLACEHOLDER, device=labels.device),
            torch.where(task_real, TASK, PAD),
        ],
        dim=1,
    )
    return embeds, block_ids


def cascaded_forward(
    model, inputs_embeds: torch.Tensor, block_ids: torch.LongTensor
) -> torch.Tensor:
    """One backbone forward of literal sequences ``(B, L, dim)`` under the cascaded mask, with
    :func:`block_position_ids`: ``(B, L, dim)`` last-layer states."""
    mask = cascaded_attention_mask(block_ids, inputs_embeds.dtype)
    return model._run(inputs_embeds, mask, block_position_ids(block_ids))


def literal_forward(
    model,
    inputs_embeds: torch.Tensor,
    block_ids: torch.LongTensor,
    task_item_index: torch.LongTensor,
    num_items: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The dual forward of :func:`literal_inputs`' sequences: run them, fill the placeholders with
    the scaled dense-token outputs, run them again.

    Args:
        inputs_embeds / block_ids: ``(num_samples, L, dim)`` / ``(num_samples, L)`` from
            :func:`literal_inputs`.
        task_item_index: ``(num_samples,)`` item of each sample; ``num_items``: items in the batch.

    Returns:
        ``dense`` ``(num_items, v, dim)`` dense-token states (one row per item) and the task
        block's states ``(num_samples, T, dim)``, as the fast path returns them.
    """
    v = model.config.num_dense_tokens
    c = int((block_ids[0] == DENSE).int().argmax())  # content width: every row is padded to it
    dense = cascaded_forward(model, inputs_embeds, block_ids)[:, c : c + v]
    placeholders = model.placeholder_scaler(dense).to(inputs_embeds.dtype)
    filled = torch.cat(
        [inputs_embeds[:, : c + v], placeholders, inputs_embeds[:, c + 2 * v :]], dim=1
    )
    second = cascaded_forward(model, filled, block_ids)
    # Every sample of an item computed the same dense states; keep one row per item.
    item_dense = dense.new_zeros(num_items, *dense.shape[1:])
    item_dense[task_item_index] = dense
    return item_dense, second[:, c + 2 * v :]
