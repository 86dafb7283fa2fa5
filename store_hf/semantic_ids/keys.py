"""Code tuples as int64 keys, and the collision and memory arithmetic built on them.

A tuple ``(c_1, ..., c_v)`` of codes in ``[0, k)`` is the integer ``sum_i c_i * k**(v-1-i)``:
sorting keys sorts tuples lexicographically, and set operations on tuples become ``np.unique``
/ ``np.searchsorted`` on one int64 column.
"""

from __future__ import annotations

from typing import Any

import numpy as np

_MAX_KEY = 2**63 - 1


def embedding_memory(
    num_items: int, hidden: int, codebook_size: int, num_positions: int
) -> dict[str, int]:
    """Floats needed to embed items with unique IDs vs with semantic codes (paper section 2.1).

    Unique IDs need one ``hidden``-sized row per item (``N * D``); codes need one row per
    (position, cluster) pair (``k * v * D``), independent of the catalogue size.
    """
    return {
        "id_table": int(num_items) * int(hidden),
        "code_table": int(codebook_size) * int(num_positions) * int(hidden),
    }


def codes_to_keys(codes: np.ndarray, codebook_size: int) -> np.ndarray:
    """One int64 key per code tuple: ``sum_i c_i * k**(v-1-i)`` (lexicographic order).

    Args:
        codes: ``(n, v)`` integer codes in ``[0, codebook_size)``.
    Returns:
        ``(n,)`` int64 keys.
    """
    codes = np.asarray(codes, dtype=np.int64)
    v = codes.shape[1]
    check_key_range(codebook_size, v)
    weights = codebook_size ** np.arange(v - 1, -1, -1, dtype=np.int64)
    return codes @ weights


def keys_to_codes(keys: np.ndarray, codebook_size: int, num_positions: int) -> np.ndarray:
    """Inverse of :func:`codes_to_keys`: ``(n,)`` int64 keys -> ``(n, v)`` int64 codes."""
    keys = np.asarray(keys, dtype=np.int64)
    weights = codebook_size ** np.arange(num_positions - 1, -1, -1, dtype=np.int64)
    return (keys[:, None] // weights[None, :]) % codebook_size


def check_key_range(codebook_size: int, num_positions: int) -> None:
    """ValueError when ``k**v`` tuples do not fit an int64 key."""
    if codebook_size**num_positions > _MAX_KEY:
        raise ValueError(
            f"codebook_size**num_positions = {codebook_size}**{num_positions} does not fit an "
            "int64 code key; use fewer positions or a smaller codebook"
        )


def in_sorted(values: np.ndarray, sorted_array: np.ndarray) -> np.ndarray:
    """Boolean mask ``(len(values),)``: which ``values`` occur in the ascending ``sorted_array``."""
    if len(sorted_array) == 0:
        return np.zeros(len(values), dtype=bool)
    idx = np.searchsorted(sorted_array, values)
    idx[idx == len(sorted_array)] = 0
    return sorted_array[idx] == values


def collision_summary(codes: np.ndarray, codebook_size: int) -> dict[str, Any]:
    """Share of the ``(n, v)`` codes' items whose tuple another item shares, and the groups."""
    if len(codes) == 0:
        return {"rate": 0.0, "colliding_items": 0, "groups": 0, "largest_group": 0}
    _, counts = np.unique(codes_to_keys(codes, codebook_size), return_counts=True)
    colliding = int(counts[counts > 1].sum())
    return {
        "rate": colliding / len(codes),
        "colliding_items": colliding,
        "groups": int((counts > 1).sum()),
        "largest_group": int(counts.max()),
    }
