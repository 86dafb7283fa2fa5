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
"""

from __future__ import annotations

import math
import operator
from collections.abc import Hashable, Sequence
from statistics import NormalDist
from typing import Any, Literal

import numpy as np

DEFAULT_KS: tuple[int, ...] = (1, 5, 10, 20)
DEFAULT_SCORING_KS: tuple[int, ...] = (1, 5)

__all__ = [
    "DEFAULT_KS",
    "DEFAULT_SCORING_KS",
    "RankingMetrics",
    "binary_auc",
    "bootstrap_interval",
    "compare_systems",
    "impression_metrics",
    "mcnemar_test",
    "paired_bootstrap",
    "per_user_metric",
    "ranking_metrics",
    "target_ranks",
    "wilson_interval",
]


# ----------------------------------------------------------------------------- helpers


def _to_numpy(x: Any) -> np.ndarray:
    """numpy view of ``x``; torch tensors (any device, bfloat16 too) are detached and copied."""
    if hasattr(x, "detach") and hasattr(x, "cpu"):
        x = x.detach().cpu()
        if getattr(x, "is_floating_point", lambda: False)():
            x = x.double()
        return x.numpy()
    return np.asarray(x)


def _check_ks(ks: Sequence[int] | int, name: str = "ks") -> tuple[int, ...]:
    """Validate cut-offs: a non-empty sequence of integers >= 1 (a single int is accepted)."""
    if isinstance(ks, (int, np.integer)) and not isinstance(ks, bool):
        ks = (ks,)
    try:
        items = list(ks)
    except TypeError:
        raise ValueError(f"{name} must be a sequence of integers >= 1, got {ks!r}") from None
    if not items:
        raise ValueError(f"{name} must contain at least one cut-off K")
    out = []
    for k in items:
        if isinstance(k, bool):
            raise ValueError(f"{name} must contain integers >= 1, got {k!r}")
        try:
            k_int = operator.index(k)
        except TypeError:
            raise ValueError(f"{name} must contain integers >= 1, got {k!r}") from None
        if k_int < 1:
            raise ValueError(f"{name} must contain integers >= 1 (K < 1 is undefined), got {k_int}")
        out.append(k_int)
    return tuple(out)


def _check_list_of_lists(value: Any, name: str) -> None:
    if isinstance(value, (str, bytes)):
        raise ValueError(f"{name} must be a sequence of sequences, got a single {type(value)}")


# ----------------------------------------------------------------------------- retrieval


def target_ranks(
    recommended: Sequence[Sequence[str]],
    targets: Sequence[str],
    *,
    dedupe: bool = True,
) -> np.ndarray:
    """1-based rank of each user's target in that user's ranked recommendation list.

    Args:
        recommended: ``num_users`` ranked lists of item ids, best first. Lists may have different
            lengths and may be shorter than any K. Ids are compared with ``==`` (so ``"1"`` and
            ``1`` differ).
        targets: ``(num_users,)`` the held-out target item id of each user.
        dedupe: only the first occurrence of an item counts. ``True`` (default): repeated
            occurrences are removed before ranking, so they take no position; ``False``: the rank
            is the raw list position of the target's first occurrence.

    Returns:
        ``(num_users,)`` int64 ranks, ``0`` where the target is not in the list.

    Raises:
        ValueError: ``recommended`` and ``targets`` differ in length, or either is a bare string.
    """
    _check_list_of_lists(recommended, "recommended")
    _check_list_of_lists(targets, "targets")
    if len(recommended) != len(targets):
        raise ValueError(
            f"recommended has {len(recommended)} lists but targets has {len(targets)} items; "
            "give one ranked list per target"
        )
    ranks = np.zeros(len(targets), dtype=np.int64)
    for u, (items, target) in enumerate(zip(recommended, targets)):
        if isinstance(items, (str, bytes)):
            raise ValueError(
                f"recommended[{u}] is a string ({items!r}); each entry must be a list of item ids"
            )
        if not isinstance(items, list):  # tuples, numpy arrays, torch tensors
            items = items.tolist() if hasattr(items, "tolist") else list(items)
        try:
            first = items.index(target)  # C-level scan, first occurrence
        except ValueError:
            continue
        # Distinct items before the first hit (C-level set build); duplicates take no position.
        ranks[u] = (len(set(items[:first])) if dedupe else first) + 1
    return ranks


def _numeric_per_user(x: Any, name: str) -> np.ndarray:
    """``x`` as a float64 ``(num_users,)`` array; ValueError naming ``name`` if it is not
    numeric (or bool) or not 1-D."""
    a = _to_numpy(x)
    if a.dtype == object or not (
        np.issubdtype(a.dtype, np.number) or np.issubdtype(a.dtype, np.bool_)
    ):
        raise ValueError(f"{name} must be numeric, got dtype {a.dtype}")
    a = a.astype(np.float64)
    if a.ndim != 1:
        raise ValueError(f"{name} must be 1-D (num_users,), got shape {tuple(a.shape)}")
    return a


def _check_ranks(ranks: Any, name: str = "ranks") -> np.ndarray:
    """Validate 1-based ranks (0 or inf = not retrieved); return float64 with inf for misses."""
    r = _numeric_per_user(ranks, name)
    if np.isnan(r).any():
        raise ValueError(f"{name} contains NaN; use 0 or inf for a target that was not retrieved")
    if (r < 0).any():
        raise ValueError(f"{name} must be >= 1 (or 0 / inf = not retrieved), got {r[r < 0][0]}")
    finite = np.isfinite(r)
    if (r[finite] != np.floor(r[finite])).any():
        bad = r[finite][r[finite] != np.floor(r[finite])][0]
        raise ValueError(f"{name} must be whole numbers (1-based ranks), got {bad}")
    return np.where(r == 0, np.inf, r)


def ranking_metrics(ranks: Any, ks: Sequence[int] = DEFAULT_KS) -> dict[str, float]:
    """Recall@K (= HitRate@K) and NDCG@K for one held-out target per user, averaged over users.

    Args:
        ranks: ``(num_users,)`` 1-based rank of each user's target (numpy, list or torch);
            ``0`` or ``inf`` means not retrieved.
        ks: cut-offs, each an integer >= 1.

    Returns:
        ``{"recall@K": ..., "ndcg@K": ... for every K, "num_users": n}`` (recall keys first).
        With no users every metric is ``nan``.

    Raises:
        ValueError: ``ranks`` is not 1-D, negative, NaN or fractional; a K is < 1.
    """
    ks = _check_ks(ks)
    r = _check_ranks(ranks)
    n = r.shape[0]
    # 1 / log2(r + 1) is 0 for r = inf; r >= 1 elsewhere so no division by zero.
    gain = 1.0 / np.log2(r + 1.0)
    out: dict[str, float] = {}
    for k in ks:
        out[f"recall@{k}"] = float(np.mean(r <= k)) if n else float("nan")
    for k in ks:
        out[f"ndcg@{k}"] = float(np.mean(np.where(r <= k, gain, 0.0))) if n else float("nan")
    out["num_users"] = n
    return out


class RankingMetrics:
    """Accumulates target ranks over evaluation batches; :meth:`compute` = one-shot metrics.

    Example::

        metric = RankingMetrics(ks=(1, 10))
        for batch in loader:
            metric.update(recommended_lists, target_ids)
        scores = metric.compute()  # {"recall@1", "recall@10", "ndcg@1", "ndcg@10", "num_users"}

    Stores one float per user, so :meth:`compute` equals :func:`ranking_metrics` on all users
    at once exactly (not an average of batch averages).
    """

    def __init__(self, ks: Sequence[int] = DEFAULT_KS, *, dedupe: bool = True) -> None:
        self.ks = _check_ks(ks)
        self.dedupe = dedupe
        self._ranks: list[np.ndarray] = []

    def update(self, recommended: Sequence[Sequence[str]], targets: Sequence[str]) -> np.ndarray:
        """Add a batch of ranked lists and targets; returns the batch's ``(batch,)`` ranks."""
        ranks = target_ranks(recommended, targets, dedupe=self.dedupe)
        self._ranks.append(_check_ranks(ranks))
        return ranks

    def update_ranks(self, ranks: Any) -> None:
        """Add precomputed ``(batch,)`` 1-based ranks (0 or inf = not retrieved)."""
        self._ranks.append(_check_ranks(ranks))

    @property
    def num_users(self) -> int:
        return int(sum(len(r) for r in self._ranks))

    def ranks(self) -> np.ndarray:
        """All ``(num_users,)`` ranks so far, float64 with ``inf`` for targets not retrieved."""
        return np.concatenate(self._ranks) if self._ranks else np.zeros(0)

    def compute(self) -> dict[str, float]:
        """:func:`ranking_metrics` over every user added since construction / :meth:`reset`."""
        return ranking_metrics(self.ranks(), self.ks)

    def reset(self) -> None:
        self._ranks.clear()

    def __repr__(self) -> str:
        return f"RankingMetrics(ks={self.ks}, dedupe={self.dedupe}, num_users={self.num_users})"


# ----------------------------------------------------------------------------- scoring


def _tie_runs(keys: np.ndarray, groups: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Runs of equal ``(group, key)`` in arrays already sorted by group then key.

    Returns ``(run_id, run_start, run_len)``: the run of every element, and the first index and
    length of every run (indices into the sorted arrays).
    """
    n = keys.shape[0]
    new = np.ones(n, dtype=bool)
    new[1:] = (groups[1:] != groups[:-1]) | (keys[1:] != keys[:-1])
    run_start = np.flatnonzero(new)
    run_id = np.cumsum(new) - 1
    run_len = np.diff(np.append(run_start, n))
    return run_id, run_start, run_len


def _grouped_auc(
    scores: np.ndarray, labels: np.ndarray, groups: np.ndarray, num_groups: int
) -> np.ndarray:
    """Mann-Whitney AUC of every group (average ranks for ties); ``nan`` for one-class groups.

    Args:
        scores, labels, groups: ``(n,)`` float64 scores, 0/1 labels, int64 group ids.
    Returns:
        ``(num_groups,)`` float64.
    """
    order = np.lexsort((scores, groups))
    s, y, g = scores[order], labels[order], groups[order]
    sizes = np.bincount(groups, minlength=num_groups)
    group_start = np.cumsum(sizes) - sizes
    run_id, run_start, run_len = _tie_runs(s, g)
    # 1-based average rank within the group of each tie run.
    run_rank = (run_start - group_start[g[run_start]]) + (run_len + 1) / 2.0
    pos_rank_sum = np.bincount(g, weights=run_rank[run_id] * y, minlength=num_groups)
    n_pos = np.bincount(g, weights=y, minlength=num_groups)
    n_neg = sizes - n_pos
    valid = (n_pos > 0) & (n_neg > 0)
    auc = np.full(num_groups, np.nan)
    auc[valid] = (pos_rank_sum[valid] - n_pos[valid] * (n_pos[valid] + 1) / 2.0) / (
        n_pos[valid] * n_neg[valid]
    )
    return auc


def _grouped_mrr_ndcg(
    scores: np.ndarray, labels: np.ndarray, groups: np.ndarray, num_groups: int, ks: tuple[int, ...]
) -> tuple[np.ndarray, dict[int, np.ndarray]]:
    """MIND MRR and NDCG@k of every group, ties averaged; ``nan`` for groups without a click.

    Returns ``(mrr, {k: ndcg@k})``, each ``(num_groups,)`` float64.
    """
    order = np.lexsort((-scores, groups))  # descending score within each group
    s, y, g = scores[order], labels[order], groups[order]
    sizes = np.bincount(groups, minlength=num_groups)
    group_start = np.cumsum(sizes) - sizes
    rank = np.arange(s.shape[0]) - group_start[g] + 1  # 1-based position within the group
    run_id, _, run_len = _tie_runs(-s, g)
    # Expected label at every position of a tie run under a uniformly random order of the run.
    y_exp = (np.bincount(run_id, weights=y) / run_len)[run_id]
    n_pos = np.bincount(g, weights=y, minlength=num_groups)
    has_click = n_pos > 0

    mrr = np.full(num_groups, np.nan)
    rr_sum = np.bincount(g, weights=y_exp / rank, minlength=num_groups)
    mrr[has_click] = rr_sum[has_click] / n_pos[has_click]

    discount = 1.0 / np.log2(rank + 1.0)
    max_k = max(ks)
    # ideal_cum[j] = sum_{i=1..j} 1 / log2(i + 1): the IDCG of j clicks (gains 2**1 - 1 = 1).
    ideal_cum = np.concatenate(([0.0], np.cumsum(1.0 / np.log2(np.arange(2, max_k + 2)))))
    ndcg: dict[int, np.ndarray] = {}
    for k in ks:
        dcg = np.bincount(
            g, weights=np.where(rank <= k, y_exp * discount, 0.0), minlength=num_groups
        )
        idcg = ideal_cum[np.minimum(n_pos, k).astype(np.int64)]
        values = np.full(num_groups, np.nan)
        values[has_click] = dcg[has_click] / idcg[has_click]
        ndcg[k] = values
    return mrr, ndcg


def _check_binary_labels(labels: np.ndarray, name: str) -> np.ndarray:
    if labels.dtype == object or not (
        np.issubdtype(labels.dtype, np.number) or np.issubdtype(labels.dtype, np.bool_)
    ):
        raise ValueError(f"{name} must be 0/1 (or bool), got dtype {labels.dtype}")
    labels = labels.astype(np.float64)
    bad = (labels != 0) & (labels != 1)
    if bad.any():
        raise ValueError(f"{name} must be 0/1 (or bool), found {labels[bad][0].item()!r}")
    return labels


def _check_scores(scores: np.ndarray, name: str) -> np.ndarray:
    if scores.dtype == object or not (
        np.issubdtype(scores.dtype, np.number) or np.issubdtype(scores.dtype, np.bool_)
    ):
        raise ValueError(f"{name} must be numeric, got dtype {scores.dtype}")
    scores = scores.astype(np.float64)
    if np.isnan(scores).any():
        raise ValueError(f"{name} contains NaN")
    return scores


def binary_auc(scores: Any, labels: Any) -> float:
    """ROC AUC of one set of samples (Mann-Whitney, ties count 1/2 = scikit-learn's value).

    Args:
        scores: ``(n,)`` model scores, higher = more likely clicked.
        labels: ``(n,)`` 0/1 labels.

    Returns:
        The AUC, or ``nan`` when ``labels`` contains only one class.

    Raises:
        ValueError: shapes differ or are not 1-D, labels not 0/1, scores NaN.
    """
    s = _check_scores(_to_numpy(scores), "scores")
    y = _check_binary_labels(_to_numpy(labels), "labels")
    if s.ndim != 1 or y.ndim != 1 or s.shape != y.shape:
        raise ValueError(
            f"scores and labels must be 1-D of the same length, got shapes "
            f"{tuple(s.shape)} and {tuple(y.shape)}"
        )
    return float(_grouped_auc(s, y, np.zeros(len(s), dtype=np.int64), 1)[0])


def _nanmean(values: np.ndarray) -> float:
    values = values[~np.isnan(values)]
    return float(values.mean()) if values.size else float("nan")


def impression_metrics(
    scores: Sequence[Any],
    labels: Sequence[Any],
    user_ids: Sequence[Hashable] | None = None,
    *,
    ks: Sequence[int] = DEFAULT_SCORING_KS,
    gauc_weight: Literal["samples", "impressions"] = "samples",
) -> dict[str, float]:
    """MIND-style CTR metrics: per-impression AUC, MRR and NDCG@k, global AUC and GAUC.

    Args:
        scores: ``num_impressions`` arrays, impression ``i`` of shape ``(n_i,)``: the model score
            of each candidate (higher = more likely clicked). Lengths may differ; a 2-D array
            ``(num_impressions, n)`` works too.
        labels: ``num_impressions`` arrays of shape ``(n_i,)`` with 0/1 (or bool) click labels.
        user_ids: optional ``(num_impressions,)`` user of each impression; enables ``"gauc"``.
        ks: NDCG cut-offs (MIND and the paper: 1 and 5; MIND's leaderboard also uses 10).
        gauc_weight: weight of a user's AUC in GAUC: ``"samples"`` (number of candidates the user
            was shown, default) or ``"impressions"`` (number of impressions).

    Returns:
        A dict with

        * ``"auc"``: mean per-impression AUC over impressions with both labels;
        * ``"mrr"``, ``"ndcg@k"``: means over impressions with at least one click;
        * ``"global_auc"``: AUC of all samples pooled;
        * ``"gauc"`` (only with ``user_ids``): per-user AUC over the user's pooled samples,
          averaged with ``gauc_weight``; users with one label class are skipped;
        * counts: ``"num_impressions"``, ``"num_samples"``, ``"num_skipped_auc"`` (all-0 or
          all-1 impressions, excluded from ``"auc"``), ``"num_skipped_no_click"`` (excluded
          from MRR / NDCG), and with ``user_ids`` ``"num_users"``, ``"num_skipped_gauc_users"``.

        A metric with nothing to average is ``nan``.

    Raises:
        ValueError: ``scores`` / ``labels`` / ``user_ids`` differ in length, an impression's
            scores and labels differ in length or are not 1-D, labels are not 0/1, scores are
            NaN, a K is < 1, or ``gauc_weight`` is unknown.
    """
    ks = _check_ks(ks)
    if gauc_weight not in ("samples", "impressions"):
        raise ValueError(f"gauc_weight must be 'samples' or 'impressions', got {gauc_weight!r}")
    if len(scores) != len(labels):
        raise ValueError(
            f"scores has {len(scores)} impressions but labels has {len(labels)}; "
            "give one score array and one label array per impression"
        )
    if user_ids is not None:
        _check_list_of_lists(user_ids, "user_ids")
        if len(user_ids) != len(scores):
            raise ValueError(
                f"user_ids has {len(user_ids)} entries but scores has {len(scores)} impressions; "
                "give one user id per impression"
            )

    num_imp = len(scores)
    score_parts, label_parts = [], []
    sizes = np.zeros(num_imp, dtype=np.int64)
    for i, (s_i, y_i) in enumerate(zip(scores, labels)):
        s_i, y_i = _to_numpy(s_i), _to_numpy(y_i)
        if s_i.ndim != 1 or y_i.ndim != 1 or s_i.shape != y_i.shape:
            raise ValueError(
                f"scores[{i}] and labels[{i}] must be 1-D of the same length, got shapes "
                f"{tuple(s_i.shape)} and {tuple(y_i.shape)}"
            )
        score_parts.append(s_i)
        label_parts.append(y_i)
        sizes[i] = s_i.shape[0]
    s = np.concatenate(score_parts) if num_imp else np.zeros(0)
    y = np.concatenate(label_parts) if num_imp else np.zeros(0)
    s = _check_scores(s, "scores")
    y = _check_binary_labels(y, "labels")
    imp = np.repeat(np.arange(num_imp, dtype=np.int64), sizes)

    auc = _grouped_auc(s, y, imp, num_imp)
    mrr, ndcg = _grouped_mrr_ndcg(s, y, imp, num_imp, ks)
    out: dict[str, float] = {"auc": _nanmean(auc), "mrr": _nanmean(mrr)}
    for k in ks:
        out[f"ndcg@{k}"] = _nanmean(ndcg[k])
    out["global_auc"] = float(_grouped_auc(s, y, np.zeros(len(s), dtype=np.int64), 1)[0])

    if user_ids is not None:
        index: dict[Hashable, int] = {}
        imp_user = np.array([index.setdefault(u, len(index)) for u in user_ids], dtype=np.int64)
        num_users = len(index)
        user_auc = _grouped_auc(s, y, imp_user[imp], num_users)
        if gauc_weight == "samples":
            weight = np.bincount(imp_user, weights=sizes, minlength=num_users)
        else:
            weight = np.bincount(imp_user, minlength=num_users).astype(np.float64)
        valid = ~np.isnan(user_auc)
        total = weight[valid].sum()
        out["gauc"] = float((user_auc[valid] * weight[valid]).sum() / total) if total else np.nan
        out["num_users"] = num_users
        out["num_skipped_gauc_users"] = int((~valid).sum())

    out["num_impressions"] = num_imp
    out["num_samples"] = int(sizes.sum())
    out["num_skipped_auc"] = int(np.isnan(auc).sum())
    out["num_skipped_no_click"] = int(np.isnan(mrr).sum())
    return out


# ----------------------------------------------------------------------------- comparing systems

# Resampled (resample, user) entries held at once by the bootstraps: 2**21 float64 = 16 MiB.
_BOOTSTRAP_CHUNK_ELEMENTS = 1 << 21
_PER_USER_METRICS = ("recall", "ndcg")


def _check_values(values: Any, name: str) -> np.ndarray:
    """Validate per-user values: a non-empty 1-D numeric array without NaN / inf; float64."""
    v = _numeric_per_user(values, name)
    if v.shape[0] == 0:
        raise ValueError(f"{name} is empty; at least one user is needed")
    if not np.isfinite(v).all():
        raise ValueError(f"{name} contains NaN or inf")
    return v


def _check_confidence(confidence: float) -> float:
    if isinstance(confidence, bool) or not 0.0 < float(confidence) < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    return float(confidence)


def _check_num_resamples(num_resamples: int) -> int:
    if isinstance(num_resamples, bool):
        raise ValueError(f"num_resamples must be an integer >= 1, got {num_resamples!r}")
    try:
        n = operator.index(num_resamples)
    except TypeError:
        raise ValueError(f"num_resamples must be an integer >= 1, got {num_resamples!r}") from None
    if n < 1:
        raise ValueError(f"num_resamples must be an integer >= 1, got {n}")
    return n


def _bootstrap_means(values: np.ndarray, num_resamples: int, seed: int | None) -> np.ndarray:
    """``(num_resamples,)`` means of ``values`` resampled with replacement (users = rows).

    Vectorised in chunks of at most ``_BOOTSTRAP_CHUNK_ELEMENTS`` resampled entries, so memory
    stays bounded for any number of users and resamples.
    """
    n = values.shape[0]
    rng = np.random.default_rng(seed)
    rows = max(1, _BOOTSTRAP_CHUNK_ELEMENTS // n)
    means = np.empty(num_resamples)
    for start in range(0, num_resamples, rows):
        stop = min(start + rows, num_resamples)
        idx = rng.integers(0, n, size=(stop - start, n))
        means[start:stop] = values[idx].mean(axis=1)
    return means


def per_user_metric(ranks: Any, metric: str) -> np.ndarray:
    """Per-user value of ``"recall@K"`` or ``"ndcg@K"``: the quantities :func:`ranking_metrics`
    averages.

    Args:
        ranks: ``(num_users,)`` 1-based rank of each user's target (numpy, list or torch);
            ``0`` or ``inf`` means not retrieved.
        metric: ``"recall@K"`` (``1.0`` if the rank is ``<= K`` else ``0.0``) or ``"ndcg@K"``
            (``1 / log2(rank + 1)`` if the rank is ``<= K`` else ``0.0``), K an integer >= 1.

    Returns:
        ``(num_users,)`` float64; its mean is ``ranking_metrics(ranks, ks=(K,))[metric]``.

    Raises:
        ValueError: unknown metric name or K < 1; ``ranks`` not 1-D, negative, NaN or fractional.
    """
    name, sep, k_text = str(metric).partition("@")
    if name not in _PER_USER_METRICS or not sep:
        raise ValueError(
            f"unknown metric {metric!r}; expected 'recall@K' or 'ndcg@K' with K an integer >= 1"
        )
    try:
        k = int(k_text)
    except ValueError:
        raise ValueError(f"metric {metric!r}: K must be an integer >= 1, got {k_text!r}") from None
    if k < 1:
        raise ValueError(f"metric {metric!r}: K must be an integer >= 1 (K < 1 is undefined)")
    r = _check_ranks(ranks)
    if name == "recall":
        return (r <= k).astype(np.float64)
    return np.where(r <= k, 1.0 / np.log2(r + 1.0), 0.0)


def bootstrap_interval(
    values: Any,
    *,
    confidence: float = 0.95,
    num_resamples: int = 10_000,
    seed: int | None = 0,
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of per-user values.

    Users are resampled with replacement ``num_resamples`` times; the interval is the
    ``(1 - confidence) / 2`` and ``(1 + confidence) / 2`` quantiles of the resampled means.

    Args:
        values: ``(num_users,)`` per-user values, e.g. :func:`per_user_metric`.
        confidence: coverage of the interval, in ``(0, 1)``.
        num_resamples: number of bootstrap resamples (>= 1).
        seed: seed of ``numpy.random.default_rng``; the same seed gives the same interval.

    Returns:
        ``(low, high)``.

    Raises:
        ValueError: ``values`` empty, not 1-D, NaN or inf; bad ``confidence`` / ``num_resamples``.
    """
    v = _check_values(values, "values")
    confidence = _check_confidence(confidence)
    means = _bootstrap_means(v, _check_num_resamples(num_resamples), seed)
    alpha = 1.0 - confidence
    low, high = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return float(low), float(high)


def wilson_interval(hits: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a proportion ``hits / n`` (e.g. recall@K = users hit / users).

    With ``p = hits / n`` and ``z`` the ``(1 + confidence) / 2`` standard normal quantile::

        center = (p + z**2 / (2 n)) / (1 + z**2 / n)
        half = z * sqrt(p (1 - p) / n + z**2 / (4 n**2)) / (1 + z**2 / n)

    the interval is ``(center - half, center + half)``: always inside ``[0, 1]`` and containing
    ``p``, and, unlike the normal approximation, reliable for proportions near 0 or 1.

    Args:
        hits: number of successes, ``0 <= hits <= n``.
        n: number of trials (users), ``>= 1``.
        confidence: coverage of the interval, in ``(0, 1)``.

    Returns:
        ``(low, high)``.

    Raises:
        ValueError: ``hits`` / ``n`` not integers, ``n < 1``, ``hits`` outside ``[0, n]``, or bad
            ``confidence``.
    """
    for value, name in ((hits, "hits"), (n, "n")):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise ValueError(f"{name} must be an integer, got {value!r}")
    hits, n = int(hits), int(n)
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if not 0 <= hits <= n:
        raise ValueError(f"hits must be in [0, n] = [0, {n}], got {hits}")
    z = NormalDist().inv_cdf(0.5 + _check_confidence(confidence) / 2)
    p = hits / n
    denom = 1.0 + z * z / n
    center = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    low = 0.0 if hits == 0 else max(0.0, center - half)
    high = 1.0 if hits == n else min(1.0, center + half)
    return low, high


def paired_bootstrap(
    values_a: Any,
    values_b: Any,
    *,
    confidence: float = 0.95,
    num_resamples: int = 10_000,
    seed: int | None = 0,
) -> dict[str, float]:
    """Paired bootstrap of the mean difference ``a - b`` of two systems on the same users.

    The per-user differences ``d = values_a - values_b`` are resampled (users with replacement,
    so both systems always see the same resampled users) ``num_resamples`` times.

    The p-value is the two-sided bootstrap p ``min(1, 2 * min(share(d* <= 0), share(d* >= 0)))``
    over the resampled mean differences ``d*``, i.e. about the smallest ``alpha`` at which the
    ``1 - alpha`` percentile interval excludes 0. Its resolution is ``2 / num_resamples``: ``0``
    means no resample reached 0. When the two systems agree on every user, ``p_value = 1``.

    Args:
        values_a, values_b: ``(num_users,)`` per-user values of systems A and B, e.g.
            :func:`per_user_metric`, for the same users in the same order.
        confidence: coverage of ``(low, high)``, in ``(0, 1)`` (default 95%).
        num_resamples: number of bootstrap resamples (>= 1).
        seed: seed of ``numpy.random.default_rng``.

    Returns:
        ``{"difference": mean(a) - mean(b), "low": ..., "high": ... (percentile interval of the
        difference), "p_value": ...}``.

    Raises:
        ValueError: the arrays differ in length, are empty, not 1-D, NaN or inf.
    """
    a = _check_values(values_a, "values_a")
    b = _check_values(values_b, "values_b")
    if a.shape != b.shape:
        raise ValueError(
            f"values_a has {a.shape[0]} users but values_b has {b.shape[0]}; a paired test "
            "needs the values of both systems for the same users, in the same order"
        )
    confidence = _check_confidence(confidence)
    d = a - b
    means = _bootstrap_means(d, _check_num_resamples(num_resamples), seed)
    alpha = 1.0 - confidence
    low, high = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    if not d.any():
        p_value = 1.0
    else:
        p_value = min(1.0, 2.0 * min(float(np.mean(means <= 0)), float(np.mean(means >= 0))))
    return {
        "difference": float(d.mean()),
        "low": float(low),
        "high": float(high),
        "p_value": p_value,
    }


def mcnemar_test(hits_a: Any, hits_b: Any) -> dict[str, float]:
    """Exact McNemar test of two systems' paired binary outcomes (e.g. hit@10 of each user).

    Only discordant users count: ``b`` = hit by A and missed by B, ``c`` = missed by A and hit by
    B. Under the null (no difference) ``b ~ Binomial(b + c, 1/2)``, and the two-sided exact p is
    ``min(1, 2 * P(X <= min(b, c)))``, ``X ~ Binomial(b + c, 1/2)`` (equal to scipy's
    ``binomtest(b, b + c, 0.5).pvalue``). It is summed in log space, so it stays accurate for
    large ``b + c``; ``p_value = 1`` when ``b + c == 0``.

    Args:
        hits_a, hits_b: ``(num_users,)`` 0/1 (or bool) outcomes of systems A and B for the same
            users in the same order, e.g. ``per_user_metric(ranks, "recall@10")``.

    Returns:
        ``{"a_only": b, "b_only": c, "p_value": p}``.

    Raises:
        ValueError: the arrays differ in length, are empty, not 1-D or not 0/1.
    """
    a = _check_binary_labels(_check_values(hits_a, "hits_a"), "hits_a").astype(bool)
    b = _check_binary_labels(_check_values(hits_b, "hits_b"), "hits_b").astype(bool)
    if a.shape != b.shape:
        raise ValueError(
            f"hits_a has {a.shape[0]} users but hits_b has {b.shape[0]}; a paired test needs "
            "the outcomes of both systems for the same users, in the same order"
        )
    a_only = int(np.sum(a & ~b))
    b_only = int(np.sum(~a & b))
    n = a_only + b_only
    if n == 0:
        p_value = 1.0
    else:
        i = np.arange(min(a_only, b_only) + 1)
        log_pmf = np.array(
            [math.lgamma(n + 1) - math.lgamma(j + 1) - math.lgamma(n - j + 1) for j in i.tolist()]
        ) - n * math.log(2.0)
        top = float(log_pmf.max())
        log_cdf = top + math.log(float(np.exp(log_pmf - top).sum()))
        p_value = min(1.0, 2.0 * math.exp(log_cdf))
    return {"a_only": a_only, "b_only": b_only, "p_value": p_value}


def compare_systems(
    ranks_a: Any,
    ranks_b: Any,
    ks: Sequence[int] | int = (10,),
    metrics: Sequence[str] = ("recall", "ndcg"),
    seed: int | None = 0,
    *,
    num_resamples: int = 10_000,
) -> dict[str, dict[str, float]]:
    """Paired comparison of two systems evaluated on the same users, for every metric and K.

    Args:
        ranks_a, ranks_b: ``(num_users,)`` 1-based target ranks of systems A and B (``0`` or
            ``inf`` = not retrieved) for the same users in the same order.
        ks: cut-offs, each an integer >= 1.
        metrics: any of ``"recall"`` and ``"ndcg"``.
        seed: bootstrap seed; every metric uses the same resampled users.
        num_resamples: number of bootstrap resamples (>= 1).

    Returns:
        ``{"recall@K": {...}, "ndcg@K": {...}}`` (metrics in the given order, then K), each with
        the :func:`paired_bootstrap` keys ``"difference"`` (A - B), ``"low"``, ``"high"``,
        ``"p_value"``; ``"recall@K"`` also has ``"mcnemar_p_value"``, the exact
        :func:`mcnemar_test` p on the per-user hits.

    Raises:
        ValueError: unknown metric, K < 1, invalid ranks, or ranks of different lengths.
    """
    ks = _check_ks(ks)
    if isinstance(metrics, str):
        metrics = (metrics,)
    metrics = tuple(metrics)
    if not metrics:
        raise ValueError("metrics must contain at least one of 'recall', 'ndcg'")
    for name in metrics:
        if name not in _PER_USER_METRICS:
            raise ValueError(f"unknown metric {name!r}; expected 'recall' or 'ndcg'")
    ra, rb = _check_ranks(ranks_a, "ranks_a"), _check_ranks(ranks_b, "ranks_b")
    if ra.shape != rb.shape:
        raise ValueError(
            f"ranks_a has {ra.shape[0]} users but ranks_b has {rb.shape[0]}; compare the two "
            "systems on the same users, in the same order"
        )
    out: dict[str, dict[str, float]] = {}
    for name in metrics:
        for k in ks:
            key = f"{name}@{k}"
            va, vb = per_user_metric(ra, key), per_user_metric(rb, key)
            result = paired_bootstrap(va, vb, num_resamples=num_resamples, seed=seed)
            if name == "recall":
                result["mcnemar_p_value"] = mcnemar_test(va, vb)["p_value"]
            out[key] = result
    return out
