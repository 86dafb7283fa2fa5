"""Amazon product reviews, raw files of the 2014 and 2018 releases (McAuley et al.).

Both releases pair a review file with a metadata file, one record per line::

    2014 reviews (reviews_<Cat>_5.json.gz, reviews_<Cat>.json.gz), JSON:
        {"reviewerID": "A2SUAM1J3GNN3B", "asin": "0000013714", "reviewerName": "J. McDonald",
         "helpful": [2, 3], "reviewText": "...", "overall": 5.0, "summary": "...",
         "unixReviewTime": 1252800000, "reviewTime": "09 13, 2009"}
    2014 metadata (meta_<Cat>.json.gz), Python dict literals with single quotes:
        {'asin': '0000031852', 'title': 'Girls Ballet Tutu Zebra Hot Pink', 'price': 3.17,
         'imUrl': '...', 'related': {...}, 'salesRank': {'Toys & Games': 211836},
         'categories': [['Sports & Outdoors', 'Other Sports', 'Dance']], 'brand': 'Coxlures',
         'description': '...'}
    2018 reviews (<Cat>_5.json.gz, <Cat>.json.gz), JSON:
        {"overall": 5.0, "verified": true, "reviewTime": "09 1, 2016", "reviewerID": "A3CIUO...",
         "asin": "B0000530HU", "style": {...}, "reviewerName": "...", "reviewText": "...",
         "summary": "...", "unixReviewTime": 1472688000}
    2018 metadata (meta_<Cat>.json.gz), JSON:
        {"asin": "B0000530HU", "title": "...", "brand": "...", "category": ["Beauty", "Skin Care"],
         "description": ["...", "..."], "feature": [...], "rank": "...", "also_buy": [...],
         "price": "$7.99", "main_cat": "All Beauty", "date": "", ...}

The layout is told from the fields of each record, never from the file name: 2014 metadata keeps
its categories in ``categories`` (a list of category paths, flattened here and de-duplicated in
order), 2018 metadata in ``category`` (a flat list); ``description`` is a string (2014) or a list
of strings (2018, joined with ", "). Item text attributes: ``title``, ``description``, ``brand``,
``categories``.

Duplicate ``asin`` lines in the metadata are NOT an error: the 2018 metadata is known to repeat
some products. The first line for an asin is kept, later ones are skipped, counted in
``drops["duplicate_item_ids"]`` and logged once.

A user's sequence is that reviewer's reviews ordered by ``unixReviewTime`` (or, where a record
lacks it, by ``reviewTime`` ``"MM DD, YYYY"``); ties keep file order.
"""

from __future__ import annotations

import logging
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

from .dataset import DataOptions, ItemTable, RecDataset, build_dataset
from .errors import DataFormatError
from .io import PathLike, iter_json_lines, parse_number, require_file
from .registry import Reader, register_reader

logger = logging.getLogger(__name__)

#: Item text attributes produced for both layouts.
AMAZON_ATTRIBUTES = ["title", "description", "brand", "categories"]

_META_2014 = ("categories", "related", "salesRank", "imUrl")
_META_2018 = ("category", "main_cat", "also_buy", "also_view", "feature", "rank", "imageURL")
_REVIEW_2014 = ("helpful",)
_REVIEW_2018 = ("verified", "vote", "style", "image")


def amazon_layout(record: dict[str, Any]) -> Literal["2014", "2018"] | None:
    """Tell the release a metadata or review record comes from by its fields (``None``: no marker).

    Example: ``amazon_layout({"asin": "B1", "category": ["Beauty"]}) == "2018"``.
    """
    if any(k in record for k in _META_2014 + _REVIEW_2014):
        return "2014"
    if any(k in record for k in _META_2018 + _REVIEW_2018):
        return "2018"
    return None


def _categories(record: dict[str, Any]) -> list[str]:
    """Flat, order-preserving, de-duplicated category list of a 2014 or 2018 metadata record."""
    raw = record["categories"] if "categories" in record else record.get("category")
    if raw is None:
        return []
    if isinstance(raw, str):
        return [raw]
    flat: list[str] = []
    stack = [raw]
    # Depth-first flattening of the (at most two-level) category paths.
    while stack:
        value = stack.pop()
        if isinstance(value, (list, tuple)):
            stack.extend(reversed(value))
        elif value is not None:
            flat.append(str(value))
    return list(dict.fromkeys(flat))


def _timestamp(record: dict[str, Any], path: Path, line: int) -> float:
    if record.get("unixReviewTime") is not None:
        value = record["unixReviewTime"]
        if isinstance(value, bool):
            raise DataFormatError(f"not a number: {value!r}", path, line, "unixReviewTime")
        return parse_number(value, path, line, "unixReviewTime")
    if record.get("reviewTime") is not None:
        text = str(record["reviewTime"]).strip()
        try:
            return datetime.strptime(text, "%m %d, %Y").replace(tzinfo=timezone.utc).timestamp()
        except ValueError:
            raise DataFormatError(
                f"not a date: {text!r} (expected 'MM DD, YYYY')", path, line, "reviewTime"
            ) from None
    raise DataFormatError("missing field", path, line, "unixReviewTime")


def read_amazon(
    items: PathLike,
    interactions: PathLike,
    *,
    options: DataOptions | None = None,
    name: str | None = None,
    min_rating: float | None = None,
) -> RecDataset:
    """Read raw Amazon review and metadata files of the 2014 or the 2018 release.

    Example: ``read_amazon("meta_Beauty.json.gz", "reviews_Beauty_5.json.gz", min_rating=4)``.

    Args:
        items: path of ``meta_<Cat>.json(.gz)``.
        interactions: path of the review file (``reviews_<Cat>_5.json.gz``, ``<Cat>_5.json.gz``...).
        options: cleaning options (k-core, minimum sequence length...).
        name: dataset label; default: ``<Cat>`` from the metadata file name.
        min_rating: keep only reviews with ``overall >= min_rating``; the number removed is
            ``drops["below_min_rating"]``. Default: keep every review.
    """
    items_path = require_file(items, "Amazon metadata")
    inter_path = require_file(interactions, "Amazon review")

    table = ItemTable(AMAZON_ATTRIBUTES)
    duplicates = 0
    layouts: Counter[str] = Counter()
    for lineno, record in iter_json_lines(items_path, allow_python_literals=True):
        asin = record.get("asin")
        if asin is None or not str(asin).strip():
            raise DataFormatError("missing field", items_path, lineno, "asin")
        asin = str(asin).strip()
        if asin in table.rows:
            duplicates += 1
            continue
        layouts[amazon_layout(record) or "unknown"] += 1
        values = {
            "title": record.get("title"),
            "description": record.get("description"),
            "brand": record.get("brand"),
            "categories": _categories(record),
        }
        table.add(asin, values, items_path, lineno)
    if duplicates:
        logger.warning(
            "%s: skipped %d metadata lines repeating an asin (kept the first line of each)",
            items_path.name,
            duplicates,
        )
    logger.info("%s: metadata layouts %s", items_path.name, dict(layouts))

    below = 0

    def interactions_iter():
        nonlocal below
        for lineno, record in iter_json_lines(inter_path, allow_python_literals=True):
            for key in ("reviewerID", "asin"):
                if record.get(key) is None:
                    raise DataFormatError("missing field", inter_path, lineno, key)
            if min_rating is not None:
                if record.get("overall") is None:
                    raise DataFormatError("missing field", inter_path, lineno, "overall")
                if parse_number(record["overall"], inter_path, lineno, "overall") < min_rating:
                    below += 1
                    continue
            ts = _timestamp(record, inter_path, lineno)
            yield str(record["reviewerID"]), str(record["asin"]).strip(), ts

    default_name = _category(items_path) or "amazon"
    dataset = build_dataset(
        name or default_name,
        table,
        interactions_iter(),
        options,
        source=str(items_path),
        interactions_source=str(inter_path),
    )
    if duplicates:
        dataset.drops["duplicate_item_ids"] = duplicates
    if below:
        dataset.drops["below_min_rating"] = below
    return dataset


def _category(meta: Path) -> str | None:
    stem = meta.name.removesuffix(".gz").removesuffix(".json")
    return stem.removeprefix("meta_") if stem.startswith("meta_") else None


def locate_amazon(directory: Path) -> tuple[Path, Path] | None:
    """Find ``meta_<Cat>.json(.gz)`` and its review file, preferring the 5-core one.

    Review names tried, in order: ``reviews_<Cat>_5``, ``<Cat>_5``, ``reviews_<Cat>``, ``<Cat>``
    (each ``.json`` or ``.json.gz``).
    """
    directory = Path(directory)
    metas = sorted(directory.glob("meta_*.json")) + sorted(directory.glob("meta_*.json.gz"))
    for meta in metas:
        cat = _category(meta)
        if not cat:
            continue
        for stem in (f"reviews_{cat}_5", f"{cat}_5", f"reviews_{cat}", cat):
            for suffix in (".json", ".json.gz"):
                reviews = directory / f"{stem}{suffix}"
                if reviews.is_file():
                    return meta, reviews
    return None


register_reader(
    Reader(
        "amazon",
        read_amazon,
        locate_amazon,
        "Amazon reviews raw files, 2014 or 2018 release (meta_<Cat>.json.gz + review file)",
    )
)
