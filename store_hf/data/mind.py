"""MIND (Microsoft News Dataset): ``news.tsv`` and ``behaviors.tsv``, no header lines.

``news.tsv``: news id, category, subcategory, title, abstract, url, title entities, abstract
entities (tab-separated). ``behaviors.tsv``: impression id, user id, time (``11/12/2019 2:14:46 PM``),
click history (space-separated news ids, possibly empty), impressions (``N123-1 N456-0``).

Each user's sequence is the click history of their earliest impression (MIND histories are the
clicks before the log period, so they are the same in every impression of a user) followed by the
clicked candidates of all their impressions in time order. The impressions themselves are kept for
the scoring (CTR) mode, with news that have no row in ``news.tsv`` removed from both histories and
candidate lists.
"""

from __future__ import annotations

import csv
import logging
from datetime import datetime
from pathlib import Path

from .dataset import DataOptions, ItemTable, RecDataset, build_dataset
from .errors import DataFormatError
from .io import PathLike, iter_delimited, require_file
from .registry import Reader, register_reader

logger = logging.getLogger(__name__)

NEWS_COLUMNS = [
    "news_id",
    "category",
    "subcategory",
    "title",
    "abstract",
    "url",
    "title_entities",
    "abstract_entities",
]
BEHAVIOR_COLUMNS = ["impression_id", "user_id", "time", "history", "impressions"]
ATTRIBUTES = ["title", "abstract", "category", "subcategory"]
_TIME_FORMAT = "%m/%d/%Y %I:%M:%S %p"


def read_mind(
    items: PathLike,
    interactions: PathLike,
    *,
    options: DataOptions | None = None,
    name: str | None = None,
) -> RecDataset:
    """Read a MIND split (small or large).

    Args:
        items: path of ``news.tsv``.
        interactions: path of ``behaviors.tsv``.

    Returns:
        A RecDataset with attributes title, abstract, category, subcategory and an ``impressions``
        table (candidates with 0/1 labels) for the scoring mode.
    """
    news_path = require_file(items, "news")
    behaviors_path = require_file(interactions, "behaviors")
    table = ItemTable(ATTRIBUTES)
    # MIND text contains stray quote characters: read fields verbatim.
    for lineno, row in iter_delimited(news_path, "\t", NEWS_COLUMNS, quoting=csv.QUOTE_NONE):
        table.add(row["news_id"], row, news_path, lineno)

    first_history: dict[str, tuple[datetime, list[str]]] = {}
    clicks: list[tuple[str, str, float]] = []
    impressions: list[dict] = []
    unknown: set[str] = set()
    dropped_candidates = 0
    for lineno, row in iter_delimited(
        behaviors_path, "\t", BEHAVIOR_COLUMNS, quoting=csv.QUOTE_NONE
    ):
        try:
            when = datetime.strptime(row["time"].strip(), _TIME_FORMAT)
        except ValueError:
            raise DataFormatError(
                f"bad time {row['time']!r} (expected like '11/12/2019 2:14:46 PM')",
                behaviors_path,
                lineno,
                "time",
            ) from None
        user = row["user_id"].strip()
        history = row["history"].split()
        if user not in first_history or when < first_history[user][0]:
            first_history[user] = (when, history)
        candidates, labels = [], []
        for token in row["impressions"].split():
            news_id, sep, label = token.rpartition("-")
            if not sep or label not in ("0", "1"):
                raise DataFormatError(
                    f"bad impression {token!r} (expected like 'N123-1')",
                    behaviors_path,
                    lineno,
                    "impressions",
                )
            if label == "1":
                clicks.append((user, news_id, when.timestamp()))
            if news_id in table.rows:
                candidates.append(news_id)
                labels.append(int(label))
            else:
                unknown.add(news_id)
                dropped_candidates += 1
        known_history = [n for n in history if n in table.rows]
        unknown.update(n for n in history if n not in table.rows)
        if candidates:
            impressions.append(
                {
                    "impression_id": row["impression_id"].strip(),
                    "user_id": user,
                    "history": known_history,
                    "candidates": candidates,
                    "labels": labels,
                }
            )

    def interactions_iter():
        # History clicks precede every impression of the user: give them the earliest time.
        for user, (when, history) in first_history.items():
            start = when.timestamp() - 1.0
            for news_id in history:
                yield user, news_id, start
        yield from clicks

    dataset = build_dataset(
        name or news_path.parent.name or "mind",
        table,
        interactions_iter(),
        options,
        impressions=impressions,
        source=str(news_path),
        interactions_source=str(behaviors_path),
    )
    if dropped_candidates:
        dataset.drops["impression_candidates_unknown_item"] = dropped_candidates
        logger.warning(
            "%s: dropped %d impression candidates without a news row",
            dataset.name,
            dropped_candidates,
        )
    return dataset


def locate_mind(directory: Path) -> tuple[Path, Path] | None:
    news, behaviors = directory / "news.tsv", directory / "behaviors.tsv"
    return (news, behaviors) if news.is_file() and behaviors.is_file() else None


register_reader(Reader("mind", read_mind, locate_mind, "MIND news.tsv + behaviors.tsv"))
