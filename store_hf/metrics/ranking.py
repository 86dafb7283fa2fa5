"""Top-K retrieval metrics: one held-out target per user, Recall@K (= HitRate@K) and NDCG@K.

With ``r`` the 1-based rank of the target in the user's ranked list:
``Recall@K = 1[r <= K]``, ``NDCG@K = 1 / log2(r + 1)`` if ``r <= K`` else 0, averaged over
users; rank 0 or ``inf`` = not retrieved (see :mod:`store_hf.metrics` for duplicates).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ._checks import _check_ks, _check_list_of_lists, _check_ranks

DEFAULT_KS: tuple[int, ...] = (1, 5, 10, 20)


def target_ranks(
    recommended: Sequence[Sequence[str]],
    targets: Sequence[str],
    *,
    dedupe: bool = True,
    exclude: Sequence[Sequence[str]] | None = None,
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
        exclude: per user, item ids removed from the list before ranking (e.g. the user's
            history, so that items already consumed take no position); a target in its own
            ``exclude`` gets rank 0.

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
    if exclude is not None and len(exclude) != len(targets):
        raise ValueError(
            f"exclude has {len(exclude)} lists but targets has {len(targets)} items; give one "
            "list of items to exclude per target"
        )
    ranks = np.zeros(len(targets), dtype=np.int64)
    for u, (items, target) in enumerate(zip(recommended, targets)):
        if isinstance(items, (str, bytes)):
            raise ValueError(
                f"recommended[{u}] is a string ({items!r}); each entry must be a list of item ids"
            )
        if not isinstance(items, list):  # tuples, numpy arrays, torch tensors
            items = items.tolist() if hasattr(items, "tolist") else list(items)
        if exclude is not None and len(exclude[u]):
            dropped = set(exclude[u])
            if target in dropped:
                continue
            items = [i for i in items if i not in dropped]
        try:
            first = items.index(target)  # C-level scan, first occurrence
        except ValueError:
            continue
        # Distinct items before the first hit (C-level set build); duplicates take no position.
        ranks[u] = (len(set(items[:first])) if dedupe else first) + 1
    return ranks


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
