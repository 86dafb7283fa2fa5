"""The math of STORE's simple clusterer: input checks, PCA, k-means and nearest centroids.

Plain functions over arrays, so :class:`~store_hf.semantic_ids.SemanticCodebook` keeps only the
bookkeeping. Shapes: ``n`` items, ``v`` positions, ``hidden`` input floats, ``d`` PCA
dimensions, ``k`` clusters per position.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np

PcaMode = Literal["shared", "per_position"]
Engine = Literal["sklearn", "faiss"]

# Rows projected at a time: bounds the float64 copy of the inputs to ~chunk * hidden * 8 bytes.
_CHUNK = 32768


def as_embeddings(embeddings: Any, what: str = "embeddings") -> np.ndarray:
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


def squared_distances(points: np.ndarray, centroids: np.ndarray) -> np.ndarray:
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


def fit_pca(
    x: np.ndarray, mode: PcaMode, pca_dim: int, seed: int
) -> tuple[np.ndarray, np.ndarray, list[float]]:
    """PCA of ``x`` ``(n, v, hidden)``: one on all ``n * v`` vectors (``"shared"``) or one per
    position (``"per_position"``); ``d = min(pca_dim, hidden, vectors per PCA)``.

    Returns:
        ``mean`` ``(P, hidden)`` float32, ``components`` ``(P, d, hidden)`` float32 and the
        explained variance ratio of each of the ``P`` PCAs (``P = 1`` or ``v``).
    """
    from sklearn.decomposition import PCA

    n, v, hidden = x.shape
    groups = [x.reshape(n * v, hidden)] if mode == "shared" else [x[:, p] for p in range(v)]
    d = min(pca_dim, hidden, min(len(g) for g in groups))
    means, components, explained = [], [], []
    for g in groups:
        model = PCA(n_components=d, random_state=seed).fit(g)
        means.append(model.mean_.astype(np.float32))
        components.append(model.components_.astype(np.float32))
        explained.append(float(model.explained_variance_ratio_.sum()))
    return np.stack(means), np.stack(components), explained


def project(x: np.ndarray, mean: np.ndarray, components: np.ndarray) -> np.ndarray:
    """``(n, v, hidden)`` -> ``(n, v, d)`` float64 PCA coordinates with the stored parameters
    (``mean`` ``(P, hidden)``, ``components`` ``(P, d, hidden)``, ``P = 1`` or ``v``)."""
    n, v, _ = x.shape
    d = components.shape[1]
    z = np.empty((n, v, d), dtype=np.float64)
    for p in range(v):
        q = 0 if len(mean) == 1 else p
        centre = mean[q].astype(np.float64)
        comps_t = components[q].astype(np.float64).T
        for s in range(0, n, _CHUNK):
            z[s : s + _CHUNK, p] = (x[s : s + _CHUNK, p].astype(np.float64) - centre) @ comps_t
    return z


def kmeans_centroids(
    points: np.ndarray, k: int, engine: Engine, seed: int, n_init: int, max_iter: int
) -> np.ndarray:
    """``(n, d)`` -> ``(k, d)`` float64 k-means centroids with ``sklearn`` or ``faiss``."""
    if engine == "faiss":
        faiss = import_faiss()
        data = np.ascontiguousarray(points, dtype=np.float32)
        km = faiss.Kmeans(
            data.shape[1],
            k,
            niter=max_iter,
            nredo=n_init,
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

    km = KMeans(n_clusters=k, n_init=n_init, max_iter=max_iter, random_state=seed)
    return km.fit(points).cluster_centers_


def nearest(z: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """``(n, v, d)`` and centroids ``(v, k, d)`` -> ``(n, v)`` int64 nearest centroid per
    position."""
    n, v, _ = z.shape
    codes = np.empty((n, v), dtype=np.int64)
    for p in range(v):
        for s in range(0, n, _CHUNK):
            codes[s : s + _CHUNK, p] = squared_distances(z[s : s + _CHUNK, p], centroids[p]).argmin(
                axis=1
            )
    return codes


def distortion(z: np.ndarray, centroids: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """``(n,)`` squared distance of each item to its assigned centroids, summed over positions."""
    total = np.zeros(len(z), dtype=np.float64)
    for p in range(z.shape[1]):
        diff = z[:, p] - centroids[p][codes[:, p]].astype(np.float64)
        total += np.einsum("nd,nd->n", diff, diff)
    return total


def import_faiss():
    """The ``faiss`` module, or ImportError saying how to install it."""
    try:
        import faiss
    except ImportError as e:
        raise ImportError("engine='faiss' needs faiss: pip install faiss-cpu") from e
    return faiss
