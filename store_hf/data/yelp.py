"""Yelp Open Dataset (academic dataset): ``business.json`` and ``review.json``, JSON lines.

The published schema, one object per line::

    business.json: {"business_id": "Pns2l4eNsfO8kk83dixA6A", "name": "Abby Rappoport, LAC, CMQ",
                    "address": "1616 Chapala St, Ste 2", "city": "Santa Barbara", "state": "CA",
                    "postal_code": "93101", "latitude": 34.43, "longitude": -119.71, "stars": 5.0,
                    "review_count": 7, "is_open": 0, "attributes": {...},
                    "categories": "Doctors, Acupuncture, Health & Medical", "hours": null}
    review.json:   {"review_id": "KU_O5udG6zpxOg-VcAEodg", "user_id": "mh_-eMZ6K5RLWhZyISBhwA",
                    "business_id": "XQfwVwDr-v0ZS3_CbbE5Xw", "stars": 3.0, "useful": 0, "funny": 0,
                    "cool": 0, "text": "...", "date": "2018-07-07 22:09:11"}

Items are businesses with the text attributes ``name``, ``city``, ``address``, ``state`` and
``categories`` (a comma-separated string, or null). A user's sequence is that user's reviews
ordered by ``date`` (read as UTC; ties keep file order). The files may be gzipped, and may carry
the names of the official tarball (``yelp_academic_dataset_business.json``...).
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

from .dataset import DataOptions, ItemTable, RecDataset, build_dataset
from .errors import DataFormatError
from .io import PathLike, iter_json_lines, parse_number, require_file
from .registry import Reader, register_reader

#: Business fields kept as item text attributes.
YELP_ATTRIBUTES = ["name", "city", "address", "state", "categories"]

_PREFIXES = ("", "yelp_academic_dataset_")


def parse_yelp_date(value: object, path: PathLike, line: int, field: str = "date") -> float:
    """Parse a Yelp ``date`` (``"2018-07-07 22:09:11"`` or ``"2018-07-07"``) to UTC epoch seconds."""
    if not isinstance(value, str):
        raise DataFormatError(f"expected a date string, got {value!r}", path, line, field)
    text = value.strip()
    for fmt in ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d"):
        try:
            return datetime.strptime(text, fmt).replace(tzinfo=timezone.utc).timestamp()
        except ValueError:
            continue
    raise DataFormatError(
        f"not a date: {value!r} (expected 'YYYY-MM-DD HH:MM:SS')", path, line, field
    )


def read_yelp(
    items: PathLike,
    interactions: PathLike,
    *,
    options: DataOptions | None = None,
    name: str | None = None,
    min_stars: float | None = None,
) -> RecDataset:
    """Read the Yelp academic dataset.

    Example: ``read_yelp("yelp/business.json", "yelp/review.json", min_stars=4)``.

    Args:
        items: path of ``business.json`` (or ``.json.gz``).
        interactions: path of ``review.json`` (or ``.json.gz``).
        options: cleaning options (k-core, minimum sequence length...).
        name: dataset label; default ``"yelp"``.
        min_stars: keep only reviews with ``stars >= min_stars`` (implicit positive feedback); the
            number removed is ``drops["below_min_stars"]``. Default: keep every review.

    Duplicate ``business_id`` lines are an error (the published file has none).
    """
    items_path = require_file(items, "Yelp business")
    inter_path = require_file(interactions, "Yelp review")

    table = ItemTable(YELP_ATTRIBUTES)
    for lineno, record in iter_json_lines(items_path):
        if record.get("business_id") is None:
            raise DataFormatError("missing field", items_path, lineno, "business_id")
        table.add(record["business_id"], record, items_path, lineno)

    below = 0

    def interactions_iter():
        nonlocal below
        for lineno, record in iter_json_lines(inter_path):
            for key in ("user_id", "business_id", "date"):
                if key not in record or record[key] is None:
                    raise DataFormatError("missing field", inter_path, lineno, key)
            if min_stars is not None:
                if "stars" not in record:
                    raise DataFormatError("missing field", inter_path, lineno, "stars")
                if parse_number(record["stars"], inter_path, lineno, "stars") < min_stars:
                    below += 1
                    continue
            ts = parse_yelp_date(record["date"], inter_path, lineno)
            yield str(record["user_id"]), str(record["business_id"]).strip(), ts

    dataset = build_dataset(
        name or "yelp",
        table,
        interactions_iter(),
        options,
        source=str(items_path),
        interactions_source=str(inter_path),
    )
    if below:
        dataset.drops["below_min_stars"] = below
    return dataset


def _find(directory: Path, kind: str) -> Path | None:
    for prefix in _PREFIXES:
        for suffix in (".json", ".json.gz"):
            candidate = directory / f"{prefix}{kind}{suffix}"
            if candidate.is_file():
                return candidate
    return None


def locate_yelp(directory: Path) -> tuple[Path, Path] | None:
    """Find ``business.json(.gz)`` and ``review.json(.gz)`` (or the ``yelp_academic_dataset_*`` names)."""
    directory = Path(directory)
    business = _find(directory, "business")
    review = _find(directory, "review")
    if business is None or review is None:
        return None
    return business, review


register_reader(
    Reader(
        "yelp",
        read_yelp,
        locate_yelp,
        "Yelp academic dataset (business.json, review.json; JSON lines, optionally gzipped)",
    )
)
