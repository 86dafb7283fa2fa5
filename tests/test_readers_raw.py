"""Readers of raw public dumps: MovieLens (100k, 1m, latest), RecBole atomic files, Yelp, Amazon.

MovieLens and RecBole run on real ml-latest-small rows (the whole file, a slice, and the same
slice written in the ml-100k / ml-1m / RecBole layouts). Yelp and Amazon raw dumps are not in
shared/, so their rows are built here field for field after the published schemas, with business
names / product texts taken from the real rows in shared/ (yelp-items, amazon-scientific).
"""

from __future__ import annotations

import csv
import gzip
import json
import math
import re
from collections import defaultdict
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import quote

import pytest
from conftest import shared_path

from store_hf.data import DataFormatError, DataOptions, detect_format, get_reader
from store_hf.data.amazon import amazon_layout, locate_amazon, read_amazon
from store_hf.data.movielens import ML100K_GENRES, locate_movielens, read_movielens
from store_hf.data.recbole import locate_recbole, read_recbole
from store_hf.data.yelp import locate_yelp, read_yelp

ANY = DataOptions(min_sequence_length=1)


def sequences(ds) -> dict[str, list[str]]:
    return dict(zip(ds.sequences["user_id"], ds.sequences["item_ids"]))


def item(ds, item_id: str) -> dict[str, str]:
    return ds.items[ds.item_index()[item_id]]


def expected_sequences(ratings, catalogue, min_len=3) -> dict[str, list[str]]:
    """Chronological sequences computed independently: stable sort by timestamp."""
    per_user = defaultdict(list)
    for user, movie, _rating, ts in ratings:
        if movie in catalogue:
            per_user[user].append((float(ts), movie))
    out = {}
    for user, events in per_user.items():
        seq = [m for _, m in sorted(events, key=lambda e: e[0])]
        seq = [m for i, m in enumerate(seq) if i == 0 or m != seq[i - 1]]
        if len(seq) >= min_len:
            out[user] = seq
    return out


def write_lines(path: Path, lines, encoding="utf-8") -> Path:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "wt", encoding=encoding, newline="") as f:
        f.writelines(line + "\n" for line in lines)
    return path


# ------------------------------------------------------------------------------ MovieLens rows
SLICE_USERS = ["53", "147", "189", "194", "207", "257"]  # the six users with 20 ratings each
# Extra catalogue rows: Toy Story, non-ASCII titles, a title with a double quote, no genres.
EXTRA_MOVIES = ["1", "29", "73", "7789", "114335"]
ML1M_GENRES = {"Children": "Children's"}


@pytest.fixture(scope="module")
def ml_real():
    folder = shared_path("movielens-latest-small")
    with open(folder / "movies.csv", encoding="utf-8", newline="") as f:
        movies = {r["movieId"]: (r["title"], r["genres"]) for r in csv.DictReader(f)}
    with open(folder / "ratings.csv", encoding="utf-8", newline="") as f:
        ratings = [
            (r["userId"], r["movieId"], r["rating"], r["timestamp"]) for r in csv.DictReader(f)
        ]
    return folder, movies, ratings


@pytest.fixture(scope="module")
def ml_slice(ml_real):
    """Real rows of six users and the movies they rated (plus a few chosen extras)."""
    _, movies, ratings = ml_real
    ratings = [r for r in ratings if r[0] in SLICE_USERS]
    ids = list(dict.fromkeys([r[1] for r in ratings] + EXTRA_MOVIES))
    return {i: movies[i] for i in ids}, ratings


def write_latest(folder: Path, movies, ratings) -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "movies.csv", "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["movieId", "title", "genres"])
        w.writerows([i, t, g] for i, (t, g) in movies.items())
    with open(folder / "ratings.csv", "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["userId", "movieId", "rating", "timestamp"])
        w.writerows(ratings)
    return folder / "movies.csv", folder / "ratings.csv"


def _year(title: str) -> str:
    m = re.search(r"\((\d{4})\)\s*$", title)
    return m.group(1) if m else ""


def _int_rating(rating: str) -> str:
    return str(math.ceil(float(rating)))  # 100k / 1m ratings are whole stars 1..5


def write_100k(folder: Path, movies, ratings) -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    for movie_id, (title, genres) in movies.items():
        names = {ML1M_GENRES.get(g, g) for g in genres.split("|")}
        flags = ["1" if g in names else "0" for g in ML100K_GENRES]
        if "1" not in flags:
            flags[0] = "1"  # unknown
        year = _year(title)
        date = f"01-Jan-{year}" if year else ""
        url = "http://us.imdb.com/M/title-exact?" + quote(title)
        lines.append("|".join([movie_id, title, date, "", url, *flags]))
    write_lines(folder / "u.item", lines, encoding="latin-1")
    data = ["\t".join([u, m, _int_rating(r), t]) for u, m, r, t in ratings]
    write_lines(folder / "u.data", data, encoding="latin-1")
    return folder / "u.item", folder / "u.data"


def write_1m(folder: Path, movies, ratings) -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    for movie_id, (title, genres) in movies.items():
        names = [
            ML1M_GENRES.get(g, g)
            for g in genres.split("|")
            if g not in ("IMAX", "(no genres listed)")
        ]
        if names:  # ml-1m has no movie without genres
            lines.append(f"{movie_id}::{title}::{'|'.join(names)}")
    write_lines(folder / "movies.dat", lines, encoding="latin-1")
    data = [f"{u}::{m}::{_int_rating(r)}::{t}" for u, m, r, t in ratings]
    write_lines(folder / "ratings.dat", data, encoding="latin-1")
    return folder / "movies.dat", folder / "ratings.dat"


def write_recbole(
    folder: Path, movies, ratings, stem="ml-slice", timestamps=True
) -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    lines = ["item_id:token\tmovie_title:token_seq\trelease_year:token\tgenre:token_seq"]
    for movie_id, (title, genres) in movies.items():
        name = re.sub(r"\s*\(\d{4}\)\s*$", "", title)
        genre = " ".join(g for g in genres.split("|") if g != "(no genres listed)")
        lines.append(f"{movie_id}\t{name}\t{_year(title)}\t{genre}")
    write_lines(folder / f"{stem}.item", lines)
    if timestamps:
        inter = ["user_id:token\titem_id:token\trating:float\ttimestamp:float"]
        inter += [f"{u}\t{m}\t{r}\t{t}" for u, m, r, t in ratings]
    else:
        inter = ["user_id:token\titem_id:token\trating:float"] + [
            f"{u}\t{m}\t{r}" for u, m, r, _ in ratings
        ]
    write_lines(folder / f"{stem}.inter", inter)
    return folder / f"{stem}.item", folder / f"{stem}.inter"


# ------------------------------------------------------------------------------ MovieLens tests
def test_movielens_latest_small_whole_file(ml_real):
    folder, movies, ratings = ml_real
    ds = read_movielens(folder / "movies.csv", folder / "ratings.csv")
    assert (ds.num_items, ds.num_users, ds.num_interactions) == (9742, 610, 100836)
    assert ds.name == "movielens-latest-small"
    assert ds.attributes == ["title", "genres"]
    assert ds.drops == {}
    assert item(ds, "1") == {
        "item_id": "1",
        "title": "Toy Story (1995)",
        "genres": "Adventure, Animation, Children, Comedy, Fantasy",
    }
    assert item(ds, "11")["title"] == "American President, The (1995)"  # CSV quoting
    assert item(ds, "114335")["genres"] == ""  # "(no genres listed)"
    seqs = sequences(ds)
    assert seqs == expected_sequences(ratings, movies)
    # ratings.csv is sorted by movie id, not time: the reader must reorder.
    file_order = [m for u, m, _, _ in ratings if u == "1"]
    assert seqs["1"] != file_order and sorted(seqs["1"]) == sorted(file_order)


def test_movielens_latest_slice(tmp_path, ml_slice):
    movies, ratings = ml_slice
    items, inter = write_latest(tmp_path / "ml-latest-small", movies, ratings)
    ds = read_movielens(items, inter)
    assert (ds.num_items, ds.num_users, ds.num_interactions) == (len(movies), 6, 120)
    assert sequences(ds) == expected_sequences(ratings, movies)
    assert (
        item(ds, "29")["title"] == "City of Lost Children, The (Cité des enfants perdus, La) (1995)"
    )
    assert item(ds, "7789")["title"] == "11'09\"01 - September 11 (2002)"
    # Same slice with the most rated movie missing from the catalogue: its ratings are dropped.
    dropped = "163"
    n = sum(1 for r in ratings if r[1] == dropped)
    assert n == 2
    rest = {k: v for k, v in movies.items() if k != dropped}
    items, inter = write_latest(tmp_path / "missing", rest, ratings)
    ds = read_movielens(items, inter)
    assert ds.drops["interactions_unknown_item"] == n and ds.drops["unknown_item_ids"] == 1
    assert sequences(ds) == expected_sequences(ratings, rest)


def test_movielens_min_rating(tmp_path, ml_slice):
    movies, ratings = ml_slice
    items, inter = write_latest(tmp_path, movies, ratings)
    ds = read_movielens(items, inter, min_rating=4.0, options=ANY)
    kept = [r for r in ratings if float(r[2]) >= 4.0]
    assert ds.drops["below_min_rating"] == len(ratings) - len(kept)
    assert sequences(ds) == expected_sequences(kept, movies, min_len=1)


def test_movielens_100k_layout(tmp_path, ml_slice):
    movies, ratings = ml_slice
    items, inter = write_100k(tmp_path / "ml-100k", movies, ratings)
    assert "Cité".encode("latin-1") in items.read_bytes()  # really latin-1, not utf-8
    ds = read_movielens(items, inter)
    assert ds.name == "ml-100k"
    assert (ds.num_items, ds.num_users, ds.num_interactions) == (len(movies), 6, 120)
    assert (
        item(ds, "29")["title"] == "City of Lost Children, The (Cité des enfants perdus, La) (1995)"
    )
    assert item(ds, "29")["genres"] == "Adventure, Drama, Fantasy, Mystery, Sci-Fi"
    assert item(ds, "1")["genres"] == "Adventure, Animation, Children's, Comedy, Fantasy"
    assert item(ds, "114335")["genres"] == ""  # the 'unknown' flag
    assert sequences(ds) == expected_sequences(ratings, movies)
    ds = read_movielens(items, inter, min_rating=4, options=ANY)
    kept = [r for r in ratings if int(_int_rating(r[2])) >= 4]
    assert sequences(ds) == expected_sequences(kept, movies, min_len=1)


def test_movielens_1m_layout(tmp_path, ml_slice):
    movies, ratings = ml_slice
    items, inter = write_1m(tmp_path / "ml-1m", movies, ratings)
    ds = read_movielens(items, inter)
    catalogue = {k for k in movies if k != "114335"}
    assert ds.name == "ml-1m" and ds.num_items == len(catalogue)
    assert item(ds, "73")["title"] == "Misérables, Les (1995)"
    assert item(ds, "1")["genres"] == "Adventure, Animation, Children's, Comedy, Fantasy"
    assert item(ds, "33794")["genres"] == "Action, Crime"
    assert sequences(ds) == expected_sequences(ratings, catalogue)
    assert ds.drops == {}


def test_movielens_locate(tmp_path, ml_slice):
    movies, ratings = ml_slice
    assert locate_movielens(tmp_path) is None
    for layout, writer in (("100k", write_100k), ("1m", write_1m), ("latest", write_latest)):
        folder = tmp_path / layout
        items, inter = writer(folder, movies, ratings)
        assert locate_movielens(folder) == (items, inter)
        assert detect_format(folder) == ("movielens", items, inter)
    assert get_reader("movielens").read is read_movielens


def _ml_error(tmp_path, items: tuple[str, str], inter: tuple[str, str] | str, encoding="utf-8"):
    """Write ``(name, text)`` files (``inter`` may be a bare name: not written) and read them."""
    for name, text in (items, inter) if isinstance(inter, tuple) else (items,):
        (tmp_path / name).write_text(text, encoding=encoding)
    inter_name = inter[0] if isinstance(inter, tuple) else inter
    with pytest.raises(DataFormatError) as err:
        read_movielens(tmp_path / items[0], tmp_path / inter_name)
    return err.value


MOVIES_CSV = (
    "movieId,title,genres\n1,Toy Story (1995),Adventure|Animation\n2,Jumanji (1995),Adventure\n"
)
RATINGS_CSV = "userId,movieId,rating,timestamp\n1,1,4.0,964982703\n1,2,4.0,964981247\n"


def test_movielens_missing_file(tmp_path):
    err = _ml_error(tmp_path, ("movies.csv", MOVIES_CSV), "ratings.csv")
    assert "ratings.csv" in str(err) and "not found" in str(err)


def test_movielens_missing_column(tmp_path):
    err = _ml_error(
        tmp_path, ("movies.csv", MOVIES_CSV), ("ratings.csv", "userId,movieId,rating\n1,1,4.0\n")
    )
    assert err.field == "timestamp" and err.line == 1 and "ratings.csv:1" in str(err)


def test_movielens_non_numeric_timestamp(tmp_path):
    ratings = RATINGS_CSV + "1,1,3.0,yesterday\n"
    err = _ml_error(tmp_path, ("movies.csv", MOVIES_CSV), ("ratings.csv", ratings))
    assert "ratings.csv:4" in str(err) and err.field == "timestamp" and "yesterday" in str(err)


def test_movielens_non_finite_timestamp_and_rating(tmp_path):
    ratings = RATINGS_CSV + "1,1,3.0,nan\n"
    err = _ml_error(tmp_path, ("movies.csv", MOVIES_CSV), ("ratings.csv", ratings))
    assert str(err).endswith("ratings.csv:4: field 'timestamp': not a finite number: 'nan'")
    ratings = RATINGS_CSV + "1,1,nan,964982703\n"
    (tmp_path / "ratings.csv").write_text(ratings)
    with pytest.raises(DataFormatError, match=r"ratings.csv:4: field 'rating': not a finite"):
        read_movielens(tmp_path / "movies.csv", tmp_path / "ratings.csv", min_rating=3.0)


def test_movielens_malformed_lines(tmp_path):
    movies = "1::Toy Story (1995)::Animation|Children's|Comedy\n2::Jumanji (1995)\n"
    err = _ml_error(
        tmp_path, ("movies.dat", movies), ("ratings.dat", "1::1::5::978300760\n"), "latin-1"
    )
    assert "movies.dat:2" in str(err) and "expected 3 fields" in str(err)
    flags = "|".join(["0"] * 18 + ["x"])
    err = _ml_error(
        tmp_path, ("u.item", f"1|Toy Story (1995)|01-Jan-1995||http://x|{flags}\n"), ("u.data", "")
    )
    assert "u.item:1" in str(err) and err.field == "Western"
    item = "1|Toy Story (1995)|01-Jan-1995||http://x|" + "|".join(["0"] * 19) + "\n"
    err = _ml_error(tmp_path, ("u.item", item), ("u.data", "196\t1\t3\tlater\n"))
    assert "u.data:1" in str(err) and err.field == "timestamp"


def test_movielens_duplicate_and_empty_catalogue(tmp_path):
    err = _ml_error(
        tmp_path,
        ("movies.csv", MOVIES_CSV + "1,Toy Story again,Comedy\n"),
        ("ratings.csv", RATINGS_CSV),
    )
    assert "movies.csv:4" in str(err) and "duplicate item id '1'" in str(err)
    err = _ml_error(
        tmp_path, ("movies.csv", "movieId,title,genres\n"), ("ratings.csv", RATINGS_CSV)
    )
    assert "movies.csv" in str(err) and "empty" in str(err)
    err = _ml_error(tmp_path, ("films.csv", MOVIES_CSV), ("ratings.csv", RATINGS_CSV))
    assert "films.csv" in str(err)


# ------------------------------------------------------------------------------ RecBole tests
def test_recbole_from_real_rows(tmp_path, ml_slice):
    movies, ratings = ml_slice
    items, inter = write_recbole(tmp_path, movies, ratings)
    ds = read_recbole(items, inter)
    assert ds.name == "ml-slice"
    assert ds.attributes == ["movie_title", "release_year", "genre"]
    assert (ds.num_items, ds.num_users, ds.num_interactions) == (len(movies), 6, 120)
    assert item(ds, "1") == {
        "item_id": "1",
        "movie_title": "Toy Story",
        "release_year": "1995",
        "genre": "Adventure Animation Children Comedy Fantasy",
    }
    assert item(ds, "7789")["movie_title"] == "11'09\"01 - September 11"  # no CSV quoting
    assert sequences(ds) == expected_sequences(ratings, movies)
    rest = {k: v for k, v in movies.items() if k != "163"}
    items, inter = write_recbole(tmp_path / "missing", rest, ratings)
    assert read_recbole(items, inter).drops["interactions_unknown_item"] == 2


def test_recbole_without_timestamp_keeps_file_order(tmp_path, ml_slice):
    movies, ratings = ml_slice
    items, inter = write_recbole(tmp_path, movies, ratings, timestamps=False)
    ds = read_recbole(items, inter)
    assert sequences(ds)["53"] == [m for u, m, _, _ in ratings if u == "53"]


def test_recbole_locate(tmp_path, ml_slice):
    movies, ratings = ml_slice
    assert locate_recbole(tmp_path) is None
    items, inter = write_recbole(tmp_path, movies, ratings)
    assert locate_recbole(tmp_path) == (items, inter)
    assert detect_format(tmp_path) == ("recbole", items, inter)


ITEM = "item_id:token\tmovie_title:token_seq\tgenre:token_seq\n1\tToy Story\tAnimation Comedy\n2\tJumanji\tAdventure\n"
INTER = "user_id:token\titem_id:token\ttimestamp:float\n1\t1\t978300760\n1\t2\t978300761\n1\t1\t978300762\n"


def _recbole_error(tmp_path, item=ITEM, inter=INTER) -> DataFormatError:
    if item is not None:
        (tmp_path / "x.item").write_text(item)
    if inter is not None:
        (tmp_path / "x.inter").write_text(inter)
    with pytest.raises(DataFormatError) as err:
        read_recbole(tmp_path / "x.item", tmp_path / "x.inter")
    return err.value


def test_recbole_good_minimal(tmp_path):
    (tmp_path / "x.item").write_text(ITEM)
    (tmp_path / "x.inter").write_text(INTER)
    assert sequences(read_recbole(tmp_path / "x.item", tmp_path / "x.inter")) == {
        "1": ["1", "2", "1"]
    }


@pytest.mark.parametrize(
    "item, inter, where, field",
    [
        (None, INTER, "x.item", None),  # missing file
        (ITEM, None, "x.inter", None),
        ("item_id\ttitle:token\n1\tA\n", INTER, "x.item:1", "item_id"),  # no :type
        ("item_id:token\ttitle:text\n1\tA\n", INTER, "x.item:1", "title:text"),  # unknown type
        ("", INTER, "x.item:1", None),  # empty file
        (ITEM, "user_id:token\tmovie:token\n1\t1\n", "x.inter:1", "item_id"),  # missing column
        (ITEM, INTER + "2\t1\n", "x.inter:5", None),  # malformed line
        (ITEM, INTER + "2\t1\tnoon\n", "x.inter:5", "timestamp"),  # non-numeric timestamp
        (ITEM + "1\tToy Story 2\tComedy\n", INTER, "x.item:4", "item_id"),  # duplicate id
        ("item_id:token\tmovie_title:token_seq\n", INTER, "x.item", None),  # empty catalogue
        (ITEM, INTER + "2\t1\tnan\n", "x.inter:5", "timestamp"),  # non-finite timestamps
        (ITEM, INTER + "2\t1\t-inf\n", "x.inter:5", "timestamp"),
        (ITEM, INTER + "2\t1\t1e400\n", "x.inter:5", "timestamp"),
        ("item_id:token\tyear:float\n1\t1995\n2\t1995\n", INTER, "x.item", None),  # no text
        (ITEM, INTER.rsplit("1\t1\t", 1)[0], "x.inter", None),  # no user with 3 interactions
    ],
)
def test_recbole_bad_input(tmp_path, item, inter, where, field):
    err = _recbole_error(tmp_path, item, inter)
    assert where in str(err)
    assert err.field == field


# ------------------------------------------------------------------------------ Yelp rows
# Real business names and categories (shared/yelp-items); the other fields follow the schema.
YELP_BUSINESSES = [
    (
        "8D7Wq5Kd4aP0hJ0wX1T2ZQ",
        "The Great Greek",
        "1000 N Green Valley Pkwy, Ste 300",
        "Henderson",
        "NV",
        "89074",
        36.0463,
        -115.0848,
        4.5,
        381,
        1,
        "Diners, Greek, Mediterranean, Restaurants",
    ),
    (
        "hB3kfDxy0Y8xL1t0tOz7Ug",
        "Sal's Pizza",
        "1350 Pecos Rd",
        "Las Vegas",
        "NV",
        "89120",
        36.0727,
        -115.1009,
        4.0,
        112,
        1,
        "Food Delivery Services, Italian, Sandwiches, Food, Pizza, Restaurants",
    ),
    (
        "Z3oY4Qh9q1m7tCw5Xv8bNw",
        "Las Vegas Cigar Outlet",
        "3580 S Valley View Blvd",
        "Las Vegas",
        "NV",
        "89103",
        36.1241,
        -115.1913,
        4.5,
        27,
        0,
        "Tobacco Shops, Shopping",
    ),
    (
        "uTq0Vd7k2JmA9xB4cR1yHg",
        "  Weiss   Restaurant\tDeli Bakery ",
        "4801 W 2nd St",
        "Las Vegas",
        "NV",
        "89102",
        36.1502,
        -115.2066,
        3.5,
        58,
        1,
        "Restaurants, Delis, Food, Bakeries, Breakfast &amp; Brunch",
    ),
    (
        "f9NumwFMBDn751xgFiRbNA",
        "Village Pub &amp; Poker",
        "4655 N Durango Dr",
        "Las Vegas",
        "NV",
        "89129",
        36.2415,
        -115.2786,
        3.0,
        45,
        1,
        None,
    ),
]


def yelp_business(row) -> dict:
    bid, name, address, city, state, postal, lat, lon, stars, count, is_open, categories = row
    return {
        "business_id": bid,
        "name": name,
        "address": address,
        "city": city,
        "state": state,
        "postal_code": postal,
        "latitude": lat,
        "longitude": lon,
        "stars": stars,
        "review_count": count,
        "is_open": is_open,
        "attributes": {"BusinessAcceptsCreditCards": "True", "RestaurantsPriceRange2": "2"},
        "categories": categories,
        "hours": {"Monday": "11:0-21:0", "Tuesday": "11:0-21:0", "Friday": "11:0-22:0"},
    }


# (review_id, user, business index, stars, date); deliberately not in time order.
YELP_REVIEWS = [
    ("KU_O5udG6zpxOg-VcAEodg", "mh_-eMZ6K5RLWhZyISBhwA", 2, 3.0, "2018-07-07 22:09:11"),
    ("BiTunyQ73aT9WBnpR9DZGw", "mh_-eMZ6K5RLWhZyISBhwA", 0, 5.0, "2012-01-03 15:28:18"),
    ("saUsX_uimxRlCVr67Z4Jig", "mh_-eMZ6K5RLWhZyISBhwA", 1, 4.0, "2014-02-05 20:30:30"),
    ("AqPFMleE6RsU23_auESxiA", "OyoGAe7OKpv6SyGZT5g77Q", 3, 5.0, "2015-01-04 00:01:03"),
    ("Sx8TMOWLNuJBWer-0pcmoA", "OyoGAe7OKpv6SyGZT5g77Q", 4, 2.0, "2017-01-14 20:54:15"),
    ("JrIxlS1TzJ-iCu79ul40cQ", "OyoGAe7OKpv6SyGZT5g77Q", 0, 4.0, "2015-01-04 00:01:03"),
    ("6AxgBCNX_PNTOxmbRSwcKQ", "OyoGAe7OKpv6SyGZT5g77Q", 9, 4.0, "2016-05-28 01:47:19"),  # unknown
    ("_ZeMknuYdlQcUqng_Im3yg", "8g_iMtfSiwikVnbP2etR0A", 1, 5.0, "2015-09-23 23:10:31"),
]
UNKNOWN_BUSINESS = "gebiRewfieSdtt17PTW6Zg"


def yelp_review(row) -> dict:
    rid, user, idx, stars, date = row
    bid = YELP_BUSINESSES[idx][0] if idx < len(YELP_BUSINESSES) else UNKNOWN_BUSINESS
    return {
        "review_id": rid,
        "user_id": user,
        "business_id": bid,
        "stars": stars,
        "useful": 1,
        "funny": 0,
        "cool": 0,
        "text": "Great food and friendly staff, will come back.",
        "date": date,
    }


def write_yelp(
    folder: Path,
    business_name="business.json",
    review_name="review.json",
    businesses=None,
    reviews=None,
) -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    if businesses is None:
        businesses = [json.dumps(yelp_business(b)) for b in YELP_BUSINESSES]
    if reviews is None:
        reviews = [json.dumps(yelp_review(r)) for r in YELP_REVIEWS]
    return write_lines(folder / business_name, businesses), write_lines(
        folder / review_name, reviews
    )


def bid(i: int) -> str:
    return YELP_BUSINESSES[i][0]


# ------------------------------------------------------------------------------ Yelp tests
def test_yelp_reads_schema_rows(tmp_path):
    items, inter = write_yelp(tmp_path)
    ds = read_yelp(items, inter, options=ANY)
    assert ds.name == "yelp"
    assert ds.attributes == ["name", "city", "address", "state", "categories"]
    assert (ds.num_items, ds.num_users, ds.num_interactions) == (5, 3, 7)
    assert item(ds, bid(4))["name"] == "Village Pub & Poker"  # &amp; unescaped
    assert item(ds, bid(4))["categories"] == ""  # null categories
    assert item(ds, bid(3))["name"] == "Weiss Restaurant Deli Bakery"  # whitespace normalised
    assert item(ds, bid(3))["categories"].endswith("Breakfast & Brunch")
    assert item(ds, bid(1))["address"] == "1350 Pecos Rd" and item(ds, bid(1))["state"] == "NV"
    seqs = sequences(ds)
    assert seqs["mh_-eMZ6K5RLWhZyISBhwA"] == [bid(0), bid(1), bid(2)]  # by date
    assert seqs["OyoGAe7OKpv6SyGZT5g77Q"] == [bid(3), bid(0), bid(4)]  # date tie keeps file order
    assert ds.drops == {"interactions_unknown_item": 1, "unknown_item_ids": 1}
    # Default options: users with fewer than 3 reviews are dropped.
    assert read_yelp(items, inter).num_users == 2


def test_yelp_min_stars_and_gzip(tmp_path):
    folder = tmp_path / "yelp"
    items, inter = write_yelp(folder, "business.json.gz", "review.json.gz")
    ds = read_yelp(items, inter, options=ANY, min_stars=4)
    assert ds.drops["below_min_stars"] == 2
    assert sequences(ds)["mh_-eMZ6K5RLWhZyISBhwA"] == [bid(0), bid(1)]
    assert "OyoGAe7OKpv6SyGZT5g77Q" in sequences(ds)


def test_yelp_locate(tmp_path):
    assert locate_yelp(tmp_path) is None
    a = write_yelp(tmp_path / "a")
    assert locate_yelp(tmp_path / "a") == a
    b = write_yelp(
        tmp_path / "b", "yelp_academic_dataset_business.json", "yelp_academic_dataset_review.json"
    )
    assert locate_yelp(tmp_path / "b") == b
    assert detect_format(tmp_path / "b") == ("yelp", *b)
    c = write_yelp(tmp_path / "c", "business.json.gz", "review.json.gz")
    assert locate_yelp(tmp_path / "c") == c
    (tmp_path / "d").mkdir()
    write_lines(tmp_path / "d" / "business.json", [])
    assert locate_yelp(tmp_path / "d") is None


def _yelp_error(tmp_path, businesses=None, reviews=None) -> DataFormatError:
    items, inter = write_yelp(tmp_path, businesses=businesses, reviews=reviews)
    with pytest.raises(DataFormatError) as err:
        read_yelp(items, inter, options=ANY)
    return err.value


def _reviews(**change) -> list[str]:
    lines = [json.dumps(yelp_review(r)) for r in YELP_REVIEWS]
    for lineno, record in change.items():
        lines[int(lineno.removeprefix("line")) - 1] = (
            record if isinstance(record, str) else json.dumps(record)
        )
    return lines


def test_yelp_bad_input(tmp_path):
    items, inter = write_yelp(tmp_path)
    with pytest.raises(DataFormatError, match=r"review\.json.*not found"):
        read_yelp(items, tmp_path / "review.json.gz")
    no_date = {k: v for k, v in yelp_review(YELP_REVIEWS[1]).items() if k != "date"}
    err = _yelp_error(tmp_path, reviews=_reviews(line2=no_date))
    assert "review.json:2" in str(err) and err.field == "date"
    err = _yelp_error(tmp_path, reviews=_reviews(line3='{"review_id": "x", "user_id": '))
    assert "review.json:3" in str(err) and "malformed" in str(err)
    err = _yelp_error(
        tmp_path, reviews=_reviews(line4={**yelp_review(YELP_REVIEWS[3]), "date": "last week"})
    )
    assert "review.json:4" in str(err) and err.field == "date" and "last week" in str(err)
    businesses = [json.dumps(yelp_business(b)) for b in YELP_BUSINESSES]
    err = _yelp_error(tmp_path, businesses=businesses + [businesses[1]])
    assert (
        "business.json:6" in str(err) and "duplicate item id" in str(err) and "line 2" in str(err)
    )
    err = _yelp_error(tmp_path, businesses=businesses[:2] + ["{not json"])
    assert "business.json:3" in str(err)
    no_id = {k: v for k, v in yelp_business(YELP_BUSINESSES[0]).items() if k != "business_id"}
    err = _yelp_error(tmp_path, businesses=[json.dumps(no_id)])
    assert "business.json:1" in str(err) and err.field == "business_id"
    err = _yelp_error(tmp_path, businesses=[])
    assert "business.json" in str(err) and "empty" in str(err)


# ------------------------------------------------------------------------------ Amazon rows
# Real product texts from shared/amazon-scientific (Amazon 2018, Industrial & Scientific).
AMAZON_PRODUCTS = [
    (
        "B000FK4NRW",
        "Stanley TRA708T Sharpshooter 1/2-Inch Leg Length Staples, Steel (1000 Count).",
        "Stanley",
        ["Industrial & Scientific", "Fasteners", "Collated Fasteners", "Staples"],
        "Heavy-duty staples are ideal for jobs such as insulation, carpet underlaying and roofing felt.",
    ),
    (
        "B0002YFC6Y",
        "Titan Tools 11185 Telescoping Inspection Mirror.",
        "Titan Tools",
        ["Industrial & Scientific", "Test, Measure & Inspect", "Inspection & Analysis"],
        "1 x 2 Oval Mirror.",
    ),
    (
        "B000I1DD5W",
        "B&amp;K Precision 879B Dual Display Handheld Deluxe Universal LCR Meter with Backlit Display.",
        "B&amp;K Precision",
        ["Industrial & Scientific", "Test, Measure & Inspect"],
        "",
    ),
    (
        "B001B1NNZE",
        "Bessey BV-NVJ Multi-Purpose Vise Jaws (Jaws Only).",
        "Bessey",
        ["Industrial & Scientific", "Industrial Power & Hand Tools", "Workholding"],
        "Bessey Nylon Vise Jaws are designed to fit most 3 to 6 vise jaw.  The magnetic back keeps them in place.",
    ),
]


def meta_2014(asin, title, brand, cats, desc) -> str:
    record = {
        "asin": asin,
        "title": title,
        "price": 7.99,
        "imUrl": f"http://ecx.images-amazon.com/images/I/{asin}._SY300_.jpg",
        "related": {
            "also_bought": ["B0000530HU"],
            "also_viewed": ["B00006IV2F"],
            "bought_together": [],
        },
        "salesRank": {"Industrial & Scientific": 21683},
        "categories": [cats, cats[:2]],  # two category paths sharing a prefix
        "brand": brand,
        "description": desc,
    }
    return repr(record)  # Python literal with single quotes, as the 2014 files


def meta_2018(asin, title, brand, cats, desc) -> str:
    return json.dumps(
        {
            "category": cats,
            "tech1": "",
            "description": [desc, "Made in USA."] if desc else [],
            "fit": "",
            "title": title,
            "also_buy": ["B0000530HU"],
            "tech2": "",
            "brand": brand,
            "feature": ["Durable"],
            "rank": ">#21,683 in Industrial & Scientific (See top 100)",
            "also_view": [],
            "main_cat": "Industrial & Scientific",
            "similar_item": "",
            "date": "",
            "price": "$7.99",
            "asin": asin,
            "imageURL": [],
            "imageURLHighRes": [],
        }
    )


# (reviewer, product index, rating, unix time); not in time order. Index 9 = not in the metadata.
AMAZON_REVIEWS = [
    ("A2SUAM1J3GNN3B", 2, 5.0, 1389657600),
    ("A2SUAM1J3GNN3B", 0, 4.0, 1252800000),
    ("A2SUAM1J3GNN3B", 1, 2.0, 1325376000),
    ("A3CIUOJXQ5VDQ2", 3, 5.0, 1472688000),
    ("A3CIUOJXQ5VDQ2", 0, 3.0, 1401235200),
    ("A3CIUOJXQ5VDQ2", 9, 5.0, 1411257600),
    ("A3CIUOJXQ5VDQ2", 1, 5.0, 1401321600),
]


def _review_time(ts: int) -> str:
    d = datetime.fromtimestamp(ts, tz=timezone.utc)
    return f"{d.month:02d} {d.day}, {d.year}"


def asin(i: int) -> str:
    return AMAZON_PRODUCTS[i][0] if i < len(AMAZON_PRODUCTS) else "B00ZZZZZZZ"


def review_2014(user, i, rating, ts) -> str:
    return json.dumps(
        {
            "reviewerID": user,
            "asin": asin(i),
            "reviewerName": "J. McDonald",
            "helpful": [2, 3],
            "reviewText": "Works as described, sturdy and well made.",
            "overall": rating,
            "summary": "Does the job",
            "unixReviewTime": ts,
            "reviewTime": _review_time(ts),
        }
    )


def review_2018(user, i, rating, ts) -> str:
    return json.dumps(
        {
            "overall": rating,
            "verified": True,
            "reviewTime": _review_time(ts),
            "reviewerID": user,
            "asin": asin(i),
            "style": {"Size:": " 1000 Count"},
            "reviewerName": "Shelly F",
            "reviewText": "As advertised.",
            "summary": "Five Stars",
            "unixReviewTime": ts,
        }
    )


def write_amazon(
    folder: Path, layout: str, meta_name=None, review_name=None, meta=None, reviews=None
):
    folder.mkdir(parents=True, exist_ok=True)
    meta_fn, review_fn = (meta_2014, review_2014) if layout == "2014" else (meta_2018, review_2018)
    if meta_name is None:
        meta_name = "meta_Industrial_and_Scientific.json.gz"
    if review_name is None:
        review_name = (
            "reviews_Industrial_and_Scientific_5.json.gz"
            if layout == "2014"
            else "Industrial_and_Scientific_5.json.gz"
        )
    if meta is None:
        meta = [meta_fn(*p) for p in AMAZON_PRODUCTS]
    if reviews is None:
        reviews = [review_fn(*r) for r in AMAZON_REVIEWS]
    return write_lines(folder / meta_name, meta), write_lines(folder / review_name, reviews)


# ------------------------------------------------------------------------------ Amazon tests
def test_amazon_2014(tmp_path):
    items, inter = write_amazon(tmp_path, "2014")
    with gzip.open(items, "rt") as f:
        assert f.readline().startswith("{'asin': 'B000FK4NRW'")
    ds = read_amazon(items, inter, options=ANY)
    assert ds.name == "Industrial_and_Scientific"
    assert ds.attributes == ["title", "description", "brand", "categories"]
    assert (ds.num_items, ds.num_users, ds.num_interactions) == (4, 2, 6)
    row = item(ds, asin(0))
    assert row["categories"] == "Industrial & Scientific, Fasteners, Collated Fasteners, Staples"
    assert row["description"].startswith("Heavy-duty staples")
    assert item(ds, asin(2))["title"].startswith("B&K Precision 879B")
    assert item(ds, asin(2))["brand"] == "B&K Precision"
    assert "  " not in item(ds, asin(3))["description"]
    seqs = sequences(ds)
    assert seqs["A2SUAM1J3GNN3B"] == [asin(0), asin(1), asin(2)]
    assert seqs["A3CIUOJXQ5VDQ2"] == [asin(0), asin(1), asin(3)]
    assert ds.drops == {"interactions_unknown_item": 1, "unknown_item_ids": 1}


def test_amazon_2018_duplicate_asins_keep_first(tmp_path):
    meta = [meta_2018(*p) for p in AMAZON_PRODUCTS]
    repeat = meta_2018(asin(1), "Another title for the same asin", "Other", ["Other"], "")
    items, inter = write_amazon(tmp_path, "2018", meta=meta[:2] + [repeat, meta[1]] + meta[2:])
    ds = read_amazon(items, inter, options=ANY, min_rating=4)
    assert ds.num_items == 4
    assert ds.drops["duplicate_item_ids"] == 2
    assert ds.drops["below_min_rating"] == 2
    row = item(ds, asin(1))
    assert row["title"] == "Titan Tools 11185 Telescoping Inspection Mirror."
    assert row["description"] == "1 x 2 Oval Mirror., Made in USA."  # list joined
    assert (
        row["categories"]
        == "Industrial & Scientific, Test, Measure & Inspect, Inspection & Analysis"
    )
    assert item(ds, asin(2))["description"] == ""
    seqs = sequences(ds)
    assert seqs == {"A2SUAM1J3GNN3B": [asin(0), asin(2)], "A3CIUOJXQ5VDQ2": [asin(1), asin(3)]}


def test_amazon_layout_from_fields_not_names(tmp_path):
    # 2018 content under 2014-style file names and the other way round.
    a = write_amazon(
        tmp_path / "a", "2018", review_name="reviews_Industrial_and_Scientific_5.json.gz"
    )
    b = write_amazon(tmp_path / "b", "2014", review_name="Industrial_and_Scientific.json.gz")
    ds_a, ds_b = read_amazon(*a, options=ANY), read_amazon(*b, options=ANY)
    assert sequences(ds_a) == sequences(ds_b)
    assert ds_a.items["categories"] == ds_b.items["categories"]
    assert amazon_layout(json.loads(meta_2018(*AMAZON_PRODUCTS[0]))) == "2018"
    assert amazon_layout(eval(meta_2014(*AMAZON_PRODUCTS[0]))) == "2014"  # noqa: S307
    assert amazon_layout(json.loads(review_2014(*AMAZON_REVIEWS[0]))) == "2014"
    assert amazon_layout(json.loads(review_2018(*AMAZON_REVIEWS[0]))) == "2018"


def test_amazon_review_time_fallback(tmp_path):
    reviews = []
    for r in AMAZON_REVIEWS:
        record = json.loads(review_2014(*r))
        del record["unixReviewTime"]
        reviews.append(json.dumps(record))
    items, inter = write_amazon(tmp_path, "2014", reviews=reviews)
    assert sequences(read_amazon(items, inter, options=ANY))["A2SUAM1J3GNN3B"] == [
        asin(0),
        asin(1),
        asin(2),
    ]


def test_amazon_locate(tmp_path):
    assert locate_amazon(tmp_path) is None
    a = write_amazon(tmp_path / "a", "2014")
    write_lines(tmp_path / "a" / "reviews_Industrial_and_Scientific.json.gz", [])
    assert locate_amazon(tmp_path / "a") == a  # 5-core preferred
    assert detect_format(tmp_path / "a") == ("amazon", *a)
    b = write_amazon(tmp_path / "b", "2018", review_name="Industrial_and_Scientific.json.gz")
    assert locate_amazon(tmp_path / "b") == b
    (tmp_path / "c").mkdir()
    write_lines(tmp_path / "c" / "meta_Beauty.json.gz", [])
    assert locate_amazon(tmp_path / "c") is None


def _amazon_error(tmp_path, layout="2014", **kwargs) -> DataFormatError:
    items, inter = write_amazon(tmp_path, layout, **kwargs)
    with pytest.raises(DataFormatError) as err:
        read_amazon(items, inter, options=ANY)
    return err.value


def test_amazon_bad_input(tmp_path):
    with pytest.raises(DataFormatError, match=r"meta_Beauty\.json\.gz.*not found"):
        read_amazon(tmp_path / "meta_Beauty.json.gz", tmp_path / "reviews_Beauty_5.json.gz")
    meta = [meta_2014(*p) for p in AMAZON_PRODUCTS]
    err = _amazon_error(tmp_path, meta=meta[:2] + ["{'asin': 'B01', 'title': "] + meta[2:])
    assert "meta_Industrial_and_Scientific.json.gz:3" in str(err) and "malformed" in str(err)
    err = _amazon_error(tmp_path, meta=meta + ["{'title': 'no asin here'}"])
    assert ".json.gz:5" in str(err) and err.field == "asin"
    reviews = [review_2014(*r) for r in AMAZON_REVIEWS]
    bad = json.loads(reviews[2])
    bad["unixReviewTime"] = "soon"
    err = _amazon_error(tmp_path, reviews=reviews[:2] + [json.dumps(bad)])
    assert (
        "reviews_Industrial_and_Scientific_5.json.gz:3" in str(err)
        and err.field == "unixReviewTime"
    )
    del bad["asin"]
    err = _amazon_error(tmp_path, reviews=[json.dumps(bad)])
    assert "_5.json.gz:1" in str(err) and err.field == "asin"
    err = _amazon_error(tmp_path, meta=[])
    assert "meta_Industrial_and_Scientific.json.gz" in str(err) and "empty" in str(err)
