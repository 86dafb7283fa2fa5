"""Reference recommenders to compare STORE against, each a small self-contained module.

* :class:`MostPopular` / :class:`RandomRecommender` (``popularity.py``): non-personalised floors.
* :class:`SASRec` (``sasrec.py``): the ID-based causal-Transformer baseline, trained with full
  softmax cross-entropy and early stopping, evaluated by full ranking.

All share ``fit`` -> ``recommend(histories, k)`` (item ids) and ``rank_targets(histories,
targets)`` (1-based ranks for :func:`store_hf.metrics.ranking_metrics`).
"""

from .common import training_sequences
from .popularity import MostPopular, RandomRecommender
from .sasrec import SASRec, SASRecConfig

__all__ = [
    "MostPopular",
    "RandomRecommender",
    "SASRec",
    "SASRecConfig",
    "training_sequences",
]

# TIGER (Rajput et al. 2023): RQ-VAE semantic IDs + a T5 generating the next item's codes.
from ..semantic_ids.rqvae import RQVAE, RQVAEConfig  # noqa: E402
from .text_encoder import encode_texts  # noqa: E402
from .tiger import TIGER, TIGERConfig  # noqa: E402

__all__ += ["RQVAE", "RQVAEConfig", "TIGER", "TIGERConfig", "encode_texts"]
