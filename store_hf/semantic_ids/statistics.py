"""Health of a fitted :class:`~store_hf.semantic_ids.SemanticCodebook`: statistics and a plot."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .keys import collision_summary, embedding_memory

if TYPE_CHECKING:
    from .codebook import SemanticCodebook


def position_statistics(codes: np.ndarray, codebook_size: int) -> list[dict[str, Any]]:
    """Per position of ``(n, v)`` codes: utilisation (used clusters / k), cluster-size
    min/max/mean/std over all ``k`` clusters (empty ones count as 0), coefficient of variation
    (std / mean) and normalised entropy (entropy / log k; 1 = perfectly even)."""
    k, n = codebook_size, len(codes)
    positions = []
    for p in range(codes.shape[1]):
        sizes = np.bincount(codes[:, p], minlength=k).astype(np.float64)
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
    return positions


def codebook_statistics(book: SemanticCodebook) -> dict[str, Any]:
    """:meth:`SemanticCodebook.statistics` (documented there), as plain JSON types."""
    k, n = book.codebook_size, len(book)
    after = collision_summary(book.codes, k)
    fit = book._fit_stats
    return {
        **book.settings(),
        "num_items": n,
        "num_positions": int(book.num_positions),
        "hidden_size": int(book.hidden_size),
        "dim": book.dim,
        "pca_explained_variance": list(book.pca_explained_variance),
        "fit_items": fit["fit_items"],
        "fit_seconds": fit["fit_seconds"],
        "positions": position_statistics(book.codes, k),
        "collision_rate_before": fit["collision_rate_before"],
        "colliding_items_before": fit["colliding_items_before"],
        "colliding_groups_before": fit["colliding_groups_before"],
        "largest_group_before": fit["largest_group_before"],
        "collision_rate_after": after["rate"],
        "colliding_items_after": after["colliding_items"],
        "largest_group_after": after["largest_group"],
        "resolution": dict(fit["resolution"]),
        "assigned": dict(book._assigned),
        "memory": embedding_memory(n, book.hidden_size, k, book.num_positions),
    }


def plot_cluster_sizes(codes: np.ndarray, codebook_size: int, path: str | os.PathLike) -> Path:
    """Write a PNG of the sorted cluster sizes of every position of ``(n, v)`` codes
    (matplotlib, Agg). Returns the path."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as e:
        raise ImportError("plot_cluster_sizes needs matplotlib: pip install matplotlib") from e
    k, n = codebook_size, len(codes)
    # A bare Figure on the Agg canvas: no pyplot, so no global backend switch for the caller.
    fig = Figure(figsize=(7, 4), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    ranks = np.arange(1, k + 1)
    for p in range(codes.shape[1]):
        sizes = np.sort(np.bincount(codes[:, p], minlength=k))[::-1]
        ax.plot(ranks, sizes, label=f"position {p}", drawstyle="steps-mid")
    ax.axhline(n / k, color="gray", linestyle="--", label="uniform")
    ax.set_xlabel("cluster rank")
    ax.set_ylabel("items")
    ax.set_title(f"Cluster sizes (k={k}, {n} items)")
    ax.legend()
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    return path
