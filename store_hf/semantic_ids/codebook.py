"""The simple clusterer of STORE (paper section 3.2): dense tokens -> discrete semantic IDs.

Every item has ``v`` dense-token outputs (``hidden`` floats each). They are reduced with PCA
to ``d`` dimensions (paper: 32) and clustered with k-means (paper: ``k = 256``) separately for
each of the ``v`` positions, so item ``j`` gets the code tuple ``(c_1j, ..., c_vj)``
(the paper's matrix ``C`` of shape ``(v, n)``; stored here transposed, ``(n, v)``, one row per
item).

Two choices the paper leaves open, made here:

* **PCA** (``pca="shared"``, default): one PCA fitted on all ``n * v`` vectors, as the paper
  writes it (one reduction of the matrix ``E``). The dense tokens come out of one model and one
  hidden space, so one basis serves every position and keeps their coordinates comparable
  (on MiniLM attribute embeddings both modes give the same utilisation and collision rate
  within 0.3 points, ``benchmarks/codebook.py``). ``pca="per_position"`` fits one PCA per
  position, which keeps more of a position's own variance when positions live in different
  subspaces (e.g. one attribute per position).
* **Collisions** (``collisions="resolve"``, default): independent k-means per position can give
  two items the same full tuple, and a generative recommender cannot tell such items apart. In
  every colliding group the item closest to its last-position centroid keeps the tuple; every
  other item moves, at the LAST position, to its next-nearest centroid (squared distance in PCA
  space) whose tuple is not used yet. Only when all ``k`` tuples with that prefix are used does
  the search walk back one position (next-nearest centroid there, then again the nearest free
  centroid at the last position), and so on. The last position is where ties are broken because
  earlier positions fix the coarse prefix that beam search descends first, so they are
  left untouched. The cost is measured in :meth:`SemanticCodebook.statistics` (items moved,
  distortion increase). ``collisions="none"`` keeps the raw k-means codes (ablation).

Codes of existing items never change after :meth:`SemanticCodebook.fit`: new items
(:meth:`SemanticCodebook.assign`) go to the nearest centroids of the fitted PCA and k-means and
move, by the same rule, away from tuples already in the catalogue.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

FORMAT_VERSION = 1
WEIGHTS_NAME = "codebook.safetensors"
CONFIG_NAME = "codebook.json"

PcaMode = Literal["shared", "per_position"]
CollisionMode = Literal["resolve", "none"]
Engine = Literal["sklearn", "faiss"]

# Rows projected at a time: bounds the float64 copy of the inputs to ~chunk * hidden * 8 bytes.
_CHUNK = 32768
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
    _check_key_range(codebook_size, v)
    weights = codebook_size ** np.arange(v - 1, -1, -1, dtype=np.int64)
    return codes @ weights


def keys_to_codes(keys: np.ndarray, codebook_size: int, num_positions: int) -> np.ndarray:
    """Inverse of :func:`codes_to_keys`: ``(n,)`` int64 keys -> ``(n, v)`` int64 codes."""
    keys = np.asarray(keys, dtype=np.int64)
    weights = codebook_size ** np.arange(num_positions - 1, -1, -1, dtype=np.int64)
    return (keys[:, None] // weights[None, :]) % codebook_size


def _check_key_range(codebook_size: int, num_positions: int) -> None:
    if codebook_size**num_positions > _MAX_KEY:
        raise ValueError(
            f"codebook_size**num_positions = {codebook_size}**{num_positions} does not fit an "
            "int64 code key; use fewer positions or a smaller codebook"
        )


def _in_sorted(values: np.ndarray, sorted_array: np.ndarray) -> np.ndarray:
    """Boolean mask: which ``values`` occur in the ascending ``sorted_array``."""
    if len(sorted_array) == 0:
        return np.zeros(len(values), dtype=bool)
    idx = np.searchsorted(sorted_array, values)
    idx[idx == len(sorted_array)] = 0
    return sorted_array[idx] == values


def _collision_summary(codes: np.ndarray, codebook_size: int) -> dict[str, Any]:
    """Share of items whose tuple is shared with another item, and the largest group."""
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


def _as_embeddings(embeddings: Any, what: str = "embeddings") -> np.ndarray:
    """Validate ``(num_items, v, hidden)`` input (numpy or torch) and return float32 numpy."""
    if hasattr(embeddings, "detach"):  # torch tensor; .float() also covers bfloat16
        embeddings = embeddings.detach().cpu().float().numpy()
    array = np.asarray(embeddings)
    if array.ndim != 3:
        raise ValueError(
            f"{what} must have shape (num_items, v, hidden), got {array.ndim} dimension(s) "
            f"with shape {tuple(array.shape)}"
        )
    if min(array.shape) == 0:
        raise ValueError(
            f"{what} must have shape (num_items, v, hidden) with no empty axis, "
            f"got {tuple(array.shape)}"
        )
    if not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)):
        raise ValueError(f"{what} must be numeric, got dtype {array.dtype}")
    array = np.ascontiguousarray(array, dtype=np.float32)
    bad = ~np.isfinite(array).all(axis=(1, 2))
    if bad.any():
        raise ValueError(
            f"{what} contain NaN or inf in {int(bad.sum())} item(s) "
            f"(first at item index {int(np.flatnonzero(bad)[0])})"
        )
    return array


def _squared_distances(points: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """``(n, d)`` x ``(k, d)`` -> ``(n, k)`` squared Euclidean distances, float64."""
    points = np.asarray(points, dtype=np.float64)
    centroids = np.asarray(centroids, dtype=np.float64)
    d = (
        np.einsum("nd,nd->n", points, points)[:, None]
        - 2.0 * points @ centroids.T
        + np.einsum("kd,kd->k", centroids, centroids)[None, :]
    )
    # The expansion can dip below zero by rounding; distances are never negative.
    return np.maximum(d, 0.0)


class SemanticCodebook:
    """PCA + per-position k-means codebook mapping dense tokens to semantic ID tuples.

    Args:
        codebook_size: ``k``, clusters per position (paper: 256). At least 2.
        pca_dim: ``d``, PCA components (paper: 32); capped at ``hidden`` and at the number of
            vectors the PCA is fitted on.
        pca: ``"shared"`` (default): one PCA on all ``num_items * v`` vectors, as in the
            paper; ``"per_position"``: one PCA per position.
        collisions: ``"resolve"`` (default) makes every item's tuple unique (see the module
            docstring); ``"none"`` keeps raw k-means codes.
        engine: ``"sklearn"`` (``sklearn.cluster.KMeans``) or ``"faiss"`` (``faiss.Kmeans``,
            needs ``pip install faiss-cpu``). Only ``fit`` uses the engine; assignment of new
            items is plain numpy either way.
        seed: random state of PCA (randomized solver) and k-means; equal seeds give equal codes.
        n_init / max_iter: k-means restarts and iterations per restart.

    Attributes (after :meth:`fit`):
        codes: ``(num_items, v)`` int64, the current codes of every catalogue item.
        raw_codes: ``(num_items, v)`` int64, nearest-centroid codes before collision resolution.
        item_ids: ``list[str]`` in row order of ``codes``.
        num_positions: ``v``.
        hidden_size: ``hidden`` of the fitted embeddings.
        pca_mean: ``(P, hidden)`` and ``pca_components``: ``(P, d, hidden)``, ``P = 1`` (shared)
            or ``v`` (per position); a vector ``x`` at position ``p`` is projected to
            ``(x - pca_mean[q]) @ pca_components[q].T`` with ``q = 0`` or ``p``.
        centroids: ``(v, k, d)`` float32 k-means centroids in PCA space.
    """

    def __init__(
        self,
        codebook_size: int = 256,
        pca_dim: int = 32,
        pca: PcaMode = "shared",
        collisions: CollisionMode = "resolve",
        engine: Engine = "sklearn",
        seed: int = 0,
        n_init: int = 1,
        max_iter: int = 300,
    ) -> None:
        if int(codebook_size) < 2:
            raise ValueError(f"codebook_size must be >= 2, got {codebook_size}")
        if int(pca_dim) < 1:
            raise ValueError(f"pca_dim must be >= 1, got {pca_dim}")
        if pca not in ("shared", "per_position"):
            raise ValueError(f"pca must be 'shared' or 'per_position', got {pca!r}")
        if collisions not in ("resolve", "none"):
            raise ValueError(f"collisions must be 'resolve' or 'none', got {collisions!r}")
        if engine not in ("sklearn", "faiss"):
            raise ValueError(f"engine must be 'sklearn' or 'faiss', got {engine!r}")
        if int(n_init) < 1 or int(max_iter) < 1:
            raise ValueError(f"n_init and max_iter must be >= 1, got {n_init} and {max_iter}")
        self.codebook_size = int(codebook_size)
        self.pca_dim = int(pca_dim)
        self.pca = pca
        self.collisions = collisions
        self.engine = engine
        self.seed = int(seed)
        self.n_init = int(n_init)
        self.max_iter = int(max_iter)

        self.codes: np.ndarray | None = None
        self.raw_codes: np.ndarray | None = None
        self.item_ids: list[str] = []
        self.num_positions: int | None = None
        self.hidden_size: int | None = None
        self.pca_mean: np.ndarray | None = None
        self.pca_components: np.ndarray | None = None
        self.pca_explained_variance: list[float] = []
        self.centroids: np.ndarray | None = None
        self._fit_stats: dict[str, Any] = {}
        self._assigned = {"items": 0, "moved_items": 0}
        self._key_index: tuple[np.ndarray, np.ndarray] | None = None
        self._id_index: tuple[np.ndarray, np.ndarray] | None = None

    # ------------------------------------------------------------------ settings / repr

    def settings(self) -> dict[str, Any]:
        """Constructor arguments, as plain JSON types."""
        return {
            "codebook_size": self.codebook_size,
            "pca_dim": self.pca_dim,
            "pca": self.pca,
            "collisions": self.collisions,
            "engine": self.engine,
            "seed": self.seed,
            "n_init": self.n_init,
            "max_iter": self.max_iter,
        }

    @property
    def is_fitted(self) -> bool:
        return self.codes is not None

    @property
    def dim(self) -> int:
        """Effective PCA dimension ``d`` (``pca_dim`` capped by the data)."""
        self._check_fitted()
        return int(self.centroids.shape[2])

    def __len__(self) -> int:
        return 0 if self.codes is None else len(self.codes)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.settings().items())
        state = (
            f"{len(self)} items x {self.num_positions} positions" if self.is_fitted else "unfitted"
        )
        return f"SemanticCodebook({args}) [{state}]"

    def _check_fitted(self) -> None:
        if self.codes is None:
            raise RuntimeError("SemanticCodebook is not fitted: call fit() or from_pretrained()")

    # ------------------------------------------------------------------ fitting

    def fit(self, embeddings: Any, item_ids: Sequence[str] | None = None) -> SemanticCodebook:
        """Fit PCA and per-position k-means on ``embeddings`` and encode every item.

        Args:
            embeddings: ``(num_items, v, hidden)`` float numpy array or torch tensor.
            item_ids: ``num_items`` unique ids (default ``"0" .. "num_items-1"``).
        Returns:
            ``self``, with ``codes`` ``(num_items, v)`` set.
        """
        start = time.perf_counter()
        x = _as_embeddings(embeddings)
        n, v, hidden = x.shape
        k = self.codebook_size
        if n < k:
            raise ValueError(
                f"fit needs at least as many items as clusters: got {n} items for codebook_size={k}"
            )
        _check_key_range(k, v)
        if self.collisions == "resolve" and k**v < n:
            raise ValueError(
                f"{n} items cannot get unique codes from codebook_size**v = {k}**{v} = {k**v} "
                "tuples; raise codebook_size or use collisions='none'"
            )
        ids = self._normalise_ids(item_ids, n, start_at=0)
        self._check_unique(ids)
        if self.engine == "faiss":
            _import_faiss()  # fail before the PCA, not after it

        self._fit_pca(x)
        z = self._project(x)
        self.num_positions, self.hidden_size = v, hidden
        self.centroids = np.stack(
            [self._kmeans(z[:, p], seed=self.seed + p) for p in range(v)]
        ).astype(np.float32)

        # Codes are recomputed with the stored float32 centroids (not taken from the engine's
        # labels) so that fit, assign and a reloaded codebook share one nearest-centroid rule.
        raw = self._nearest(z)
        before = _collision_summary(raw, k)
        if self.collisions == "resolve":
            codes, moved = self._resolve(raw, z, np.empty(0, dtype=np.int64))
        else:
            codes, moved = raw.copy(), np.zeros(n, dtype=bool)
        resolution = self._resolution_cost(z, raw, codes, moved)
        self.codes, self.raw_codes, self.item_ids = codes, raw, ids
        self._assigned = {"items": 0, "moved_items": 0}
        self._invalidate()
        self._fit_stats = {
            "fit_items": n,
            "fit_seconds": time.perf_counter() - start,
            "collision_rate_before": before["rate"],
            "colliding_items_before": before["colliding_items"],
            "colliding_groups_before": before["groups"],
            "largest_group_before": before["largest_group"],
            "resolution": resolution,
        }
        return self

    def _fit_pca(self, x: np.ndarray) -> None:
        from sklearn.decomposition import PCA

        n, v, hidden = x.shape
        groups = [x.reshape(n * v, hidden)] if self.pca == "shared" else [x[:, p] for p in range(v)]
        d = min(self.pca_dim, hidden, min(len(g) for g in groups))
        means, components, explained = [], [], []
        for g in groups:
            model = PCA(n_components=d, random_state=self.seed).fit(g)
            means.append(model.mean_.astype(np.float32))
            components.append(model.components_.astype(np.float32))
            explained.append(float(model.explained_variance_ratio_.sum()))
        self.pca_mean = np.stack(means)
        self.pca_components = np.stack(components)
        self.pca_explained_variance = explained

    def _project(self, x: np.ndarray) -> np.ndarray:
        """``(n, v, hidden)`` -> ``(n, v, d)`` float64 PCA coordinates (fixed stored params)."""
        n, v, _ = x.shape
        d = self.pca_components.shape[1]
        z = np.empty((n, v, d), dtype=np.float64)
        for p in range(v):
            q = 0 if len(self.pca_mean) == 1 else p
            mean = self.pca_mean[q].astype(np.float64)
            comps_t = self.pca_components[q].astype(np.float64).T
            for s in range(0, n, _CHUNK):
                z[s : s + _CHUNK, p] = (x[s : s + _CHUNK, p].astype(np.float64) - mean) @ comps_t
        return z

    def _kmeans(self, points: np.ndarray, seed: int) -> np.ndarray:
        """``(n, d)`` -> ``(k, d)`` centroids with the chosen engine."""
        k = self.codebook_size
        if self.engine == "faiss":
            faiss = _import_faiss()
            data = np.ascontiguousarray(points, dtype=np.float32)
            km = faiss.Kmeans(
                data.shape[1],
                k,
                niter=self.max_iter,
                nredo=self.n_init,
                seed=seed,
                verbose=False,
                # faiss subsamples above 256 points per centroid and warns below 39; use all
                # points, like sklearn, and keep the output quiet.
                max_points_per_centroid=max(256, len(data)),
                min_points_per_centroid=1,
            )
            km.train(data)
            return np.asarray(km.centroids, dtype=np.float64).reshape(k, -1)
        from sklearn.cluster import KMeans

        km = KMeans(n_clusters=k, n_init=self.n_init, max_iter=self.max_iter, random_state=seed)
        return km.fit(points).cluster_centers_

    def _nearest(self, z: np.ndarray) -> np.ndarray:
        """``(n, v, d)`` -> ``(n, v)`` int64 index of the nearest centroid per position."""
        n, v, _ = z.shape
        codes = np.empty((n, v), dtype=np.int64)
        for p in range(v):
            for s in range(0, n, _CHUNK):
                codes[s : s + _CHUNK, p] = _squared_distances(
                    z[s : s + _CHUNK, p], self.centroids[p]
                ).argmin(axis=1)
        return codes

    def _distortion(self, z: np.ndarray, codes: np.ndarray) -> np.ndarray:
        """``(n,)`` squared distance to the assigned centroids, summed over positions."""
        total = np.zeros(len(z), dtype=np.float64)
        for p in range(z.shape[1]):
            diff = z[:, p] - self.centroids[p][codes[:, p]].astype(np.float64)
            total += np.einsum("nd,nd->n", diff, diff)
        return total

    # ------------------------------------------------------------------ collisions

    def _resolve(
        self, raw: np.ndarray, z: np.ndarray, taken: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Make the tuples of ``raw`` unique among themselves and against ``taken``.

        Args:
            raw: ``(n, v)`` nearest-centroid codes of the items to place.
            z: ``(n, v, d)`` their PCA coordinates.
            taken: sorted int64 keys already used by other items (never moved).
        Returns:
            ``(codes (n, v), moved (n,) bool)``.
        """
        k, v = self.codebook_size, raw.shape[1]
        n = len(raw)
        keys = codes_to_keys(raw, k)
        diff = z[:, -1] - self.centroids[-1][raw[:, -1]].astype(np.float64)
        last_dist = np.einsum("nd,nd->n", diff, diff)
        # Keeper of each group: closest to its last-position centroid, ties to the lower row.
        order = np.lexsort((np.arange(n), last_dist, keys))
        first = np.ones(n, dtype=bool)
        first[1:] = keys[order][1:] != keys[order][:-1]
        keep = np.zeros(n, dtype=bool)
        keep[order[first]] = True
        keep &= ~_in_sorted(keys, taken)
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
        weights = [k ** (v - 1 - p) for p in range(v)]
        last_order = np.argsort(
            _squared_distances(z[movers, -1], self.centroids[-1]), axis=1, kind="stable"
        )
        # A loop over colliding items only (a minority); each step is vectorised over k.
        for i, item in enumerate(movers):
            row = raw[item]
            base = int(row @ np.asarray(weights, dtype=np.int64)) - int(row[-1])
            found = _first_free(base + last_order[i], fixed, placed)
            if found is not None:
                codes[item, -1] = last_order[i][found]
            else:
                found_row = self._walk_back(row, z[item], base, last_order[i], fixed, placed)
                if found_row is None:
                    raise RuntimeError(
                        f"no free code tuple near item row {int(item)}; the codebook is too "
                        "crowded (raise codebook_size)"
                    )
                codes[item] = found_row
            placed.add(int(codes_to_keys(codes[item : item + 1], k)[0]))
        return codes, ~keep

    def _walk_back(
        self,
        row: np.ndarray,
        z_item: np.ndarray,
        base: int,
        last_order: np.ndarray,
        fixed: np.ndarray,
        placed: set[int],
    ) -> np.ndarray | None:
        """All ``k`` last-position tuples of this prefix are used: vary earlier positions."""
        k, v = self.codebook_size, len(row)
        for p in range(v - 2, -1, -1):
            weight = k ** (v - 1 - p)
            order = np.argsort(
                _squared_distances(z_item[p][None], self.centroids[p])[0], kind="stable"
            )
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

    def _resolution_cost(
        self, z: np.ndarray, raw: np.ndarray, codes: np.ndarray, moved: np.ndarray
    ) -> dict[str, Any]:
        before = self._distortion(z, raw)
        increase = self._distortion(z, codes) - before
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

    # ------------------------------------------------------------------ new items

    def assign(
        self, embeddings: Any, item_ids: Sequence[str] | None = None, add: bool = True
    ) -> np.ndarray:
        """Codes for items outside the fit (cold start), with the fitted PCA and centroids.

        Each item goes to the nearest centroid per position. With ``collisions="resolve"``,
        tuples already in the catalogue are taken: a new item whose tuple is taken, or that
        shares it with a closer new item, moves as in :meth:`fit`. Existing codes never change.

        Args:
            embeddings: ``(n_new, v, hidden)`` with the ``v`` and ``hidden`` of the fit.
            item_ids: ids of the new items (default: continue ``"N"``, ``"N+1"``, ...).
            add: append the items to the catalogue (their ids must be new). With ``add=False``
                nothing is stored; ids already in the catalogue are then treated as
                re-encodings of those items, whose own current tuple does not count as taken.
        Returns:
            ``(n_new, v)`` int64 codes.
        """
        self._check_fitted()
        x = _as_embeddings(embeddings)
        n, v, hidden = x.shape
        if v != self.num_positions or hidden != self.hidden_size:
            raise ValueError(
                f"embeddings must have shape (num_items, {self.num_positions}, "
                f"{self.hidden_size}) like the fit, got {tuple(x.shape)}"
            )
        ids = self._normalise_ids(item_ids, n, start_at=len(self))
        if len(set(ids)) != len(ids):
            self._check_unique(ids)
        known = self._lookup_rows(ids)
        if add and (known >= 0).any():
            dup = [ids[i] for i in np.flatnonzero(known >= 0)[:5]]
            raise ValueError(f"item ids already in the codebook: {dup}")

        z = self._project(x)
        raw = self._nearest(z)
        if self.collisions == "resolve":
            keep_rows = np.ones(len(self), dtype=bool)
            keep_rows[known[known >= 0]] = False
            taken = np.unique(codes_to_keys(self.codes[keep_rows], self.codebook_size))
            codes, moved = self._resolve(raw, z, taken)
        else:
            codes, moved = raw.copy(), np.zeros(n, dtype=bool)
        if add:
            self.codes = np.concatenate([self.codes, codes])
            self.raw_codes = np.concatenate([self.raw_codes, raw])
            self.item_ids = self.item_ids + ids
            self._assigned["items"] += n
            self._assigned["moved_items"] += int(moved.sum())
            self._invalidate()
        return codes.copy()

    # ------------------------------------------------------------------ lookups

    def _invalidate(self) -> None:
        self._key_index = None
        self._id_index = None

    def _lookup_rows(self, item_ids: Sequence[str]) -> np.ndarray:
        """Row of each id in the catalogue, ``-1`` where unknown (vectorised binary search)."""
        if self._id_index is None:
            ids = np.asarray(self.item_ids, dtype=str)
            order = np.argsort(ids, kind="stable")
            self._id_index = (ids[order], order)
        sorted_ids, order = self._id_index
        query = np.asarray(list(item_ids), dtype=str)
        if len(query) == 0:
            return np.empty(0, dtype=np.int64)
        pos = np.searchsorted(sorted_ids, query)
        pos[pos == len(sorted_ids)] = 0
        found = sorted_ids[pos] == query
        return np.where(found, order[pos], -1).astype(np.int64)

    def index_of(self, item_ids: Sequence[str]) -> np.ndarray:
        """Catalogue rows of ``item_ids``; KeyError naming the first unknown ids."""
        self._check_fitted()
        if isinstance(item_ids, str):
            raise TypeError("pass a list of item ids, e.g. ['42'], not a single string")
        item_ids = [str(i) for i in item_ids]
        rows = self._lookup_rows(item_ids)
        if (rows < 0).any():
            unknown = [item_ids[i] for i in np.flatnonzero(rows < 0)[:5]]
            raise KeyError(f"{int((rows < 0).sum())} unknown item id(s), first: {unknown}")
        return rows

    def item_to_codes(self, item_ids: Sequence[str]) -> np.ndarray:
        """``(n, v)`` int64 codes of ``item_ids``; KeyError naming the first unknown ids."""
        return self.codes[self.index_of(item_ids)].copy()

    def codes_to_items(self, codes: np.ndarray) -> list[list[str]]:
        """All item ids with each code tuple (catalogue order); ``[]`` where none.

        Args:
            codes: ``(n, v)`` integer codes in ``[0, codebook_size)``.
        """
        self._check_fitted()
        codes = np.asarray(codes)
        if codes.ndim != 2 or codes.shape[1] != self.num_positions:
            raise ValueError(
                f"codes must have shape (n, {self.num_positions}), got {tuple(codes.shape)}"
            )
        if not np.issubdtype(codes.dtype, np.integer):
            raise ValueError(f"codes must be integers, got dtype {codes.dtype}")
        if codes.size and (codes.min() < 0 or codes.max() >= self.codebook_size):
            raise ValueError(f"codes must lie in [0, {self.codebook_size}), got values outside")
        if self._key_index is None:
            keys = codes_to_keys(self.codes, self.codebook_size)
            order = np.argsort(keys, kind="stable")
            self._key_index = (keys[order], order)
        sorted_keys, order = self._key_index
        query = codes_to_keys(codes, self.codebook_size)
        left = np.searchsorted(sorted_keys, query, side="left")
        right = np.searchsorted(sorted_keys, query, side="right")
        ids = self.item_ids
        return [[ids[j] for j in order[a:b]] for a, b in zip(left, right)]

    def code_keys(self) -> np.ndarray:
        """``(num_items,)`` int64 key of every item's tuple (see :func:`codes_to_keys`)."""
        self._check_fitted()
        return codes_to_keys(self.codes, self.codebook_size)

    # ------------------------------------------------------------------ statistics / plot

    def statistics(self) -> dict[str, Any]:
        """Codebook health as plain JSON types.

        Per position (on the current catalogue): utilisation (used clusters / k), cluster-size
        min/max/mean/std over all ``k`` clusters (empty ones count as 0), coefficient of
        variation (std / mean) and normalised entropy (entropy / log k; 1 = perfectly even).
        Collisions: ``*_before`` from the fit's raw codes, ``*_after`` on the current codes.
        ``resolution``: cost of making the fit's tuples unique (squared PCA-space distance to
        the assigned centroids, summed over positions). ``assigned``: items added by
        :meth:`assign` and how many of them were moved.
        """
        self._check_fitted()
        k, n = self.codebook_size, len(self)
        positions = []
        for p in range(self.num_positions):
            sizes = np.bincount(self.codes[:, p], minlength=k).astype(np.float64)
            prob = sizes[sizes > 0] / n
            mean, std = float(sizes.mean()), float(sizes.std())
            positions.append(
                {
                    "position": p,
                    "used_clusters": int((sizes > 0).sum()),
                    "utilisation": float((sizes > 0).sum() / k),
                    "size_min": int(sizes.min()),
                    "size_max": int(sizes.max()),
                    "size_mean": mean,
                    "size_std": std,
                    "size_cv": std / mean if mean else 0.0,
                    "normalised_entropy": float(-(prob * np.log(prob)).sum() / np.log(k)),
                }
            )
        after = _collision_summary(self.codes, k)
        fit = self._fit_stats
        return {
            **self.settings(),
            "num_items": n,
            "num_positions": int(self.num_positions),
            "hidden_size": int(self.hidden_size),
            "dim": self.dim,
            "pca_explained_variance": list(self.pca_explained_variance),
            "fit_items": fit["fit_items"],
            "fit_seconds": fit["fit_seconds"],
            "positions": positions,
            "collision_rate_before": fit["collision_rate_before"],
            "colliding_items_before": fit["colliding_items_before"],
            "colliding_groups_before": fit["colliding_groups_before"],
            "largest_group_before": fit["largest_group_before"],
            "collision_rate_after": after["rate"],
            "colliding_items_after": after["colliding_items"],
            "largest_group_after": after["largest_group"],
            "resolution": dict(fit["resolution"]),
            "assigned": dict(self._assigned),
            "memory": embedding_memory(n, self.hidden_size, k, self.num_positions),
        }

    def plot_cluster_sizes(self, path: str | os.PathLike) -> Path:
        """Write a PNG of the sorted cluster sizes of every position (matplotlib, Agg)."""
        self._check_fitted()
        try:
            from matplotlib.backends.backend_agg import FigureCanvasAgg
            from matplotlib.figure import Figure
        except ImportError as e:
            raise ImportError("plot_cluster_sizes needs matplotlib: pip install matplotlib") from e
        k = self.codebook_size
        # A bare Figure on the Agg canvas: no pyplot, so no global backend switch for the caller.
        fig = Figure(figsize=(7, 4), dpi=100)
        FigureCanvasAgg(fig)
        ax = fig.add_subplot(1, 1, 1)
        ranks = np.arange(1, k + 1)
        for p in range(self.num_positions):
            sizes = np.sort(np.bincount(self.codes[:, p], minlength=k))[::-1]
            ax.plot(ranks, sizes, label=f"position {p}", drawstyle="steps-mid")
        ax.axhline(len(self) / k, color="gray", linestyle="--", label="uniform")
        ax.set_xlabel("cluster rank")
        ax.set_ylabel("items")
        ax.set_title(f"Cluster sizes (k={k}, {len(self)} items)")
        ax.legend()
        fig.tight_layout()
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, format="png")
        return path

    # ------------------------------------------------------------------ persistence

    def save_pretrained(self, folder: str | os.PathLike) -> Path:
        """Write ``codebook.safetensors`` (arrays) and ``codebook.json`` (settings, ids, stats).

        Each file is written to a temporary file in ``folder`` and moved into place with
        ``os.replace``, so a crash never leaves a half-written file; a shared random
        fingerprint in both files detects a pair from two different saves.
        """
        from safetensors.numpy import save_file

        self._check_fitted()
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        fingerprint = uuid.uuid4().hex
        tensors = {
            "pca_mean": np.ascontiguousarray(self.pca_mean),
            "pca_components": np.ascontiguousarray(self.pca_components),
            "centroids": np.ascontiguousarray(self.centroids),
            "codes": np.ascontiguousarray(self.codes, dtype=np.int64),
            "raw_codes": np.ascontiguousarray(self.raw_codes, dtype=np.int64),
        }
        meta = {
            "format_version": FORMAT_VERSION,
            "fingerprint": fingerprint,
            "settings": self.settings(),
            "num_positions": int(self.num_positions),
            "hidden_size": int(self.hidden_size),
            "pca_explained_variance": list(self.pca_explained_variance),
            "fit_statistics": self._fit_stats,
            "assigned": self._assigned,
            "item_ids": list(self.item_ids),
            "statistics": self.statistics(),
        }
        _atomic_write(
            folder / WEIGHTS_NAME,
            lambda tmp: save_file(
                tensors,
                tmp,
                metadata={"format_version": str(FORMAT_VERSION), "fingerprint": fingerprint},
            ),
        )
        _atomic_write(
            folder / CONFIG_NAME,
            lambda tmp: Path(tmp).write_text(json.dumps(meta, indent=1), encoding="utf-8"),
        )
        return folder

    @classmethod
    def from_pretrained(cls, folder: str | os.PathLike) -> SemanticCodebook:
        """Reload a codebook written by :meth:`save_pretrained` (bit-identical codes)."""
        from safetensors import safe_open

        folder = Path(folder)
        weights_path, config_path = folder / WEIGHTS_NAME, folder / CONFIG_NAME
        for path in (config_path, weights_path):
            if not path.is_file():
                raise FileNotFoundError(f"codebook file missing: {path}")
        try:
            meta = json.loads(config_path.read_text(encoding="utf-8"))
            settings = meta["settings"]
            version = int(meta["format_version"])
        except (ValueError, KeyError, TypeError) as e:
            raise ValueError(f"corrupt codebook file {config_path}: {e!r}") from e
        if version > FORMAT_VERSION:
            raise ValueError(
                f"{config_path} has format_version {version}; this store_hf reads up to "
                f"{FORMAT_VERSION}: upgrade store_hf"
            )
        try:
            with safe_open(str(weights_path), framework="np") as f:
                tensors = {name: f.get_tensor(name) for name in f.keys()}  # noqa: SIM118
                file_meta = f.metadata() or {}
        except Exception as e:  # safetensors raises its own error types for bad headers
            raise ValueError(f"corrupt codebook file {weights_path}: {e!r}") from e
        names = ("pca_mean", "pca_components", "centroids", "codes", "raw_codes")
        missing = [name for name in names if name not in tensors]
        if missing:
            raise ValueError(f"corrupt codebook file {weights_path}: missing tensors {missing}")
        if file_meta.get("fingerprint") != meta.get("fingerprint"):
            raise ValueError(
                f"{config_path} and {weights_path} come from different saves (fingerprints "
                "differ); save the codebook again"
            )
        try:
            book = cls(**settings)
            book.num_positions = int(meta["num_positions"])
            book.hidden_size = int(meta["hidden_size"])
            book.pca_explained_variance = [float(x) for x in meta["pca_explained_variance"]]
            book._fit_stats = dict(meta["fit_statistics"])
            book._assigned = {k: int(v) for k, v in meta["assigned"].items()}
            item_ids = [str(i) for i in meta["item_ids"]]
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"corrupt codebook file {config_path}: {e!r}") from e
        book.pca_mean = tensors["pca_mean"]
        book.pca_components = tensors["pca_components"]
        book.centroids = tensors["centroids"]
        book.codes = tensors["codes"].astype(np.int64, copy=False)
        book.raw_codes = tensors["raw_codes"].astype(np.int64, copy=False)
        book.item_ids = item_ids
        v, k = book.num_positions, book.codebook_size
        expected = {
            "codes": (len(item_ids), v),
            "raw_codes": (len(item_ids), v),
            "centroids": (v, k, book.pca_components.shape[1]),
        }
        for name, shape in expected.items():
            if tensors[name].shape != shape:
                raise ValueError(
                    f"corrupt codebook file {weights_path}: {name} has shape "
                    f"{tuple(tensors[name].shape)}, expected {shape}"
                )
        return book

    # ------------------------------------------------------------------ helpers

    @staticmethod
    def _normalise_ids(item_ids: Sequence[str] | None, n: int, start_at: int) -> list[str]:
        if item_ids is None:
            return [str(i) for i in range(start_at, start_at + n)]
        if isinstance(item_ids, str):
            raise TypeError("item_ids must be a list of strings, not a single string")
        ids = [str(i) for i in item_ids]
        if len(ids) != n:
            raise ValueError(f"got {len(ids)} item_ids for {n} embeddings")
        return ids

    @staticmethod
    def _check_unique(ids: list[str]) -> None:
        uniq, counts = np.unique(np.asarray(ids, dtype=str), return_counts=True)
        if (counts > 1).any():
            raise ValueError(f"duplicate item ids: {uniq[counts > 1][:5].tolist()}")


def _first_free(candidates: np.ndarray, fixed: np.ndarray, placed: set[int]) -> int | None:
    """Index of the first candidate key used neither in ``fixed`` (sorted) nor in ``placed``."""
    free = np.flatnonzero(~_in_sorted(candidates, fixed))
    for j in free:  # ``placed`` holds only earlier movers, so this loop rarely runs twice
        if int(candidates[j]) not in placed:
            return int(j)
    return None


def _import_faiss():
    try:
        import faiss
    except ImportError as e:
        raise ImportError("engine='faiss' needs faiss: pip install faiss-cpu") from e
    return faiss


def _atomic_write(path: Path, write) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


__all__ = [
    "CONFIG_NAME",
    "FORMAT_VERSION",
    "SemanticCodebook",
    "WEIGHTS_NAME",
    "codes_to_keys",
    "embedding_memory",
    "keys_to_codes",
]
