"""Saved semantic-ID folders: the codebook pair and the RQ-VAE pair.

Both use :func:`store_hf.files.save_tensors_and_config` / :func:`~store_hf.files.load_tensors_and_config`:
``<name>.safetensors`` (arrays, with ``format_version`` and ``fingerprint`` in its metadata) and
``<name>.json`` (``format_version``, ``fingerprint``, then the settings), each written
atomically. The codebook files keep the names and keys of the first release
(``codebook.safetensors`` / ``codebook.json``, format 1), so older folders load unchanged.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..files import load_tensors_and_config, save_tensors_and_config

if TYPE_CHECKING:
    from .codebook import SemanticCodebook

FORMAT_VERSION = 1
WEIGHTS_NAME = "codebook.safetensors"
CONFIG_NAME = "codebook.json"
#: The codebook's arrays, as named in ``codebook.safetensors``.
TENSORS = ("pca_mean", "pca_components", "centroids", "codes", "raw_codes")


def save_codebook(book: SemanticCodebook, folder: str | os.PathLike) -> Path:
    """Write a fitted codebook's arrays and its settings, ids and statistics into ``folder``."""
    arrays = {name: np.ascontiguousarray(getattr(book, name)) for name in TENSORS}
    for name in ("codes", "raw_codes"):
        arrays[name] = arrays[name].astype(np.int64, copy=False)
    meta = {
        "settings": book.settings(),
        "num_positions": int(book.num_positions),
        "hidden_size": int(book.hidden_size),
        "pca_explained_variance": list(book.pca_explained_variance),
        "fit_statistics": book._fit_stats,
        "assigned": book._assigned,
        "item_ids": list(book.item_ids),
        "statistics": book.statistics(),
    }
    folder = Path(folder)
    save_tensors_and_config(folder, WEIGHTS_NAME, CONFIG_NAME, arrays, meta, FORMAT_VERSION)
    return folder


def load_codebook(cls: type[SemanticCodebook], folder: str | os.PathLike) -> SemanticCodebook:
    """Read what :func:`save_codebook` wrote; ValueError naming the file if anything is off."""
    folder = Path(folder)
    weights_path, config_path = folder / WEIGHTS_NAME, folder / CONFIG_NAME
    tensors, meta = load_tensors_and_config(
        folder, WEIGHTS_NAME, CONFIG_NAME, FORMAT_VERSION, framework="np", what="codebook"
    )
    missing = [name for name in TENSORS if name not in tensors]
    if missing:
        raise ValueError(f"corrupt codebook file {weights_path}: missing tensors {missing}")
    try:
        book = cls(**meta["settings"])
        book.num_positions = int(meta["num_positions"])
        book.hidden_size = int(meta["hidden_size"])
        book.pca_explained_variance = [float(x) for x in meta["pca_explained_variance"]]
        book._fit_stats = dict(meta["fit_statistics"])
        book._assigned = {k: int(v) for k, v in meta["assigned"].items()}
        book.item_ids = [str(i) for i in meta["item_ids"]]
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"corrupt codebook file {config_path}: {e!r}") from e
    for name in TENSORS:
        setattr(book, name, tensors[name])
    book.codes = book.codes.astype(np.int64, copy=False)
    book.raw_codes = book.raw_codes.astype(np.int64, copy=False)
    n, v, k = len(book.item_ids), book.num_positions, book.codebook_size
    expected = {
        "codes": (n, v),
        "raw_codes": (n, v),
        "centroids": (v, k, book.pca_components.shape[1]),
    }
    for name, shape in expected.items():
        if tensors[name].shape != shape:
            raise ValueError(
                f"corrupt codebook file {weights_path}: {name} has shape "
                f"{tuple(tensors[name].shape)}, expected {shape}"
            )
    return book
