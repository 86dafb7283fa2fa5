"""MovieLens (GroupLens) releases in their three published layouts.

The layout is told from the file names::

    ml-100k  u.item    movie id|title|release date|video release date|IMDb URL|19 genre flags (latin-1)
                       1|Toy Story (1995)|01-Jan-1995||http://us.imdb.com/M/title-exact?Toy%20Story%20(1995)|0|0|0|1|1|1|0|...
             u.data    user id<TAB>item id<TAB>rating<TAB>timestamp
                       196	242	3	881250949
    ml-1m    movies.dat  MovieID::Title::Genres (latin-1)
                         1::Toy Story (1995)::Animation|Children's|Comedy
             ratings.dat UserID::MovieID::Rating::Timestamp
                         1::1193::5::978300760
    ml-latest, ml-latest-small, ml-20m, ml-25m
             movies.csv  movieId,title,genres (header line, CSV quoting, utf-8)
                         11,"American President, The (1995)",Comedy|Drama|Romance
             ratings.csv userId,movieId,rating,timestamp (header line)
                         1,1,4.0,964982703

Item text attributes: ``title`` and ``genres`` (the pipe list joined with ", "; "(no genres
listed)" in the csv releases and the ``unknown`` flag of ml-100k give the empty string). A user's
sequence is that user's ratings ordered by timestamp (ties keep file order). Duplicate movie ids
in the item file are an error.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Literal

from .dataset import DataOptions, ItemTable, RecDataset, build_dataset
from .errors import DataFormatError
from .io import PathLike, iter_delimited, iter_separated, parse_number, require_file
from .registry import Reader, register_reader

Layout = Literal["100k", "1m", "latest"]

#: Genre flags of ml-100k ``u.item``, in column order.
ML100K_GENRES = [
    "unknown",
    "Action",
    "Adventure",
    "Animation",
    "Children's",
    "Comedy",
    "Crime",
    "Documentary",
    "Drama",
    "Fantasy",
    "Film-Noir",
    "Horror",
    "Musical",
    "Mystery",
    "Romance",
    "Sci-Fi",
    "Thriller",
    "War",
    "Western",
]
ML100K_ITEM_FIELDS = ["movie id", "title", "release date", "video release date", "IMDb URL"]
ML100K_ITEM_FIELDS += ML100K_GENRES
ML100K_DATA_FIELDS = ["user id", "item id", "rating", "timestamp"]
ML1M_MOVIE_FIELDS = ["MovieID", "Title", "Genres"]
ML1M_RATING_FIELDS = ["UserID", "MovieID", "Rating", "Timestamp"]

#: File names (items, interactions) of each layout.
LAYOUT_FILES: dict[str, tuple[str, str]] = {
    "100k": ("u.item", "u.data"),
    "1m": ("movies.dat", "ratings.dat"),
    "latest": ("movies.csv", "ratings.csv"),
}

_NO_GENRES = "(no genres listed)"


def movielens_layout(items: PathLike) -> Layout:
    """Tell the layout from the item file name: ``u.item`` -> ``"100k"``, ``movies.dat`` -> ``"1m"``,
    ``movies.csv`` -> ``"latest"``."""
    file_name = Path(items).name.removesuffix(".gz")
    for layout, (item_name, _) in LAYOUT_FILES.items():
        if file_name == item_name:
            return layout  # type: ignore[return-value]
    known = ", ".join(names[0] for names in LAYOUT_FILES.values())
    raise DataFormatError(f"not a MovieLens item file name (expected one of {known})", path=items)


def _genres(pipe_list: str) -> str:
    genres = [g.strip() for g in pipe_list.split("|")]
    return ", ".join(g for g in genres if g and g != _NO_GENRES)


def _items_100k(path: Path, table: ItemTable) -> None:
    for lineno, row in iter_separated(path, "|", ML100K_ITEM_FIELDS, encoding="latin-1"):
        flags = []
        for genre in ML100K_GENRES:
            flag = row[genre].strip()
            if flag not in ("0", "1"):
                raise DataFormatError(
                    f"genre flag must be 0 or 1, got {flag!r}", path, lineno, genre
                )
            if flag == "1" and genre != "unknown":
                flags.append(genre)
        table.add(
            row["movie id"], {"title": row["title"], "genres": ", ".join(flags)}, path, lineno
        )


def _items_1m(path: Path, table: ItemTable) -> None:
    for lineno, row in iter_separated(path, "::", ML1M_MOVIE_FIELDS, encoding="latin-1"):
        values = {"title": row["Title"], "genres": _genres(row["Genres"])}
        table.add(row["MovieID"], values, path, lineno)


def _items_latest(path: Path, table: ItemTable) -> None:
    required = ["movieId", "title", "genres"]
    for lineno, row in iter_delimited(path, ",", required=required):
        table.add(
            row["movieId"], {"title": row["title"], "genres": _genres(row["genres"])}, path, lineno
        )


def _ratings(path: Path, layout: Layout) -> Iterator[tuple[int, str, str, str, str]]:
    """Yield ``(line, user, item, rating, timestamp)`` as raw strings."""
    if layout == "100k":
        rows = iter_separated(path, "\t", ML100K_DATA_FIELDS, encoding="latin-1")
        names = ML100K_DATA_FIELDS
    elif layout == "1m":
        rows = iter_separated(path, "::", ML1M_RATING_FIELDS, encoding="latin-1")
        names = ML1M_RATING_FIELDS
    else:
        names = ["userId", "movieId", "rating", "timestamp"]
        rows = iter_delimited(path, ",", required=names)
    user, item, rating, ts = names
    for lineno, row in rows:
        yield lineno, row[user], row[item], row[rating], row[ts]


def read_movielens(
    items: PathLike,
    interactions: PathLike,
    *,
    options: DataOptions | None = None,
    name: str | None = None,
    min_rating: float | None = None,
    layout: Layout | None = None,
) -> RecDataset:
    """Read a MovieLens release (ml-100k, ml-1m, ml-latest(-small), ml-20m, ml-25m).

    Example: ``read_movielens("ml-1m/movies.dat", "ml-1m/ratings.dat", min_rating=4)``.

    Args:
        items: ``u.item``, ``movies.dat`` or ``movies.csv``.
        interactions: ``u.data``, ``ratings.dat`` or ``ratings.csv``.
        options: cleaning options (k-core, minimum sequence length...).
        name: dataset label; default: the folder name (``ml-1m``), else ``"movielens"``.
        min_rating: implicit-feedback threshold, keep ratings ``>= min_rating``; the number removed
            is ``drops["below_min_rating"]``. Default ``None`` keeps every rating.
        layout: ``"100k"``, ``"1m"`` or ``"latest"``; default: told from the item file name.
    """
    items_path = require_file(items, "MovieLens item")
    inter_path = require_file(interactions, "MovieLens rating")
    if layout is None:
        layout = movielens_layout(items_path)
    elif layout not in LAYOUT_FILES:
        raise DataFormatError(
            f"unknown MovieLens layout {layout!r}; known: {list(LAYOUT_FILES)}", field="layout"
        )

    table = ItemTable(["title", "genres"])
    if layout == "100k":
        _items_100k(items_path, table)
    elif layout == "1m":
        _items_1m(items_path, table)
    else:
        _items_latest(items_path, table)

    below = 0
    ts_field = {"100k": "timestamp", "1m": "Timestamp", "latest": "timestamp"}[layout]
    rating_field = {"100k": "rating", "1m": "Rating", "latest": "rating"}[layout]

    def interactions_iter():
        nonlocal below
        for lineno, user, item, rating, ts in _ratings(inter_path, layout):
            if (
                min_rating is not None
                and parse_number(rating, inter_path, lineno, rating_field) < min_rating
            ):
                below += 1
                continue
            yield user.strip(), item.strip(), parse_number(ts, inter_path, lineno, ts_field)

    default_name = items_path.resolve().parent.name or "movielens"
    dataset = build_dataset(
        name or default_name,
        table,
        interactions_iter(),
        options,
        source=str(items_path),
        interactions_source=str(inter_path),
    )
    if below:
        dataset.drops["below_min_rating"] = below
    return dataset


def locate_movielens(directory: Path) -> tuple[Path, Path] | None:
    """Find ``u.item``/``u.data``, ``movies.dat``/``ratings.dat`` or ``movies.csv``/``ratings.csv``."""
    directory = Path(directory)
    for item_name, inter_name in LAYOUT_FILES.values():
        item_file, inter_file = directory / item_name, directory / inter_name
        if item_file.is_file() and inter_file.is_file():
            return item_file, inter_file
    return None


register_reader(
    Reader(
        "movielens",
        read_movielens,
        locate_movielens,
        "MovieLens ml-100k (u.item, u.data), ml-1m (movies.dat, ratings.dat), "
        "ml-latest/20m/25m (movies.csv, ratings.csv)",
    )
)
