"""Generic format for your own catalogue: an items file and an interactions file.

Items: JSON lines (``.jsonl``/``.json``) or CSV (``.csv``; ``.tsv`` is tab-separated), one row per
item, an id column (default ``item_id``) and any number of text columns::

    {"item_id": "B001", "title": "Digital caliper", "brand": "Mitutoyo"}

Interactions: CSV/TSV or JSON lines with a user column (default ``user_id``), an item column
(default ``item_id``) and optionally a timestamp column (default ``timestamp``; numbers or ISO 8601
dates). Without timestamps, file order is time order::

    user_id,item_id,timestamp
    u1,B001,1700000000
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

from .dataset import DataOptions, ItemTable, RecDataset, build_dataset
from .errors import DataFormatError
from .io import PathLike, iter_delimited, iter_json_lines, require_file
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


def _parse_time(value, path: Path, line: int, column: str) -> float | None:
    if value is None or value == "":
        return None
    if isinstance(value, (int, float)):
        return float(value)
    text = str(value).strip()
    try:
        return float(text)
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        raise DataFormatError(
            f"not a timestamp: {value!r} (use a number or an ISO 8601 date)", path, line, column
        ) from None


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
            file without that column means file order is time order.
        text_columns: attribute columns to keep; default: every column of the items file but the id.
    """
    items_path = require_file(items, "items")
    inter_path = require_file(interactions, "interactions")
    table: ItemTable | None = None
    for lineno, row in _rows(items_path, [item_column]):
        if table is None:
            columns = text_columns or [c for c in row if c != item_column]
            table = ItemTable(columns)
        if text_columns:
            missing = [c for c in text_columns if c not in row]
            if missing:
                raise DataFormatError("missing text column", items_path, lineno, field=missing[0])
        table.add(row[item_column], row, items_path, lineno)
    if table is None:
        raise DataFormatError("the item table is empty", items_path)

    def interactions_iter():
        use_time = timestamp_column is not None
        for lineno, row in _rows(inter_path, [user_column, item_column]):
            ts = None
            if use_time and timestamp_column in row:
                ts = _parse_time(row[timestamp_column], inter_path, lineno, timestamp_column)
            user, item = str(row[user_column]).strip(), str(row[item_column]).strip()
            if not user:
                raise DataFormatError("empty user id", inter_path, lineno, user_column)
            yield user, item, ts

    return build_dataset(
        name or items_path.stem.split(".")[0],
        table,
        interactions_iter(),
        options,
        source=str(items_path),
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
