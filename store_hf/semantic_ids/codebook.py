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

This module holds the bookkeeping; the math is in :mod:`.pca_kmeans` (PCA, k-means, nearest
centroids), :mod:`.collisions` (making tuples unique), :mod:`.lookup` (id and tuple lookups),
:mod:`.statistics` (health numbers, plot) and :mod:`.persistence` (the saved folder).
"""

from __future__ import annotations

import copy
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from . import statistics as _stats
from .collisions import resolution_cost, resolve
from .keys import check_key_range, codes_to_keys, collision_summary
from .lookup import CatalogueIndex
from .pca_kmeans import (
    Engine,
    PcaMode,
    as_embeddings,
    fit_pca,
    import_faiss,
    kmeans_centroids,
    nearest,
    project,
)
from .persistence import CONFIG_NAME, FORMAT_VERSION, WEIGHTS_NAME, load_codebook, save_codebook

CollisionMode = Literal["resolve", "none"]


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
        for name, value, allowed in (
            ("pca", pca, ("shared", "per_position")),
            ("collisions", collisions, ("resolve", "none")),
            ("engine", engine, ("sklearn", "faiss")),
        ):
            if value not in allowed:
                raise ValueError(f"{name} must be {' or '.join(map(repr, allowed))}, got {value!r}")
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
        self._index = CatalogueIndex()

    def settings(self) -> dict[str, Any]:
        """Constructor arguments, as plain JSON types."""
        names = ("codebook_size", "pca_dim", "pca", "collisions", "engine", "seed", "n_init")
        return {name: getattr(self, name) for name in (*names, "max_iter")}

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

    # ------------------------------------------------------------------ fitting and new items

    def fit(self, embeddings: Any, item_ids: Sequence[str] | None = None) -> SemanticCodebook:
        """Fit PCA and per-position k-means on ``embeddings`` and encode every item.

        Args:
            embeddings: ``(num_items, v, hidden)`` float numpy array or torch tensor.
            item_ids: ``num_items`` unique ids (default ``"0" .. "num_items-1"``).
        Returns:
            ``self``, with ``codes`` ``(num_items, v)`` set.
        """
        start = time.perf_counter()
        x = as_embeddings(embeddings)
        n, v, hidden = x.shape
        k = self.codebook_size
        if n < k:
            raise ValueError(
                f"fit needs at least as many items as clusters: got {n} items for codebook_size={k}"
            )
        check_key_range(k, v)
        if self.collisions == "resolve" and k**v < n:
            raise ValueError(
                f"{n} items cannot get unique codes from codebook_size**v = {k}**{v} = {k**v} "
                "tuples; raise codebook_size or use collisions='none'"
            )
        ids = _normalise_ids(item_ids, n, start_at=0)
        _check_unique(ids)
        if self.engine == "faiss":
            import_faiss()  # fail before the PCA, not after it

        self.pca_mean, self.pca_components, self.pca_explained_variance = fit_pca(
            x, self.pca, self.pca_dim, self.seed
        )
        z = project(x, self.pca_mean, self.pca_components)
        self.num_positions, self.hidden_size = v, hidden
        self.centroids = np.stack(
            [
                kmeans_centroids(z[:, p], k, self.engine, self.seed + p, self.n_init, self.max_iter)
                for p in range(v)
            ]
        ).astype(np.float32)

        # Codes are recomputed with the stored float32 centroids (not taken from the engine's
        # labels) so that fit, assign and a reloaded codebook share one nearest-centroid rule.
        raw = nearest(z, self.centroids)
        before = collision_summary(raw, k)
        if self.collisions == "resolve":
            codes, moved = resolve(raw, z, self.centroids, np.empty(0, dtype=np.int64))
        else:
            codes, moved = raw.copy(), np.zeros(n, dtype=bool)
        self.codes, self.raw_codes, self.item_ids = codes, raw, ids
        self._assigned = {"items": 0, "moved_items": 0}
        self._index.clear()
        self._fit_stats = {
            "fit_items": n,
            "fit_seconds": time.perf_counter() - start,
            "collision_rate_before": before["rate"],
            "colliding_items_before": before["colliding_items"],
            "colliding_groups_before": before["groups"],
            "largest_group_before": before["largest_group"],
            "resolution": resolution_cost(z, self.centroids, raw, codes, moved),
        }
        return self

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
        x = as_embeddings(embeddings)
        n, v, hidden = x.shape
        if v != self.num_positions or hidden != self.hidden_size:
            raise ValueError(
                f"embeddings must have shape (num_items, {self.num_positions}, "
                f"{self.hidden_size}) like the fit, got {tuple(x.shape)}"
            )
        ids = _normalise_ids(item_ids, n, start_at=len(self))
        if len(set(ids)) != len(ids):
            _check_unique(ids)
        known = self._index.rows(self.item_ids, ids)
        if add and (known >= 0).any():
            dup = [ids[i] for i in np.flatnonzero(known >= 0)[:5]]
            raise ValueError(f"item ids already in the codebook: {dup}")

        z = project(x, self.pca_mean, self.pca_components)
        raw = nearest(z, self.centroids)
        if self.collisions == "resolve":
            keep_rows = np.ones(len(self), dtype=bool)
            keep_rows[known[known >= 0]] = False
            taken = np.unique(codes_to_keys(self.codes[keep_rows], self.codebook_size))
            codes, moved = resolve(raw, z, self.centroids, taken)
        else:
            codes, moved = raw.copy(), np.zeros(n, dtype=bool)
        if add:
            self.codes = np.concatenate([self.codes, codes])
            self.raw_codes = np.concatenate([self.raw_codes, raw])
            self.item_ids = self.item_ids + ids
            self._assigned["items"] += n
            self._assigned["moved_items"] += int(moved.sum())
            self._index.clear()
        return codes.copy()

    # ------------------------------------------------------------------ lookups

    def index_of(self, item_ids: Sequence[str]) -> np.ndarray:
        """Catalogue rows of ``item_ids``; KeyError naming the first unknown ids."""
        self._check_fitted()
        if isinstance(item_ids, str):
            raise TypeError("pass a list of item ids, e.g. ['42'], not a single string")
        item_ids = [str(i) for i in item_ids]
        rows = self._index.rows(self.item_ids, item_ids)
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
        return self._index.items(self.item_ids, self.codes, self.codebook_size, codes)

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
        return _stats.codebook_statistics(self)

    def plot_cluster_sizes(self, path: str | os.PathLike) -> Path:
        """Write a PNG of the sorted cluster sizes of every position (matplotlib, Agg)."""
        self._check_fitted()
        return _stats.plot_cluster_sizes(self.codes, self.codebook_size, path)

    # ------------------------------------------------------------------ persistence

    def save_pretrained(self, folder: str | os.PathLike) -> Path:
        """Write ``codebook.safetensors`` (arrays) and ``codebook.json`` (settings, ids, stats).

        Each file is written atomically, so a crash never leaves a half-written file; a content
        fingerprint in both files detects a pair from two different saves
        (:mod:`store_hf.semantic_ids.persistence`). The fit's wall time is left out (saved as
        ``null``): a codebook fitted from the same embeddings and seed gives byte-identical
        files (``statistics()`` of the fitted codebook keeps the time).
        """
        self._check_fitted()
        saved = copy.copy(self)
        saved._fit_stats = {**self._fit_stats, "fit_seconds": None}
        return save_codebook(saved, folder)

    @classmethod
    def from_pretrained(cls, folder: str | os.PathLike) -> SemanticCodebook:
        """Reload a codebook written by :meth:`save_pretrained` (bit-identical codes)."""
        return load_codebook(cls, folder)


def _normalise_ids(item_ids: Sequence[str] | None, n: int, start_at: int) -> list[str]:
    if item_ids is None:
        return [str(i) for i in range(start_at, start_at + n)]
    if isinstance(item_ids, str):
        raise TypeError("item_ids must be a list of strings, not a single string")
    ids = [str(i) for i in item_ids]
    if len(ids) != n:
        raise ValueError(f"got {len(ids)} item_ids for {n} embeddings")
    return ids


def _check_unique(ids: list[str]) -> None:
    uniq, counts = np.unique(np.asarray(ids, dtype=str), return_counts=True)
    if (counts > 1).any():
        raise ValueError(f"duplicate item ids: {uniq[counts > 1][:5].tolist()}")


__all__ = ["CONFIG_NAME", "FORMAT_VERSION", "WEIGHTS_NAME", "SemanticCodebook"]
