"""Generic format for your own catalogue: an items file and an interactions file.

Items: JSON lines (``.jsonl``/``.json``) or CSV (``.csv``; ``.tsv`` is tab-separated), one row per
item, an id column (default ``item_id``) and any number of text columns::

    {"item_id": "B001", "title": "Digital caliper", "brand": "Mitutoyo"}

JSON lines rows need not share keys: the text columns are every key seen in any row, and an item
without one of them gets an empty value. At least one item must have some text.

Interactions: CSV/TSV or JSON lines with a user column (default ``user_id``), an item column
(default ``item_id``) and optionally a timestamp column (default ``timestamp``; numbers or ISO 8601
dates). Without timestamps, file order is time order; with the column, every row needs a finite
timestamp. Ids are strings or integers, never null::

    user_id,item_id,timestamp
    u1,B001,1700000000
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from .dataset import DataOptions, Interaction, ItemTable, RecDataset, build_dataset
from .errors import DataFormatError
from .io import PathLike, iter_delimited, iter_json_lines, parse_id, require_file
from .registry import Reader, register_reader

_JSON_SUFFIXES = {".jsonl", ".json", ".ndjson"}


def _rows(path: Path, required: list[str]) -> Iterator[tuple[int, dict]]:
    suffixes = [s for s in path.suffixes if s != ".gz"]
    suffix = suffixes[-1].lower() if suffixes else ""
    if suffix in _JSON_SUFFIXES:
        for lineno, record in iter_json_lines(path):
            for col in required:
                if col not in record:
                    raise DataFormatError(
                        f"missing field; the record has {sorted(record)}", path, lineno, field=col
                    )
            yield lineno, record
    elif suffix in (".csv", ".tsv", ".txt"):
        yield from iter_delimited(path, "\t" if suffix == ".tsv" else ",", required=required)
    else:
        raise DataFormatError(
            f"unknown file type {suffix!r}: use .jsonl/.json (JSON lines) or .csv/.tsv", path
        )


def _parse_time(value: Any, path: Path, line: int, column: str) -> float | None:
    """A timestamp cell as seconds; ``None`` for an empty cell (JSON null, "" or blanks)."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise DataFormatError(
            f"not a timestamp: {value!r} (use a number or an ISO 8601 date)", path, line, column
        )
    if isinstance(value, (int, float)):
        seconds = float(value)
    else:
        text = value.strip()
        try:
            seconds = float(text)
        except ValueError:
            try:
                seconds = datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
            except ValueError:
                raise DataFormatError(
                    f"not a timestamp: {value!r} (use a number or an ISO 8601 date)",
                    path,
                    line,
                    column,
                ) from None
    # float() accepts "nan", "inf" and overflows "1e400" to inf; none of them can be ordered.
    if not math.isfinite(seconds):
        raise DataFormatError(f"not a finite timestamp: {value!r}", path, line, column)
    return seconds


def _item_table(path: Path, item_column: str, text_columns: list[str] | None) -> ItemTable:
    """Read the items file; its text columns are the union of every row's keys.

    JSON lines rows need not share keys: taking the first row's keys would drop an attribute for
    every item whenever row 1 lacks it. Columns are kept in first-seen order (for CSV, the header's);
    an item without a column gets an empty value.
    """
    rows = list(_rows(path, [item_column]))
    if not rows:
        raise DataFormatError("the items file has no rows", path)
    seen: dict[str, None] = {}
    for _, row in rows:
        seen.update(dict.fromkeys(row))
    seen.pop(item_column, None)
    if text_columns:
        missing = [c for c in text_columns if c not in seen]
        if missing:
            raise DataFormatError(
                f"text column not found in any row; the rows have {list(seen)}",
                path,
                field=missing[0],
            )
        columns = list(text_columns)
    else:
        columns = list(seen)
    if "item_id" in columns:
        raise DataFormatError(
            f"a text column is named 'item_id' while the id column is {item_column!r}; "
            "rename one of them or pass item_column='item_id'",
            path,
            field="item_id",
        )
    table = ItemTable(columns)
    for lineno, row in rows:
        table.add(row[item_column], row, path, lineno, field=item_column)
    return table


def read_generic(
    items: PathLike,
    interactions: PathLike,
    *,
    options: DataOptions | None = None,
    name: str | None = None,
    item_column: str = "item_id",
    user_column: str = "user_id",
    timestamp_column: str | None = "timestamp",
    text_columns: list[str] | None = None,
) -> RecDataset:
    """Read a catalogue in the generic items + interactions layout.

    Args:
        items: items file (JSON lines or CSV/TSV).
        interactions: interactions file (JSON lines or CSV/TSV).
        item_column / user_column / timestamp_column: column names; ``timestamp_column=None`` or a
            file without that column means file order is time order. Where the column exists,
            every row needs a finite timestamp, or every row is empty (then file order is used).
        text_columns: attribute columns to keep; default: every column of the items file but the
            id (the union over all rows for JSON lines).

    Raises:
        DataFormatError: naming file, line and column, for a null, empty or non-scalar id, an
            empty, non-numeric or non-finite timestamp, an items or interactions file without
            rows, and a catalogue where no item has any text.
    """
    items_path = require_file(items, "items")
    inter_path = require_file(interactions, "interactions")
    table = _item_table(items_path, item_column, text_columns)

    def interactions_iter() -> Iterator[Interaction]:
        use_time = timestamp_column is not None
        # First line with and first line without a timestamp: rows of both kinds cannot be put in
        # one time order (an empty cell used to become 0, the start of the sequence).
        timed_line: int | None = None
        untimed_line: int | None = None
        count = 0
        for lineno, row in _rows(inter_path, [user_column, item_column]):
            count += 1
            ts = None
            if use_time:
                ts = _parse_time(row.get(timestamp_column), inter_path, lineno, timestamp_column)
                if ts is None:
                    untimed_line = untimed_line or lineno
                else:
                    timed_line = timed_line or lineno
                if timed_line is not None and untimed_line is not None:
                    raise DataFormatError(
                        f"empty timestamp, but line {timed_line} has one: rows with and without "
                        "a time cannot be ordered together",
                        inter_path,
                        untimed_line,
                        timestamp_column,
                    )
            user = parse_id(row[user_column], inter_path, lineno, user_column, "user id")
            item = parse_id(row[item_column], inter_path, lineno, item_column, "item id")
            yield user, item, ts
        if not count:
            # Without this the error was "no user has 3 or more interactions", naming the items file.
            raise DataFormatError("the interactions file has no rows", inter_path)

    return build_dataset(
        name or items_path.stem.split(".")[0],
        table,
        interactions_iter(),
        options,
        source=str(items_path),
        interactions_source=str(inter_path),
    )


def locate_generic(directory: Path) -> tuple[Path, Path] | None:
    for items_stem, inter_stem in (("items", "interactions"), ("items", "inter")):
        for ext in (".jsonl", ".csv", ".tsv", ".json"):
            for ext2 in (".csv", ".jsonl", ".tsv", ".json"):
                a, b = directory / (items_stem + ext), directory / (inter_stem + ext2)
                if a.is_file() and b.is_file():
                    return a, b
    return None


register_reader(
    Reader(
        "generic",
        read_generic,
        locate_generic,
        "items.jsonl|csv + interactions.csv|jsonl (your own data)",
    )
)
