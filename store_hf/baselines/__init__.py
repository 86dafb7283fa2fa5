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
