"""Vectorised catalogue lookups of a codebook: item id -> row, code tuple -> items."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .keys import codes_to_keys


class CatalogueIndex:
    """Sorted copies of a catalogue's ids and code keys, built on first use.

    Call :meth:`clear` whenever the catalogue changes (the owner does, after ``fit`` and
    ``assign``); a lookup then re-sorts once (``O(n log n)``) and answers each query with a
    binary search.
    """

    def __init__(self) -> None:
        self._ids: tuple[np.ndarray, np.ndarray] | None = None
        self._keys: tuple[np.ndarray, np.ndarray] | None = None

    def clear(self) -> None:
        self._ids = None
        self._keys = None

    def rows(self, catalogue_ids: Sequence[str], query: Sequence[str]) -> np.ndarray:
        """``(len(query),)`` int64 row of each queried id in ``catalogue_ids``, ``-1`` where
        unknown."""
        if self._ids is None:
            ids = np.asarray(catalogue_ids, dtype=str)
            order = np.argsort(ids, kind="stable")
            self._ids = (ids[order], order)
        sorted_ids, order = self._ids
        wanted = np.asarray(list(query), dtype=str)
        if len(wanted) == 0:
            return np.empty(0, dtype=np.int64)
        pos = np.searchsorted(sorted_ids, wanted)
        pos[pos == len(sorted_ids)] = 0
        found = sorted_ids[pos] == wanted
        return np.where(found, order[pos], -1).astype(np.int64)

    def items(
        self,
        catalogue_ids: Sequence[str],
        catalogue_codes: np.ndarray,
        codebook_size: int,
        query: np.ndarray,
    ) -> list[list[str]]:
        """Ids of all catalogue items with each ``(n, v)`` query tuple, catalogue order."""
        if self._keys is None:
            keys = codes_to_keys(catalogue_codes, codebook_size)
            order = np.argsort(keys, kind="stable")
            self._keys = (keys[order], order)
        sorted_keys, order = self._keys
        wanted = codes_to_keys(query, codebook_size)
        left = np.searchsorted(sorted_keys, wanted, side="left")
        right = np.searchsorted(sorted_keys, wanted, side="right")
        return [[catalogue_ids[j] for j in order[a:b]] for a, b in zip(left, right)]
