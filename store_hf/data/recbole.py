"""RecBole atomic files: ``<name>.item`` and ``<name>.inter``, tab-separated with typed headers.

Every header cell is ``field:type`` with type ``token``, ``token_seq``, ``float`` or
``float_seq``; cells are not quoted (RecBole reads them with ``QUOTE_NONE``)::

    ml-1m.item:   item_id:token	movie_title:token_seq	release_year:token	genre:token_seq
                  1	Toy Story	1995	Animation Children's Comedy
    ml-1m.inter:  user_id:token	item_id:token	rating:float	timestamp:float
                  1	1193	5	978300760

Item text attributes are every ``token``/``token_seq`` column of the ``.item`` file except the
item id, named without the ``:type`` suffix (``movie_title``); ``token_seq`` values (space
separated tokens) are kept as text. A user's sequence is ordered by the timestamp column when the
``.inter`` file has one (ties keep file order), else by file order. Duplicate item ids in the
``.item`` file are an error.
"""

from __future__ import annotations

import csv
from pathlib import Path

from .dataset import DataOptions, ItemTable, RecDataset, build_dataset
from .errors import DataFormatError
from .io import PathLike, iter_delimited, open_text, parse_number, require_file
from .registry import Reader, register_reader

#: Column types of RecBole atomic files; the first two are text.
RECBOLE_TYPES = ("token", "token_seq", "float", "float_seq")
_TEXT_TYPES = ("token", "token_seq")


def read_recbole_header(path: PathLike) -> list[tuple[str, str, str]]:
    """Return ``(header cell, field name, type)`` for each column of a RecBole atomic file.

    Example: ``"item_id:token\\ttitle:token_seq"`` -> ``[("item_id:token", "item_id", "token"),
    ("title:token_seq", "title", "token_seq")]``.
    """
    with open_text(path) as f:
        first = f.readline()
    if not first.strip():
        raise DataFormatError("file is empty (no header line)", path, 1)
    columns = []
    for cell in first.rstrip("\r\n").split("\t"):
        cell = cell.strip().lstrip("\ufeff")
        field, sep, kind = cell.rpartition(":")
        if not sep or not field:
            raise DataFormatError(
                "header cell has no ':type' suffix (expected e.g. 'item_id:token')", path, 1, cell
            )
        if kind not in RECBOLE_TYPES:
            raise DataFormatError(
                f"unknown RecBole type {kind!r}; known: {list(RECBOLE_TYPES)}", path, 1, cell
            )
        columns.append((cell, field, kind))
    return columns


def _column(
    columns: list[tuple[str, str, str]], field: str, path: Path, required: bool
) -> str | None:
    for cell, name, _ in columns:
        if name == field:
            return cell
    if required:
        header = [cell for cell, _, _ in columns]
        raise DataFormatError(
            f"missing column '{field}:token'; the header has {header}", path, 1, field
        )
    return None


def read_recbole(
    items: PathLike,
    interactions: PathLike,
    *,
    options: DataOptions | None = None,
    name: str | None = None,
    user_field: str = "user_id",
    item_field: str = "item_id",
    time_field: str = "timestamp",
) -> RecDataset:
    """Read a RecBole dataset from its ``.item`` and ``.inter`` atomic files.

    Example: ``read_recbole("ml-1m/ml-1m.item", "ml-1m/ml-1m.inter")``.

    Args:
        items: path of ``<name>.item``.
        interactions: path of ``<name>.inter``.
        options: cleaning options (k-core, minimum sequence length...).
        name: dataset label; default: the file stem (``ml-1m``).
        user_field, item_field, time_field: field names (without type) of the user id, item id
            and timestamp columns, as RecBole's ``USER_ID_FIELD``/``ITEM_ID_FIELD``/``TIME_FIELD``.
    """
    items_path = require_file(items, "RecBole item")
    inter_path = require_file(interactions, "RecBole interaction")

    item_columns = read_recbole_header(items_path)
    item_cell = _column(item_columns, item_field, items_path, required=True)
    text = [
        (cell, field)
        for cell, field, kind in item_columns
        if kind in _TEXT_TYPES and cell != item_cell
    ]
    table = ItemTable([field for _, field in text])
    rows = iter_delimited(items_path, "\t", required=[item_cell], quoting=csv.QUOTE_NONE)
    for lineno, row in rows:
        table.add(row[item_cell], {field: row[cell] for cell, field in text}, items_path, lineno)

    inter_columns = read_recbole_header(inter_path)
    user_cell = _column(inter_columns, user_field, inter_path, required=True)
    inter_item_cell = _column(inter_columns, item_field, inter_path, required=True)
    time_cell = _column(inter_columns, time_field, inter_path, required=False)

    def interactions_iter():
        required = [c for c in (user_cell, inter_item_cell, time_cell) if c is not None]
        for lineno, row in iter_delimited(
            inter_path, "\t", required=required, quoting=csv.QUOTE_NONE
        ):
            ts = (
                None
                if time_cell is None
                else parse_number(row[time_cell], inter_path, lineno, time_field)
            )
            yield row[user_cell].strip(), row[inter_item_cell].strip(), ts

    stem = items_path.name.removesuffix(".gz").removesuffix(".item")
    return build_dataset(
        name or stem,
        table,
        interactions_iter(),
        options,
        source=str(items_path),
        interactions_source=str(inter_path),
    )


def locate_recbole(directory: Path) -> tuple[Path, Path] | None:
    """Find ``<name>.item`` with a ``<name>.inter`` beside it."""
    directory = Path(directory)
    for item_file in sorted(directory.glob("*.item")):
        inter_file = item_file.with_suffix(".inter")
        if inter_file.is_file():
            return item_file, inter_file
    return None


register_reader(
    Reader(
        "recbole", read_recbole, locate_recbole, "RecBole atomic files (<name>.item, <name>.inter)"
    )
)
