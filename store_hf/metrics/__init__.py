"""Evaluation metrics for STORE: top-K retrieval (Recall / NDCG) and CTR scoring (AUC, MRR, NDCG).

Two settings of the paper are covered, both with numpy only (torch tensors are accepted and
moved to numpy; torch is never imported here).

**Retrieval** (paper Tables 3 and 4): every test user has ONE held-out target item and the model
returns a ranked list of item ids. With ``r`` the 1-based rank of the target in that list:

* ``Recall@K = HitRate@K = 1[r <= K]``
* ``NDCG@K = 1 / log2(r + 1)`` if ``r <= K`` else ``0`` (the ideal DCG of one relevant item is 1)

both averaged over users. A target that is not in the list (rank 0 or ``inf``) scores 0 for
every K; a list shorter than K is not padded or penalised further. With a single target,
``NDCG@K <= Recall@K`` for every user and K. Use :func:`target_ranks` +
:func:`ranking_metrics`, or the batch accumulator :class:`RankingMetrics`.

**Comparing systems** evaluated on the same users: :func:`per_user_metric` gives the per-user
Recall@K / NDCG@K values; :func:`bootstrap_interval` and :func:`wilson_interval` give confidence
intervals of one system's mean, :func:`paired_bootstrap` (mean difference, interval, p-value) and
:func:`mcnemar_test` (exact, on per-user hits) compare two systems; :func:`compare_systems` runs
both for every metric and K.

Duplicates: hits are counted at item level. Only the FIRST occurrence of an item in a list
counts, and with ``dedupe=True`` (default) repeated occurrences are dropped before ranking, so
they take no rank position (``["a", "a", "b"]`` ranks ``"b"`` 2nd). ``dedupe=False`` keeps the raw
list positions (``"b"`` is 3rd). Duplicates happen when several beams decode to item sets that
overlap, e.g. when items share a code sequence.

**Scoring** (paper Table 5, MIND style): every impression is a set of candidates with 0/1 click
labels and model scores. Per impression, as in the official MIND evaluation script:

* ``AUC``: the Mann-Whitney statistic, probability that a random clicked candidate scores above a
  random non-clicked one, ties counting 1/2 (average ranks; equals scikit-learn's
  ``roc_auc_score``). Undefined for impressions with only one label class: those are skipped and
  counted (``num_skipped_auc``).
* ``MRR = sum_i y_(i) / i / sum_i y_i`` with ``y_(i)`` the label at 1-based rank ``i``.
* ``NDCG@k = DCG@k / IDCG@k`` with ``DCG@k = sum_{i <= k} (2**y_(i) - 1) / log2(i + 1)`` and
  ``IDCG@k`` the DCG of the labels sorted by themselves. MRR and NDCG are undefined for
  impressions without a click; those are skipped and counted (``num_skipped_no_click``).

each averaged over impressions, plus the global AUC (all samples pooled) and, given user ids,
GAUC: the per-user AUC over all of that user's samples, averaged with weights = the user's
number of samples (or impressions), skipping users with one label class.

Ties in scores are resolved deterministically and independently of the candidate order: MRR and
NDCG take the expectation over all orders of the tied candidates (each position of a tie group
gets the group's mean label; this is scikit-learn's ``ndcg_score`` default), AUC uses average
ranks. Without ties all definitions reduce to the MIND script's.

**Hugging Face evaluate**: ``evaluate.load(evaluate_module_path())`` loads the retrieval metrics
as an ``evaluate`` module (``store_ranking``, computed by :func:`target_ranks` +
:func:`ranking_metrics`), from the installed package, with no Hub access.

Layout: :mod:`.ranking` (retrieval), :mod:`.impressions` (scoring), :mod:`.significance`
(comparing systems), :mod:`._checks` (input validation they share), :mod:`.evaluate_module`
(where the evaluate module's script lies: ``evaluate_modules/store_ranking/``). Import from
``store_hf.metrics``; every public name is re-exported here.
"""

from .evaluate_module import evaluate_module_path
from .impressions import DEFAULT_SCORING_KS, binary_auc, impression_metrics
from .ranking import DEFAULT_KS, RankingMetrics, ranking_metrics, target_ranks
from .significance import (
    bootstrap_interval,
    compare_systems,
    mcnemar_test,
    paired_bootstrap,
    per_user_metric,
    wilson_interval,
)

__all__ = [
    "DEFAULT_KS",
    "DEFAULT_SCORING_KS",
    "RankingMetrics",
    "binary_auc",
    "bootstrap_interval",
    "compare_systems",
    "evaluate_module_path",
    "impression_metrics",
    "mcnemar_test",
    "paired_bootstrap",
    "per_user_metric",
    "ranking_metrics",
    "target_ranks",
    "wilson_interval",
]
