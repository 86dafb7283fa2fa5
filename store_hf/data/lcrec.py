"""LC-Rec / LETTER json: ``<name>.item.json`` and ``<name>.inter.json`` (Amazon, Yelp sets of
semantic-ID papers).

``item.json`` maps an item id to its attributes, ``{"0": {"title": ..., "description": ...}}``;
``inter.json`` maps a user id to that user's item ids in time order, ``{"0": [0, 1, 2]}``.
"""

from __future__ import annotations

from pathlib import Path

from .dataset import DataOptions, ItemTable, RecDataset, build_dataset
from .errors import DataFormatError
from .io import PathLike, parse_id, read_json, require_file
from .registry import Reader, register_reader


def read_lcrec(
    items: PathLike,
    interactions: PathLike,
    *,
    options: DataOptions | None = None,
    name: str | None = None,
    attributes: list[str] | None = None,
) -> RecDataset:
    """Read an LC-Rec/LETTER dataset.

    Args:
        items: path of ``<name>.item.json``.
        interactions: path of ``<name>.inter.json``.
        attributes: attribute names to keep; default: every key seen in the item file, in first-seen
            order.
    """
    items_path = require_file(items, "item")
    inter_path = require_file(interactions, "interaction")
    raw_items = read_json(items_path)
    if not isinstance(raw_items, dict):
        raise DataFormatError("expected a JSON object mapping item id -> attributes", items_path)
    if attributes is None:
        seen: dict[str, None] = {}
        for attrs in raw_items.values():
            if isinstance(attrs, dict):
                seen.update(dict.fromkeys(attrs))
        attributes = list(seen)
    table = ItemTable(attributes)
    for item_id, attrs in raw_items.items():
        if not isinstance(attrs, dict):
            raise DataFormatError(f"item {item_id!r}: expected an object of attributes", items_path)
        table.add(item_id, attrs, items_path)

    raw_inter = read_json(inter_path)
    if not isinstance(raw_inter, dict):
        raise DataFormatError(
            "expected a JSON object mapping user id -> list of item ids", inter_path
        )

    def interactions_iter():
        for user_id, seq in raw_inter.items():
            if not isinstance(seq, list):
                raise DataFormatError(f"user {user_id!r}: expected a list of item ids", inter_path)
            for item_id in seq:
                # parse_id: a null in a sequence would otherwise become the item "None"
                yield (
                    str(user_id),
                    parse_id(item_id, inter_path, None, f"user {user_id}", "item id"),
                    None,
                )

    stem = items_path.name.removesuffix(".item.json")
    return build_dataset(
        name or stem,
        table,
        interactions_iter(),
        options,
        source=str(items_path),
        interactions_source=str(inter_path),
    )


def locate_lcrec(directory: Path) -> tuple[Path, Path] | None:
    for item_file in sorted(directory.glob("*.item.json")):
        inter_file = item_file.with_name(item_file.name.removesuffix(".item.json") + ".inter.json")
        if inter_file.is_file():
            return item_file, inter_file
    return None


register_reader(
    Reader(
        "lcrec",
        read_lcrec,
        locate_lcrec,
        "LC-Rec/LETTER json (<name>.item.json, <name>.inter.json)",
    )
)
