"""The encode stage's item encoding: every item's dense tokens, sharded over processes.

:meth:`StoreTokenizerModel.encode_items` encodes a list of items in one process. Under
``torch.distributed`` (e.g. ``accelerate launch``) this module gives each process a contiguous
shard of the items and gathers the shards in order, so every process holds the whole result;
the main process shows a progress bar. Package-only (not shipped with saved models).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.distributed as dist


def encode_items(
    model,
    texts: Sequence[str],
    tokenizer,
    batch_size: int = 32,
    bf16: bool = False,
    show_progress: bool = True,
    pooling: str = "dense",
) -> torch.Tensor:
    """Dense tokens (or mean-pooled states) of every item, in all processes.

    Args:
        model: a :class:`~store_hf.modeling_store.StoreTokenizerModel`.
        texts: one content string per item, the same list in every process.
        batch_size / bf16 / pooling: as in :meth:`StoreTokenizerModel.encode_items`.
        show_progress: a progress bar over the batches (main process only).

    Returns:
        float32 ``(num_items, v, dim)`` (``(num_items, dim)`` for ``"mean"``) on the CPU, in the
        order of ``texts``, identical in every process.
    """
    from tqdm.auto import tqdm

    texts = list(texts)
    sharded = dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1
    rank, world = (dist.get_rank(), dist.get_world_size()) if sharded else (0, 1)
    bounds = [len(texts) * r // world for r in range(world + 1)]
    local = model.encode_items(
        texts[bounds[rank] : bounds[rank + 1]],
        tokenizer,
        batch_size=batch_size,
        bf16=bf16,
        pooling=pooling,
        progress=lambda batches: tqdm(
            batches, desc="encode items", disable=not (show_progress and rank == 0)
        ),
    )
    if not sharded:
        return local
    shards = [None] * world
    dist.all_gather_object(shards, local)
    return torch.cat(shards)


__all__ = ["encode_items"]
