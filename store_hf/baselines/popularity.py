"""Non-personalised reference points: most-popular and uniformly random recommendations.

Both follow the same small interface as :class:`store_hf.baselines.SASRec`::

    model = MostPopular().fit(splits["train"], item_ids=dataset.item_ids)
    model.recommend(histories, k=10)          # -> list[list[str]]
    model.rank_targets(histories, targets)    # -> np.ndarray of 1-based ranks

History items are NOT excluded by default (``exclude_history=False``): STORE's evaluation ranks
the whole catalogue, and a user's next item can repeat an earlier one. With
``exclude_history=True`` the items of each history are removed from its list; a target that is
in its own history then gets rank 0 ("not retrieved").
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np

from .common import Rows, check_same_length, lookup, training_sequences


def _catalogue(counts: Counter[str], item_ids: Sequence[str] | None) -> list[str]:
    """The items that can be recommended: ``item_ids`` if given, else every item seen in training
    (first-seen order). Training items missing from an explicit catalogue are an error."""
    if item_ids is None:
        return list(counts)
    catalogue = list(item_ids)
    known = set(catalogue)
    if len(known) != len(catalogue):
        raise ValueError("item_ids contains duplicates")
    for item_id in counts:
        if item_id not in known:
            raise ValueError(f"training item {item_id!r} is not in item_ids")
    return catalogue


class MostPopular:
    """Recommends the items with the most training interactions, the same list for every user.

    Popularity counts each training interaction once: the rows are chained back into users'
    sequences (:func:`~store_hf.baselines.common.training_sequences`), so an item early in a long
    sequence is not counted again for every later prefix whose history contains it. Ties keep the
    catalogue order (``item_ids``, else first appearance in training), so the ranking is strict
    and deterministic.
    """

    def __init__(self) -> None:
        self.ranking: list[str] = []  # catalogue, most popular first
        self.counts: dict[str, int] = {}
        self._rank: dict[str, int] = {}  # item id -> 1-based rank

    def fit(self, rows: Rows, item_ids: Sequence[str] | None = None) -> MostPopular:
        """Count item occurrences in the training rows (histories + targets, each once)."""
        counts = Counter(i for seq in training_sequences(rows) for i in seq)
        catalogue = _catalogue(counts, item_ids)
        # sorted() is stable, so equal counts keep catalogue order
        self.ranking = sorted(catalogue, key=lambda i: -counts.get(i, 0))
        self.counts = {i: counts.get(i, 0) for i in self.ranking}
        self._rank = {item_id: r + 1 for r, item_id in enumerate(self.ranking)}
        return self

    def recommend(
        self, histories: Sequence[Sequence[str]], k: int, exclude_history: bool = False
    ) -> list[list[str]]:
        """Top-``k`` item ids per history (fewer when the catalogue is smaller)."""
        self._check_fitted()
        if not exclude_history:
            return [self.ranking[:k] for _ in histories]
        out = []
        for history in histories:
            seen = set(history)
            top: list[str] = []
            for item_id in self.ranking:
                if len(top) == k:
                    break
                if item_id not in seen:
                    top.append(item_id)
            out.append(top)
        return out

    def rank_targets(
        self,
        histories: Sequence[Sequence[str]],
        targets: Sequence[str],
        exclude_history: bool = False,
    ) -> np.ndarray:
        """1-based rank of each target in the popularity ranking, shape ``(len(targets),)``."""
        self._check_fitted()
        check_same_length(histories, targets)
        ranks = np.array(lookup(targets, self._rank, "target item id"), dtype=np.int64)
        if exclude_history:
            for row, (history, target) in enumerate(zip(histories, targets)):
                if target in history:
                    ranks[row] = 0
                else:
                    # every distinct history item ranked above the target moves it up one place
                    # (ids outside the catalogue were never ranked: rank 0 is skipped)
                    above = sum(1 for i in set(history) if 0 < self._rank.get(i, 0) < ranks[row])
                    ranks[row] -= above
        return ranks

    def _check_fitted(self) -> None:
        if not self.ranking:
            raise RuntimeError("call fit() first")


class RandomRecommender:
    """Uniformly random items, the floor any model must beat (Recall@K ~ K / num_items).

    Each call draws from a fresh ``numpy`` generator seeded with ``seed``, so the same call gives
    the same answer.
    """

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed
        self.item_ids: list[str] = []
        self._index: dict[str, int] = {}

    def fit(
        self, rows: Rows | None = None, item_ids: Sequence[str] | None = None
    ) -> RandomRecommender:
        """Set the catalogue: ``item_ids``, else every item seen in the training rows."""
        if rows is None and item_ids is None:
            raise ValueError("give training rows or item_ids")
        counts = (
            Counter(i for seq in training_sequences(rows) for i in seq)
            if rows is not None
            else Counter()
        )
        self.item_ids = _catalogue(counts, item_ids)
        self._index = {item_id: j for j, item_id in enumerate(self.item_ids)}
        return self

    def recommend(
        self, histories: Sequence[Sequence[str]], k: int, exclude_history: bool = False
    ) -> list[list[str]]:
        """``k`` distinct random item ids per history."""
        self._check_fitted()
        rng = np.random.default_rng(self.seed)
        out = []
        for history in histories:
            seen = set(history) if exclude_history else set()
            picks = (self.item_ids[j] for j in rng.permutation(len(self.item_ids)))
            top = [item_id for item_id in picks if item_id not in seen]
            out.append(top[:k])
        return out

    def rank_targets(
        self,
        histories: Sequence[Sequence[str]],
        targets: Sequence[str],
        exclude_history: bool = False,
    ) -> np.ndarray:
        """A uniform random rank in ``1..num_items`` per target (``1..num_items - |history|``
        with ``exclude_history``, 0 when the target is in its history)."""
        self._check_fitted()
        check_same_length(histories, targets)
        lookup(targets, self._index, "target item id")
        rng = np.random.default_rng(self.seed)
        sizes = np.full(len(targets), len(self.item_ids), dtype=np.int64)
        if exclude_history:
            for row, history in enumerate(histories):
                sizes[row] -= len({i for i in history if i in self._index})
        ranks = rng.integers(1, np.maximum(sizes, 1) + 1)
        if exclude_history:
            in_history = np.array([t in set(h) for h, t in zip(histories, targets)], dtype=bool)
            ranks[in_history] = 0
        return ranks.astype(np.int64)

    def _check_fitted(self) -> None:
        if not self.item_ids:
            raise RuntimeError("call fit() first")
