"""The encode stage: every item's dense tokens (or another embedding), sharded over processes.

:meth:`StoreTokenizerModel.encode_items` encodes a list of items in one process. Under
``torch.distributed`` (e.g. ``accelerate launch``) this module gives each process a contiguous
shard of the items and gathers the shards in order, so every process holds the whole result;
the main process shows a progress bar. Package-only (not shipped with saved models).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from datasets import Dataset

from .backbones import resolve_bf16
from .files import write_json_atomic


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


def encode_stage(
    folder: Path,
    *,
    items: Dataset,
    method: str,
    tokenizer_dir: Path,
    batch_size: int,
    bf16: bool | None,
    is_main: bool = True,
) -> dict[str, Any]:
    """The pipeline's encode stage: one embedding per item, saved as
    ``folder/embeddings.safetensors`` (``"embeddings"``) with ``folder/item_ids.json``.

    Args:
        method: the run's semantic-ID method: ``"store"`` (the trained tokenizer's dense tokens,
            ``(N, v, hidden)``), ``"llm-rqvae"`` (the backbone's mean-pooled content states,
            ``(N, hidden)``) or ``"minilm-rqvae"`` (all-MiniLM-L6-v2 sentence embeddings).
        tokenizer_dir: the tokenizer stage's ``model`` folder.
        bf16: encode under bf16 autocast (``None``: where the hardware computes it natively).
    """
    from safetensors.torch import save_file

    start = time.time()
    bf16 = resolve_bf16(bf16)
    if method == "minilm-rqvae":
        from .baselines.text_encoder import encode_texts
        from .baselines.text_encoder import item_texts as sentence_texts

        bf16 = False
        embeddings = torch.from_numpy(encode_texts(sentence_texts(items)))
    else:
        from .backbones import load_tokenizer
        from .modeling_store import StoreTokenizerModel
        from .training import item_texts

        model = StoreTokenizerModel.from_pretrained(tokenizer_dir)
        tokenizer = load_tokenizer(tokenizer_dir)
        embeddings = encode_items(
            model,
            item_texts(items, model.config.content_attributes),
            tokenizer,
            batch_size=batch_size,
            bf16=bf16,
            pooling="dense" if method == "store" else "mean",
        )
    seconds = time.time() - start
    if is_main:
        save_file({"embeddings": embeddings.contiguous()}, str(folder / "embeddings.safetensors"))
        write_json_atomic(folder / "item_ids.json", list(items["item_id"]))
    return {
        "num_items": len(items),
        "shape": list(embeddings.shape),
        "items_per_second": round(len(items) / max(seconds, 1e-9), 1),
        "bf16": bf16,
    }


__all__ = ["encode_items", "encode_stage"]
