"""The one representation every reader produces: an item table and chronological user sequences."""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from datasets import Dataset

from .errors import DataFormatError
from .io import parse_id
from .text import clean_text

logger = logging.getLogger(__name__)

#: (user_id, item_id, timestamp or None). Without timestamps, file order is the time order.
Interaction = tuple[str, str, float | None]


@dataclass
class DataOptions:
    """Cleaning options shared by all readers.

    Args:
        min_sequence_length: users with fewer interactions (after the other filters) are dropped
            and counted. Leave-one-out needs 3: one training item, a validation and a test target.
        kcore: if set, repeatedly drop users and items with fewer than ``kcore`` interactions.
        consecutive_duplicates: ``"drop"`` collapses an item repeated back to back in a user's
            sequence (a double click, a re-rating) to one interaction; ``"keep"`` leaves it.
        drop_unused_items: remove catalogue items that no kept user interacted with.
    """

    min_sequence_length: int = 3
    kcore: int | None = None
    consecutive_duplicates: Literal["drop", "keep"] = "drop"
    drop_unused_items: bool = False

    def __post_init__(self) -> None:
        if self.consecutive_duplicates not in ("drop", "keep"):
            raise DataFormatError(
                f"must be 'drop' or 'keep', got {self.consecutive_duplicates!r}",
                field="consecutive_duplicates",
            )
        if self.min_sequence_length < 1:
            raise DataFormatError("must be >= 1", field="min_sequence_length")
        if self.kcore is not None and self.kcore < 1:
            raise DataFormatError("must be >= 1 or None", field="kcore")


@dataclass
class RecDataset:
    """A recommendation dataset in the package's common layout.

    Attributes:
        name: a short label (file stem or format name).
        items: ``datasets.Dataset`` with a string ``item_id`` column and one string column per
            text attribute (empty string where an item lacks it).
        sequences: ``datasets.Dataset`` with ``user_id`` (str) and ``item_ids`` (list of str, oldest
            first).
        impressions: for click logs (MIND), ``impression_id``, ``user_id``, ``history`` (list of str),
            ``candidates`` (list of str) and ``labels`` (list of int, 1 = clicked); else ``None``.
        drops: what cleaning removed, by reason (number of interactions, users or items).
    """

    name: str
    items: Dataset
    sequences: Dataset
    impressions: Dataset | None = None
    drops: dict[str, int] = field(default_factory=dict)

    @property
    def attributes(self) -> list[str]:
        """Names of the item text attributes, in table order."""
        return [c for c in self.items.column_names if c != "item_id"]

    @property
    def item_ids(self) -> list[str]:
        return self.items["item_id"]

    @property
    def num_items(self) -> int:
        return len(self.items)

    @property
    def num_users(self) -> int:
        return len(self.sequences)

    @property
    def num_interactions(self) -> int:
        return int(sum(len(s) for s in self.sequences["item_ids"]))

    def item_index(self) -> dict[str, int]:
        """Map item id -> row in ``items``."""
        return {item_id: i for i, item_id in enumerate(self.items["item_id"])}

    def statistics(self) -> dict[str, Any]:
        """Counts, sequence-length distribution and attribute coverage, as plain JSON types."""
        lengths = np.array([len(s) for s in self.sequences["item_ids"]], dtype=np.int64)
        stats: dict[str, Any] = {
            "name": self.name,
            "items": self.num_items,
            "users": self.num_users,
            "interactions": int(lengths.sum()),
            "density": float(lengths.sum() / max(1, self.num_items * self.num_users)),
            "sequence_length": _distribution(lengths),
            "attributes": {},
        }
        for attr in self.attributes:
            values = self.items[attr]
            words = np.array([len(v.split()) for v in values], dtype=np.int64)
            stats["attributes"][attr] = {
                "coverage": float(np.mean([bool(v) for v in values])) if values else 0.0,
                "mean_words": float(words.mean()) if len(words) else 0.0,
                "max_words": int(words.max()) if len(words) else 0,
            }
        if self.impressions is not None:
            sizes = np.array([len(c) for c in self.impressions["candidates"]], dtype=np.int64)
            clicks = int(sum(sum(lab) for lab in self.impressions["labels"]))
            stats["impressions"] = {
                "count": len(self.impressions),
                "candidates": _distribution(sizes),
                "click_rate": float(clicks / max(1, sizes.sum())),
            }
        stats["dropped"] = dict(self.drops)
        return stats


def _distribution(values: np.ndarray) -> dict[str, float]:
    if len(values) == 0:
        return {"min": 0, "p25": 0, "median": 0, "mean": 0.0, "p75": 0, "p90": 0, "max": 0}
    q = np.percentile(values, [25, 50, 75, 90])
    return {
        "min": int(values.min()),
        "p25": float(q[0]),
        "median": float(q[1]),
        "mean": round(float(values.mean()), 3),
        "p75": float(q[2]),
        "p90": float(q[3]),
        "max": int(values.max()),
    }


class ItemTable:
    """Collects item rows while a reader parses, refusing duplicate ids with file and line."""

    def __init__(self, attributes: list[str]) -> None:
        if "item_id" in attributes:
            # The table's id column is always called item_id: an attribute of that name would
            # silently replace the ids in RecDataset.items.
            raise DataFormatError(
                "'item_id' is the id column of the item table and cannot be a text attribute",
                field="item_id",
            )
        self.attributes = list(attributes)
        self.rows: dict[str, dict[str, str]] = {}
        self._where: dict[str, str] = {}

    def add(
        self,
        item_id: Any,
        values: Mapping[str, Any],
        path: Any = None,
        line: int | None = None,
        field: str = "item_id",
    ) -> None:
        """Add one item; ``field`` is the id column's name in the file, for error messages."""
        item_id = parse_id(item_id, path, line, field, what="item id")
        if item_id in self.rows:
            raise DataFormatError(
                f"duplicate item id {item_id!r} (first seen at {self._where[item_id]})",
                path,
                line,
                field=field,
            )
        self.rows[item_id] = {a: clean_text(values.get(a)) for a in self.attributes}
        self._where[item_id] = f"line {line}" if line is not None else "an earlier entry"

    def __len__(self) -> int:
        return len(self.rows)


def build_dataset(
    name: str,
    items: ItemTable,
    interactions: Iterable[Interaction],
    options: DataOptions | None = None,
    impressions: list[dict[str, Any]] | None = None,
    source: str | None = None,
    interactions_source: str | None = None,
) -> RecDataset:
    """Assemble a :class:`RecDataset` from parsed rows, applying the cleaning in ``options``.

    Order of cleaning: drop interactions with unknown items -> sort each user's interactions by
    timestamp (stable, so ties keep file order) -> collapse consecutive duplicates -> k-core ->
    drop short users. Every drop is counted in ``drops`` and logged once.

    ``source`` names the items file in errors about the catalogue (empty, no text);
    ``interactions_source`` the interactions file in errors about users (none left).
    A catalogue where no kept item has any text is refused: the model reads items through their
    text, and an item with none is only formatted as "(no text)".
    """
    options = options or DataOptions()
    if len(items) == 0:
        raise DataFormatError("the item table is empty", path=source)
    drops: Counter[str] = Counter()
    per_user: dict[str, list[tuple[float, int, str]]] = defaultdict(list)
    missing_ids: set[str] = set()
    for order, (user_id, item_id, ts) in enumerate(interactions):
        if item_id not in items.rows:
            drops["interactions_unknown_item"] += 1
            missing_ids.add(item_id)
            continue
        per_user[user_id].append((ts if ts is not None else 0.0, order, item_id))
    if missing_ids:
        drops["unknown_item_ids"] = len(missing_ids)
        logger.warning(
            "%s: dropped %d interactions referencing %d item ids that are not in the item table",
            name,
            drops["interactions_unknown_item"],
            len(missing_ids),
        )

    sequences: dict[str, list[str]] = {}
    for user_id, events in per_user.items():
        events.sort()
        seq = [item for _, _, item in events]
        if options.consecutive_duplicates == "drop":
            deduped = [item for i, item in enumerate(seq) if i == 0 or item != seq[i - 1]]
            drops["consecutive_duplicates"] += len(seq) - len(deduped)
            seq = deduped
        sequences[user_id] = seq
    if drops["consecutive_duplicates"]:
        logger.info(
            "%s: collapsed %d consecutive duplicate interactions",
            name,
            drops["consecutive_duplicates"],
        )

    removed_items: set[str] = set()
    if options.kcore:
        before = len(sequences)
        sequences = _kcore(sequences, options.kcore)
        kept = {i for s in sequences.values() for i in s}
        removed_items = {i for i in items.rows if i not in kept}
        drops["kcore_items"] = len(removed_items)
        drops["kcore_users"] = before - len(sequences)

    short = [u for u, s in sequences.items() if len(s) < options.min_sequence_length]
    for u in short:
        drops["short_sequence_users"] += 1
        drops["short_sequence_interactions"] += len(sequences.pop(u))
    if short:
        logger.warning(
            "%s: dropped %d users with fewer than %d interactions",
            name,
            len(short),
            options.min_sequence_length,
        )

    keep_ids = [i for i in items.rows if i not in removed_items]
    if options.drop_unused_items:
        used = {i for s in sequences.values() for i in s}
        drops["unused_items"] = sum(1 for i in keep_ids if i not in used)
        keep_ids = [i for i in keep_ids if i in used]
    if not keep_ids:
        raise DataFormatError("no items left after filtering", path=source)
    if not sequences:
        raise DataFormatError(
            f"no user has {options.min_sequence_length} or more interactions with known items after filtering",
            path=interactions_source or source,
        )
    _require_text(items, keep_ids, name, source)

    item_columns: dict[str, list[str]] = {"item_id": keep_ids}
    for attr in items.attributes:
        item_columns[attr] = [items.rows[i][attr] for i in keep_ids]
    impressions_ds = None
    if impressions is not None:
        impressions_ds = Dataset.from_list(impressions) if impressions else _empty_impressions()
    return RecDataset(
        name=name,
        items=Dataset.from_dict(item_columns),
        sequences=Dataset.from_dict(
            {"user_id": list(sequences), "item_ids": list(sequences.values())}
        ),
        impressions=impressions_ds,
        drops={k: int(v) for k, v in drops.items() if v},
    )


def _require_text(items: ItemTable, keep_ids: list[str], name: str, source: str | None) -> None:
    """Refuse a catalogue without any item text; warn about attributes that are empty everywhere.

    Without text the tokenizer has no content and no target to train on, and training failed deep
    inside with "expected length 64 but got length 0". Items with no text at all are fine as long as
    others have some: the templates format them as "(no text)".
    """
    if not items.attributes:
        raise DataFormatError(
            "the items have no text attributes (only an id column); the recommender needs item "
            "text such as a title",
            path=source,
        )
    filled = [a for a in items.attributes if any(items.rows[i][a] for i in keep_ids)]
    if not filled:
        raise DataFormatError(
            f"no item has any text: all of {items.attributes} are empty for every one of the "
            f"{len(keep_ids)} items; the recommender needs item text such as a title",
            path=source,
        )
    empty = [a for a in items.attributes if a not in filled]
    if empty:
        logger.warning(
            "%s: attribute(s) %s are empty for every item; they add nothing to the item text",
            name,
            empty,
        )


def _empty_impressions() -> Dataset:
    return Dataset.from_dict(
        {"impression_id": [], "user_id": [], "history": [], "candidates": [], "labels": []}
    )


def _kcore(sequences: dict[str, list[str]], k: int) -> dict[str, list[str]]:
    """Iteratively drop items and users with fewer than ``k`` interactions until stable."""
    while True:
        counts = Counter(i for s in sequences.values() for i in s)
        rare = {i for i, c in counts.items() if c < k}
        if rare:
            sequences = {u: [i for i in s if i not in rare] for u, s in sequences.items()}
        before = len(sequences)
        sequences = {u: s for u, s in sequences.items() if len(s) >= k}
        if not rare and len(sequences) == before:
            return sequences
