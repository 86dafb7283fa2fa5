"""CTR scoring metrics over impressions (MIND style): AUC, MRR, NDCG@k, global AUC and GAUC.

Definitions and tie handling: see :mod:`store_hf.metrics`.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Any, Literal

import numpy as np

from ._checks import (
    _check_binary_labels,
    _check_ks,
    _check_list_of_lists,
    _check_scores,
    _to_numpy,
)

DEFAULT_SCORING_KS: tuple[int, ...] = (1, 5)


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
