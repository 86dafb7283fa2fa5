"""Data layer: readers for real recommendation formats, one common representation, splits.

>>> from store_hf.data import load_embedded_dataset, leave_one_out
>>> ds = load_embedded_dataset()
>>> ds.num_items, ds.num_users
(4344, 8317)
"""

from __future__ import annotations

from pathlib import Path

from . import amazon, generic, lcrec, mind, movielens, recbole, yelp  # noqa: F401  (registers readers)
from .dataset import DataOptions, RecDataset
from .errors import DataFormatError
from .io import PathLike
from .registry import available_formats, detect_format, get_reader
from .splits import (
    CONFIRMATION_SEED,
    EVAL_SEED,
    TUNING_SAMPLES,
    confirmation_sample,
    leave_one_out,
    sample_users,
    user_split,
)

EMBEDDED_DATASET_DIR = Path(__file__).resolve().parent.parent / "resources" / "amazon_scientific"


def read_dataset(
    path: PathLike | None = None,
    *,
    format: str | None = None,
    items: PathLike | None = None,
    interactions: PathLike | None = None,
    options: DataOptions | None = None,
    **kwargs,
) -> RecDataset:
    """Read a dataset in any supported format.

    Args:
        path: a folder holding one known layout (the format is detected from the file names),
            used when ``items``/``interactions`` are not given.
        format: one of :func:`available_formats`; with explicit ``items``/``interactions`` it is
            detected from their folder, falling back to ``"generic"``.
        items / interactions: explicit file paths.
        options: cleaning options (:class:`DataOptions`).
        **kwargs: format-specific options (e.g. ``min_rating`` for MovieLens, column names for
            ``generic``).
    """
    if items is None and interactions is None:
        if path is None:
            raise DataFormatError(
                "give a dataset folder, or both items and interactions files", field="path"
            )
        detected, items, interactions = detect_format(path)
        format = format or detected
    elif items is None or interactions is None:
        raise DataFormatError(
            "give both items and interactions files",
            field="items" if items is None else "interactions",
        )
    elif format is None:
        try:
            format, _, _ = detect_format(Path(items).parent)
        except DataFormatError:  # explicit files in no known layout: the user's own catalogue
            format = "generic"
    return get_reader(format).read(items, interactions, options=options, **kwargs)


def load_embedded_dataset(options: DataOptions | None = None) -> RecDataset:
    """The Amazon "Industrial & Scientific" set shipped inside the package (see its NOTICE)."""
    return lcrec.read_lcrec(
        EMBEDDED_DATASET_DIR / "Scientific.item.json",
        EMBEDDED_DATASET_DIR / "Scientific.inter.json",
        options=options,
    )


def load_dataset_or_embedded(
    path: PathLike | None = None,
    *,
    format: str | None = None,
    items: PathLike | None = None,
    interactions: PathLike | None = None,
    options: DataOptions | None = None,
) -> RecDataset:
    """The dataset that ``path`` or ``items``/``interactions`` name (:func:`read_dataset`), or
    the embedded one (:func:`load_embedded_dataset`) when none is named; ``options`` apply to
    either. The one rule behind every ``--dataset`` flag (CLI, examples, benchmarks)."""
    if path is None and items is None and interactions is None:
        return load_embedded_dataset(options)
    return read_dataset(
        path, format=format, items=items, interactions=interactions, options=options
    )


__all__ = [
    "DataFormatError",
    "DataOptions",
    "EMBEDDED_DATASET_DIR",
    "RecDataset",
    "available_formats",
    "detect_format",
    "leave_one_out",
    "sample_users",
    "CONFIRMATION_SEED",
    "EVAL_SEED",
    "TUNING_SAMPLES",
    "confirmation_sample",
    "load_dataset_or_embedded",
    "load_embedded_dataset",
    "read_dataset",
    "user_split",
]
