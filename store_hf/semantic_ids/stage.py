"""The pipeline's codebook stage: semantic IDs of every item from its encoded embeddings, by
the run's method (PCA + k-means for STORE, RQ-VAE for the ablations)."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

import torch

from ..files import write_json_atomic
from ..presets import CodebookSettings
from .codebook import SemanticCodebook
from .rqvae_codes import fit_rqvae

logger = logging.getLogger(__name__)


def fit_codebook_stage(
    folder: Path,
    embeddings: torch.Tensor,
    item_ids: list[str],
    settings: CodebookSettings,
    method: str,
    num_positions: int,
    seed: int,
) -> dict[str, Any]:
    """The pipeline's codebook stage: semantic IDs of every item from its embeddings.

    Args:
        embeddings: ``(num_items, v, hidden)`` dense tokens (``method="store"``: PCA + k-means
            per position, saved as ``folder/codebook``) or ``(num_items, hidden)`` (the RQ-VAE
            methods, saved as ``folder/rqvae``).
        settings: the codebook's settings (``k``, PCA size, k-means options).
        num_positions: ``v``, codes per item (RQ-VAE: ``v - 1`` levels + the collision code).

    Returns:
        the stage summary; ``folder/statistics.json`` holds the full statistics.
    """
    if method != "store":
        stats = fit_rqvae(embeddings, item_ids, num_positions, settings.codebook_size, seed, folder)
    else:
        codebook = SemanticCodebook(seed=seed, **dataclasses.asdict(settings)).fit(
            embeddings.numpy(), item_ids
        )
        codebook.save_pretrained(folder / "codebook")
        stats = codebook.statistics()
        try:
            codebook.plot_cluster_sizes(folder / "cluster_sizes.png")
        except ImportError as e:  # matplotlib is an optional extra
            logger.warning("no cluster-size plot: %s", e)
    write_json_atomic(folder / "statistics.json", stats)
    return {
        "utilisation": [p["utilisation"] for p in stats["positions"]],
        "collision_rate_before": stats["collision_rate_before"],
        "collision_rate_after": stats["collision_rate_after"],
        "fit_seconds": stats["fit_seconds"],
    }


__all__ = ["fit_codebook_stage"]
