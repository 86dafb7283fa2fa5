"""Comparing systems evaluated on the same users: per-user values, confidence intervals of one
system's mean (bootstrap, Wilson) and paired tests of two systems (bootstrap, exact McNemar)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from statistics import NormalDist
from typing import Any

import numpy as np

from ._checks import (
    _check_binary_labels,
    _check_confidence,
    _check_ks,
    _check_num_resamples,
    _check_ranks,
    _check_values,
)

# Resampled (resample, user) entries held at once by the bootstraps: 2**21 float64 = 16 MiB.
_BOOTSTRAP_CHUNK_ELEMENTS = 1 << 21
_PER_USER_METRICS = ("recall", "ndcg")


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

    The p-value is the two-sided bootstrap p over the resampled mean differences ``d*``, with
    the add-one correction of a Monte Carlo p-value:
    ``min(1, 2 * (min(count(d* <= 0), count(d* >= 0)) + 1) / (num_resamples + 1))``, i.e. about
    the smallest ``alpha`` at which the ``1 - alpha`` percentile interval excludes 0. It is never
    0: when no resample reaches 0 it is ``2 / (num_resamples + 1)``, the smallest p this many
    resamples can support (report it as ``p < 0.001`` at 10,000 resamples, not as an exact
    value). When the two systems agree on every user, ``p_value = 1``.

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
        crossing = min(int(np.sum(means <= 0)), int(np.sum(means >= 0)))
        p_value = min(1.0, 2.0 * (crossing + 1) / (means.size + 1))
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
