"""The pipeline's RQ-VAE codebook stage (the ``llm-rqvae`` / ``minilm-rqvae`` ablations).

One embedding per item -> TIGER's quantiser -> ``(num_items, v)`` unique codes, written next to
the model and summarised in the keys of :meth:`SemanticCodebook.statistics`, so the stages after
the codebook read either kind of semantic IDs the same way.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..files import atomic_write, write_json_atomic
from .rqvae import RQVAE, RQVAEConfig, code_statistics

#: Subfolder of the codebook stage's folder that :func:`fit_rqvae` writes.
RQVAE_DIR = "rqvae"


def fit_rqvae(
    embeddings: torch.Tensor,
    item_ids: list[str],
    num_positions: int,
    codebook_size: int,
    seed: int,
    folder: Path,
) -> dict[str, Any]:
    """TIGER's quantiser on one embedding per item: ``num_positions - 1`` RQ-VAE levels of
    ``codebook_size`` codes plus the collision position.

    Args:
        embeddings: ``(num_items, dim)`` float, row ``j`` for ``item_ids[j]``.
        folder: gets ``rqvae/`` with ``rqvae.safetensors`` + ``rqvae.json`` (the model,
            :meth:`RQVAE.save`), ``codes.safetensors`` (``codes``: ``(num_items, v)`` int64) and
            ``item_ids.json``.

    Returns:
        Statistics in the keys of ``SemanticCodebook.statistics`` (``method: "rqvae"``).

    Raises:
        ValueError: the embeddings are not 2-D, or more items share one RQ-VAE code sequence
            than the collision position has values.
    """
    from safetensors.numpy import save as save_numpy

    if embeddings.ndim != 2:
        raise ValueError(
            f"RQ-VAE codes need one embedding per item, got shape {tuple(embeddings.shape)}"
        )
    config = RQVAEConfig(num_levels=num_positions - 1, codebook_size=codebook_size, seed=seed)
    rqvae = RQVAE(embeddings.shape[1], config)
    codes = rqvae.fit(embeddings.numpy())
    report = rqvae.report
    if codes[:, -1].max() >= codebook_size:
        raise ValueError(
            f"RQ-VAE: {report['max_group_size']} items share one code sequence, more than the "
            f"{codebook_size} values of the collision position"
        )
    out = Path(folder) / RQVAE_DIR
    rqvae.save(out)
    atomic_write(out / "codes.safetensors", save_numpy({"codes": np.ascontiguousarray(codes)}))
    write_json_atomic(out / "item_ids.json", list(item_ids))
    final = code_statistics(codes, codebook_size)  # all positions, collision position included
    return {
        "method": "rqvae",
        "num_items": len(codes),
        "num_positions": num_positions,
        "codebook_size": codebook_size,
        "dim": config.latent_dim,
        "positions": [
            {"position": p, "used_clusters": used, "utilisation": share}
            for p, (used, share) in enumerate(zip(final["codes_used"], final["utilisation"]))
        ],
        "collision_rate_before": report["collision_rate"],
        "collision_rate_after": final["collision_rate"],
        "fit_seconds": report["seconds"],
        "rqvae": {k: v for k, v in report.items() if k != "config"},
    }
