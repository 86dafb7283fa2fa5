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

import operator
from collections.abc import Hashable, Sequence
from typing import Any, Literal

import numpy as np

DEFAULT_KS: tuple[int, ...] = (1, 5, 10, 20)
DEFAULT_SCORING_KS: tuple[int, ...] = (1, 5)

__all__ = [
    "DEFAULT_KS",
    "DEFAULT_SCORING_KS",
    "RankingMetrics",
    "binary_auc",
    "impression_metrics",
    "ranking_metrics",
    "target_ranks",
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


def _check_ranks(ranks: Any, name: str = "ranks") -> np.ndarray:
    """Validate 1-based ranks (0 or inf = not retrieved); return float64 with inf for misses."""
    r = _to_numpy(ranks)
    if r.dtype == object or not (
        np.issubdtype(r.dtype, np.number) or np.issubdtype(r.dtype, np.bool_)
    ):
        raise ValueError(f"{name} must be numeric, got dtype {r.dtype}")
    r = r.astype(np.float64)
    if r.ndim != 1:
        raise ValueError(f"{name} must be 1-D (num_users,), got shape {tuple(r.shape)}")
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
