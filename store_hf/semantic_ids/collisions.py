"""Collision resolution of STORE's codebook: every item gets its own code tuple.

Independent k-means per position can give two items the same full tuple, and a generative
recommender cannot tell such items apart. In every colliding group the item closest to its
last-position centroid keeps the tuple; every other item moves, at the LAST position, to its
next-nearest centroid (squared distance in PCA space) whose tuple is not used yet. Only when all
``k`` tuples with that prefix are used does the search walk back one position (next-nearest
centroid there, then again the nearest free centroid at the last position), and so on. The last
position is where ties are broken because earlier positions fix the coarse prefix that beam
search descends first, so they are left untouched. :func:`resolution_cost` measures the price.

Shapes: ``n`` items to place, ``v`` positions, ``d`` PCA dimensions, ``k`` clusters.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .keys import codes_to_keys, in_sorted
from .pca_kmeans import distortion, squared_distances


def resolve(
    raw: np.ndarray, z: np.ndarray, centroids: np.ndarray, taken: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Make the tuples of ``raw`` unique among themselves and against ``taken``.

    Args:
        raw: ``(n, v)`` nearest-centroid codes of the items to place.
        z: ``(n, v, d)`` their PCA coordinates.
        centroids: ``(v, k, d)`` k-means centroids.
        taken: sorted int64 keys already used by other items (never moved).
    Returns:
        ``(codes (n, v), moved (n,) bool)``.
    """
    k, v = centroids.shape[1], raw.shape[1]
    n = len(raw)
    keys = codes_to_keys(raw, k)
    diff = z[:, -1] - centroids[-1][raw[:, -1]].astype(np.float64)
    last_dist = np.einsum("nd,nd->n", diff, diff)
    # Keeper of each group: closest to its last-position centroid, ties to the lower row.
    order = np.lexsort((np.arange(n), last_dist, keys))
    first = np.ones(n, dtype=bool)
    first[1:] = keys[order][1:] != keys[order][:-1]
    keep = np.zeros(n, dtype=bool)
    keep[order[first]] = True
    keep &= ~in_sorted(keys, taken)
    movers = np.flatnonzero(~keep)
    codes = raw.copy()
    if len(movers) == 0:
        return codes, ~keep
    if len(taken) + n > k**v:
        raise ValueError(
            f"{len(taken) + n} items cannot get unique codes from {k}**{v} = {k**v} tuples"
        )
    fixed = np.union1d(taken, keys[keep])  # sorted; never changes during the loop
    placed: set[int] = set()
    weights = np.asarray([k ** (v - 1 - p) for p in range(v)], dtype=np.int64)
    last_order = np.argsort(squared_distances(z[movers, -1], centroids[-1]), axis=1, kind="stable")
    # A loop over colliding items only (a minority); each step is vectorised over k.
    for i, item in enumerate(movers):
        row = raw[item]
        base = int(row @ weights) - int(row[-1])
        found = _first_free(base + last_order[i], fixed, placed)
        if found is not None:
            codes[item, -1] = last_order[i][found]
        else:
            found_row = _walk_back(row, z[item], centroids, base, last_order[i], fixed, placed)
            if found_row is None:
                raise RuntimeError(
                    f"no free code tuple near item row {int(item)}; the codebook is too "
                    "crowded (raise codebook_size)"
                )
            codes[item] = found_row
        placed.add(int(codes_to_keys(codes[item : item + 1], k)[0]))
    return codes, ~keep


def _walk_back(
    row: np.ndarray,
    z_item: np.ndarray,
    centroids: np.ndarray,
    base: int,
    last_order: np.ndarray,
    fixed: np.ndarray,
    placed: set[int],
) -> np.ndarray | None:
    """All ``k`` last-position tuples of this prefix are used: vary earlier positions."""
    k, v = centroids.shape[1], len(row)
    for p in range(v - 2, -1, -1):
        weight = k ** (v - 1 - p)
        order = np.argsort(squared_distances(z_item[p][None], centroids[p])[0], kind="stable")
        for c in order:
            if c == row[p]:
                continue
            prefix = base + (int(c) - int(row[p])) * weight
            found = _first_free(prefix + last_order, fixed, placed)
            if found is not None:
                new = row.copy()
                new[p], new[-1] = c, last_order[found]
                return new
    return None


def _first_free(candidates: np.ndarray, fixed: np.ndarray, placed: set[int]) -> int | None:
    """Index of the first candidate key used neither in ``fixed`` (sorted) nor in ``placed``."""
    free = np.flatnonzero(~in_sorted(candidates, fixed))
    for j in free:  # ``placed`` holds only earlier movers, so this loop rarely runs twice
        if int(candidates[j]) not in placed:
            return int(j)
    return None


def resolution_cost(
    z: np.ndarray, centroids: np.ndarray, raw: np.ndarray, codes: np.ndarray, moved: np.ndarray
) -> dict[str, Any]:
    """What moving ``moved`` items from ``raw`` to ``codes`` (both ``(n, v)``) costs: items
    moved (per position too) and the distortion (squared PCA-space distance to the assigned
    centroids, summed over positions) before and after, absolute and relative."""
    before = distortion(z, centroids, raw)
    increase = distortion(z, centroids, codes) - before
    n_moved = int(moved.sum())
    mean_before = float(before.mean())
    moved_before = float(before[moved].mean()) if n_moved else 0.0
    inc_moved = float(increase[moved].mean()) if n_moved else 0.0
    return {
        "moved_items": n_moved,
        "moved_share": n_moved / len(raw),
        "moved_at_position": [int(c) for c in (codes != raw).sum(axis=0)],
        "mean_distortion_before": mean_before,
        "mean_distortion_after": float((before + increase).mean()),
        "mean_distortion_increase_moved": inc_moved,
        "mean_distortion_increase_all": float(increase.sum() / len(raw)),
        "relative_distortion_increase_moved": inc_moved / moved_before if moved_before else 0.0,
        "relative_distortion_increase_all": (
            float(increase.sum() / len(raw)) / mean_before if mean_before else 0.0
        ),
    }
