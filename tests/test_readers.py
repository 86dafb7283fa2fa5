"""LC-Rec json, MIND and generic readers on real rows, including bad input."""

import csv
import json

import pytest
from conftest import shared_path

from store_hf.data import DataFormatError, DataOptions, detect_format, read_dataset
from store_hf.data.lcrec import read_lcrec
from store_hf.data.mind import read_mind


# ---------------------------------------------------------------- LC-Rec json (embedded dataset)
def test_embedded_dataset_matches_published_statistics(embedded):
    stats = embedded.statistics()
    assert (stats["items"], stats["users"], stats["interactions"]) == (4344, 8317, 58492)
    assert stats["sequence_length"]["min"] == 5 and stats["sequence_length"]["max"] == 78
    assert (
        stats["sequence_length"]["median"] == 6
        and abs(stats["sequence_length"]["mean"] - 7.03) < 0.01
    )
    assert embedded.attributes == ["title", "description", "brand", "categories"]
    # 123 items have an empty description, 12 no brand (data README).
    assert sum(not d for d in embedded.items["description"]) == 123
    assert sum(not b for b in embedded.items["brand"]) == 12
    assert embedded.sequences["item_ids"][1] == ["9", "10", "11", "12", "6"]  # file order kept
    assert embedded.drops == {}


def test_embedded_text_is_unescaped(embedded):
    raw = json.loads((shared_or_embedded_items()).read_text())
    escaped = [i for i, a in raw.items() if "&amp;" in a["categories"]]
    assert escaped, "the real file has HTML entities in categories"
    row = embedded.items[embedded.item_index()[escaped[0]]]
    assert "&amp;" not in row["categories"] and "&" in row["categories"]
    plusmn = next(i for i, a in raw.items() if "&plusmn;" in a["description"])
    assert "\u00b1" in embedded.items[embedded.item_index()[plusmn]]["description"]
    assert (
        sum("  " in v for a in raw.values() for v in a.values()) > 100
    )  # raw text has runs of spaces
    assert not any("  " in t for a in embedded.attributes for t in embedded.items[a])


def shared_or_embedded_items():
    from store_hf.data import EMBEDDED_DATASET_DIR

    return EMBEDDED_DATASET_DIR / "Scientific.item.json"


def _write_lcrec(tmp_path, items: dict, inter: dict, raw_items: str | None = None):
    (tmp_path / "X.item.json").write_text(raw_items if raw_items is not None else json.dumps(items))
    (tmp_path / "X.inter.json").write_text(json.dumps(inter))
    return tmp_path / "X.item.json", tmp_path / "X.inter.json"


def test_lcrec_slice_drops_unknown_items(tmp_path, embedded):
    items = {
        r["item_id"]: {a: r[a] for a in embedded.attributes}
        for r in embedded.items.select(range(40))
    }
    inter = {"0": ["0", "1", "2", "3", "4"], "1": ["5", "999999", "6", "7"], "2": ["8", "9"]}
    ds = read_lcrec(*_write_lcrec(tmp_path, items, inter))
    assert ds.num_items == 40 and ds.num_users == 2  # user 2 is too short
    assert ds.sequences["item_ids"][1] == ["5", "6", "7"]
    assert ds.drops["interactions_unknown_item"] == 1 and ds.drops["short_sequence_users"] == 1
    assert detect_format(tmp_path)[0] == "lcrec"


def test_lcrec_bad_input(tmp_path):
    items_path, inter_path = _write_lcrec(
        tmp_path, {}, {"0": [1, 2, 3]}, raw_items='{"0": {"title": "a"},\n "1": oops}'
    )
    with pytest.raises(DataFormatError, match=r"X.item.json:2: malformed JSON"):
        read_lcrec(items_path, inter_path)
    items_path, inter_path = _write_lcrec(tmp_path, {}, {"0": [1, 2, 3]})
    with pytest.raises(DataFormatError, match="X.item.json: the item table is empty"):
        read_lcrec(items_path, inter_path)
    with pytest.raises(DataFormatError, match="nope.inter.json: interaction file not found"):
        read_lcrec(items_path, tmp_path / "nope.inter.json")


def test_yelp_items_in_lcrec_format():
    items = shared_path("yelp-items", "Yelp.item.json")
    ds = read_lcrec(
        items,
        shared_path("amazon-scientific", "Scientific.inter.json"),
        options=DataOptions(min_sequence_length=1),
    )
    assert ds.num_items == 20033 and ds.attributes == ["title", "description"]


# ---------------------------------------------------------------- MIND
def test_mind_subset():
    folder = shared_path("mind-small-subset")
    ds = read_dataset(folder)
    assert ds.attributes == ["title", "abstract", "category", "subcategory"]
    assert ds.num_items == 2000
    assert 200 <= ds.num_users <= 1000  # "a few hundred users with 3 or more clicks"
    assert ds.drops["interactions_unknown_item"] > 100_000  # only ~4% of ids have text
    imp = ds.impressions
    assert len(imp) > 0 and all(
        len(c) == len(lab) for c, lab in zip(imp["candidates"], imp["labels"])
    )
    known = set(ds.item_ids)
    assert all(c in known for cands in imp["candidates"][:200] for c in cands)


def _mind_rows(n_news=6):
    folder = shared_path("mind-small-subset")
    news = (folder / "news.tsv").read_text().splitlines()[:n_news]
    return folder, news


def test_mind_sequence_is_history_then_clicks_in_time_order(tmp_path):
    _, news = _mind_rows()
    ids = [line.split("\t")[0] for line in news]
    (tmp_path / "news.tsv").write_text("\n".join(news) + "\n")
    behaviors = [
        f"2\tU1\t11/13/2019 9:00:00 AM\t{ids[0]} {ids[1]}\t{ids[4]}-1 {ids[5]}-0 N0-1",
        f"1\tU1\t11/12/2019 8:00:00 PM\t{ids[0]} {ids[1]}\t{ids[2]}-1 {ids[3]}-0",
        "3\tU2\t11/12/2019 8:00:00 PM\t\tN0-1",
    ]
    (tmp_path / "behaviors.tsv").write_text("\n".join(behaviors) + "\n")
    ds = read_mind(tmp_path / "news.tsv", tmp_path / "behaviors.tsv")
    assert ds.sequences["user_id"] == ["U1"]
    assert ds.sequences["item_ids"][0] == [ids[0], ids[1], ids[2], ids[4]]
    imp = {r["impression_id"]: r for r in ds.impressions}
    assert imp["2"]["candidates"] == [ids[4], ids[5]] and imp["2"]["labels"] == [1, 0]
    assert "3" not in imp  # its only candidate has no news row
    assert ds.drops["impression_candidates_unknown_item"] == 2


def test_mind_bad_input(tmp_path):
    _, news = _mind_rows()
    (tmp_path / "news.tsv").write_text("\n".join(news) + "\n")
    (tmp_path / "behaviors.tsv").write_text(
        "1\tU1\t11/12/2019 8:00:00 PM\t\tN1-1\n2\tU1\tyesterday\t\tN1-1\n"
    )
    with pytest.raises(
        DataFormatError, match=r"behaviors.tsv:2: field 'time': bad time 'yesterday'"
    ):
        read_mind(tmp_path / "news.tsv", tmp_path / "behaviors.tsv")
    (tmp_path / "behaviors.tsv").write_text("1\tU1\t11/12/2019 8:00:00 PM\t\tN1-yes\n")
    with pytest.raises(DataFormatError, match=r"behaviors.tsv:1: field 'impressions'"):
        read_mind(tmp_path / "news.tsv", tmp_path / "behaviors.tsv")
    (tmp_path / "news.tsv").write_text("\n".join(news[:2]) + "\nN1\tnews\tonly three fields\n")
    with pytest.raises(DataFormatError, match=r"news.tsv:3: expected 8 fields, found 3"):
        read_mind(tmp_path / "news.tsv", tmp_path / "behaviors.tsv")
    (tmp_path / "news.tsv").write_text("\n".join([news[0], news[1], news[0]]) + "\n")
    with pytest.raises(DataFormatError, match=r"news.tsv:3: field 'item_id': duplicate item id"):
        read_mind(tmp_path / "news.tsv", tmp_path / "behaviors.tsv")


# ---------------------------------------------------------------- generic
def _generic_files(tmp_path, embedded, n_items=20, items_format="jsonl", inter_format="csv"):
    rows = embedded.items.select(range(n_items))
    if items_format == "jsonl":
        items = tmp_path / "items.jsonl"
        items.write_text(
            "\n".join(
                json.dumps({"asin": r["item_id"], "title": r["title"], "brand": r["brand"]})
                for r in rows
            )
            + "\n"
        )
    else:
        items = tmp_path / "items.csv"
        with open(items, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["asin", "title", "brand"])
            for r in rows:
                w.writerow([r["item_id"], r["title"], r["brand"]])
    inter_rows = []
    for u, seq in zip(embedded.sequences["user_id"][:50], embedded.sequences["item_ids"][:50]):
        for t, item in enumerate(seq):
            inter_rows.append({"uid": u, "asin": item, "ts": 1_600_000_000 + 1000 * t})
    inter_rows.reverse()  # file order is not time order
    if inter_format == "csv":
        inter = tmp_path / "interactions.csv"
        with open(inter, "w", newline="") as f:
            w = csv.DictWriter(f, ["uid", "asin", "ts"])
            w.writeheader()
            w.writerows(inter_rows)
    else:
        inter = tmp_path / "interactions.jsonl"
        inter.write_text("\n".join(json.dumps(r) for r in inter_rows) + "\n")
    return items, inter


@pytest.mark.parametrize("items_format,inter_format", [("jsonl", "csv"), ("csv", "jsonl")])
def test_generic_reader_with_custom_columns(tmp_path, embedded, items_format, inter_format):
    items, inter = _generic_files(tmp_path, embedded, 20, items_format, inter_format)
    ds = read_dataset(tmp_path, item_column="asin", user_column="uid", timestamp_column="ts")
    assert ds.attributes == ["title", "brand"] and ds.num_items == 20
    # Expected: the first 50 real sequences restricted to the first 20 items, in time order.
    known = set(ds.item_ids)
    expected = {}
    for u, seq in zip(embedded.sequences["user_id"][:50], embedded.sequences["item_ids"][:50]):
        kept = [i for i in seq if i in known]
        if len(kept) >= 3:
            expected[u] = kept
    assert dict(zip(ds.sequences["user_id"], ds.sequences["item_ids"])) == expected
    assert ds.drops["interactions_unknown_item"] > 0


def test_generic_iso_dates_and_bad_input(tmp_path, embedded):
    items, _ = _generic_files(tmp_path, embedded, 5, "csv")
    inter = tmp_path / "interactions.csv"
    inter.write_text("uid,asin,ts\nu,0,2020-01-03\nu,1,2020-01-01T10:00:00Z\nu,2,2020-01-02\n")
    ds = read_dataset(
        items=items,
        interactions=inter,
        format="generic",
        item_column="asin",
        user_column="uid",
        timestamp_column="ts",
    )
    assert ds.sequences["item_ids"][0] == ["1", "2", "0"]
    inter.write_text("uid,asin,ts\nu,0,2020-01-03\nu,1,last tuesday\n")
    with pytest.raises(DataFormatError, match=r"interactions.csv:3: field 'ts': not a timestamp"):
        read_dataset(
            items=items,
            interactions=inter,
            format="generic",
            item_column="asin",
            user_column="uid",
            timestamp_column="ts",
        )
    with pytest.raises(
        DataFormatError, match=r"interactions.csv:1: field 'user_id': missing column"
    ):
        read_dataset(items=items, interactions=inter, format="generic", item_column="asin")
    bad_items = tmp_path / "bad.jsonl"
    bad_items.write_text('{"item_id": "a", "title": "x"}\n{"item_id": "b", "title": "y"\n')
    with pytest.raises(DataFormatError, match=r"bad.jsonl:2: malformed JSON line"):
        read_dataset(items=bad_items, interactions=inter, format="generic")
    with pytest.raises(DataFormatError, match="unknown dataset format 'parquet'"):
        read_dataset(items=items, interactions=inter, format="parquet")
    with pytest.raises(DataFormatError, match="no known dataset layout"):
        read_dataset(tmp_path / "..")


# ---------------------------------------------------------------- generic: bad values and gaps
def _real_rows(embedded, n=20) -> list[dict]:
    """The first ``n`` embedded items as generic JSON lines rows (id, title, brand)."""
    return [
        {"item_id": r["item_id"], "title": r["title"], "brand": r["brand"]}
        for r in embedded.items.select(range(n))
    ]


def _real_interactions(embedded, known: set[str]) -> list[dict]:
    """Real sequences restricted to ``known`` items, users with 3+ left, one row per interaction."""
    rows = []
    for u, seq in zip(embedded.sequences["user_id"][:50], embedded.sequences["item_ids"][:50]):
        kept = [i for i in seq if i in known]
        if len(kept) >= 3:
            rows += [
                {"user_id": u, "item_id": i, "timestamp": 1_600_000_000 + 1000 * t}
                for t, i in enumerate(kept)
            ]
    assert len({r["user_id"] for r in rows}) >= 2
    return rows


def _jsonl(path, rows: list[dict]):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _csv(path, rows: list[dict], columns: list[str]):
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, columns)
        w.writeheader()
        w.writerows(rows)
    return path


def _read(items, inter, **kwargs):
    return read_dataset(items=items, interactions=inter, format="generic", **kwargs)


def test_generic_text_columns_come_from_every_row(tmp_path, embedded):
    rows = _real_rows(embedded)
    # Row 1 has only its id, row 2 no brand: the attributes must still be title and brand.
    rows[0] = {"item_id": rows[0]["item_id"]}
    del rows[1]["brand"]
    items = _jsonl(tmp_path / "items.jsonl", rows)
    inter_rows = _real_interactions(embedded, {r["item_id"] for r in rows})
    inter = _csv(tmp_path / "interactions.csv", inter_rows, ["user_id", "item_id", "timestamp"])
    ds = _read(items, inter)
    assert ds.attributes == ["title", "brand"]
    by_id = {r["item_id"]: r for r in ds.items}
    assert by_id[rows[0]["item_id"]] == {"item_id": rows[0]["item_id"], "title": "", "brand": ""}
    assert by_id[rows[1]["item_id"]]["title"] == rows[1]["title"]
    assert by_id[rows[1]["item_id"]]["brand"] == ""
    assert by_id[rows[2]["item_id"]]["brand"] == rows[2]["brand"] != ""
    # Explicit columns: a column missing from some rows is empty there, from all rows an error.
    assert _read(items, inter, text_columns=["brand"]).attributes == ["brand"]
    with pytest.raises(
        DataFormatError, match=r"items.jsonl: field 'colour': text column not found in any row"
    ):
        _read(items, inter, text_columns=["colour"])


def test_generic_text_column_named_item_id_is_refused(tmp_path, embedded):
    # The id is in "asin" and a text column is called item_id: it would replace the ids.
    rows = [
        {"asin": r["item_id"], "title": r["title"], "item_id": "sku-" + r["item_id"]}
        for r in _real_rows(embedded)
    ]
    items = _jsonl(tmp_path / "items.jsonl", rows)
    inter = _csv(tmp_path / "interactions.csv", [], ["user_id", "asin"])
    with pytest.raises(DataFormatError, match=r"items.jsonl: field 'item_id': a text column"):
        _read(items, inter, item_column="asin")


def test_generic_null_and_non_scalar_ids_are_errors(tmp_path, embedded):
    rows = _real_rows(embedded)
    inter_rows = _real_interactions(embedded, {r["item_id"] for r in rows})
    good_items = _jsonl(tmp_path / "items.jsonl", rows)
    good_inter = _jsonl(tmp_path / "interactions.jsonl", inter_rows)
    assert _read(good_items, good_inter).num_items == 20

    bad_items = _jsonl(tmp_path / "bad_items.jsonl", rows[:2] + [{"item_id": None, "title": "x"}])
    with pytest.raises(DataFormatError, match=r"bad_items.jsonl:3: field 'item_id': null item id$"):
        _read(bad_items, good_inter)

    cases = [
        ("item_id", None, "null item id"),
        ("user_id", None, "null user id"),
        ("item_id", ["1"], "item id must be a string or an integer, got list"),
        ("item_id", 1.5, "item id must be a string or an integer, got float"),
        ("user_id", True, "user id must be a string or an integer, got bool"),
        ("item_id", " ", "empty item id"),
    ]
    for column, value, message in cases:
        bad = [dict(r) for r in inter_rows]
        bad[4][column] = value
        path = _jsonl(tmp_path / "bad_inter.jsonl", bad)
        with pytest.raises(DataFormatError) as err:
            _read(good_items, path)
        assert str(err.value).startswith(f"{path}:5: field '{column}': {message}"), str(err.value)

    # CSV has no null, but an empty item cell was counted as an unknown item: now an error too.
    bad = [dict(r) for r in inter_rows]
    bad[2]["item_id"] = ""
    path = _csv(tmp_path / "bad_inter.csv", bad, ["user_id", "item_id", "timestamp"])
    with pytest.raises(DataFormatError, match=r"bad_inter.csv:4: field 'item_id': empty item id"):
        _read(good_items, path)


def test_generic_timestamps_must_be_finite_and_present_in_every_row(tmp_path, embedded):
    rows = _real_rows(embedded)
    items = _jsonl(tmp_path / "items.jsonl", rows)
    inter_rows = _real_interactions(embedded, {r["item_id"] for r in rows})
    columns = ["user_id", "item_id", "timestamp"]
    for value, message in [
        ("nan", "not a finite timestamp: 'nan'"),
        ("1e400", "not a finite timestamp: '1e400'"),
        ("-inf", "not a finite timestamp: '-inf'"),
        ("", "empty timestamp, but line 2 has one"),
        ("  ", "empty timestamp, but line 2 has one"),
    ]:
        bad = [dict(r) for r in inter_rows]
        bad[5]["timestamp"] = value
        path = _csv(tmp_path / "interactions.csv", bad, columns)
        with pytest.raises(DataFormatError) as err:
            _read(items, path)
        assert str(err.value).startswith(f"{path}:7: field 'timestamp': {message}"), str(err.value)

    # JSON lines: NaN/Infinity literals, 1e400 (parsed as inf), null and a missing key.
    for text in ['"timestamp": NaN', '"timestamp": Infinity', '"timestamp": 1e400']:
        lines = [json.dumps(r) for r in inter_rows]
        lines[3] = lines[3].replace(f'"timestamp": {inter_rows[3]["timestamp"]}', text)
        path = tmp_path / "interactions.jsonl"
        path.write_text("\n".join(lines) + "\n")
        with pytest.raises(
            DataFormatError, match=r"interactions.jsonl:4: field 'timestamp': not a fin"
        ):
            _read(items, path)
    for change in ({"timestamp": None}, {}):
        bad = [dict(r) for r in inter_rows]
        bad[0] = {"user_id": bad[0]["user_id"], "item_id": bad[0]["item_id"], **change}
        path = _jsonl(tmp_path / "interactions.jsonl", bad)
        # The untimed row is line 1; the mix is noticed at line 2 and reported at line 1.
        with pytest.raises(
            DataFormatError,
            match=r"interactions.jsonl:1: field 'timestamp': empty timestamp, but line 2 has one",
        ):
            _read(items, path)

    # A timestamp column that is empty in every row: file order is time order, as without one.
    untimed = [dict(r, timestamp="") for r in reversed(inter_rows)]
    ds = _read(items, _csv(tmp_path / "interactions.csv", untimed, columns))
    first_user = untimed[0]["user_id"]
    expected = [r["item_id"] for r in untimed if r["user_id"] == first_user]
    assert dict(zip(ds.sequences["user_id"], ds.sequences["item_ids"]))[first_user] == expected


def test_generic_empty_files_name_themselves(tmp_path, embedded):
    rows = _real_rows(embedded)
    items = _jsonl(tmp_path / "items.jsonl", rows)
    inter_rows = _real_interactions(embedded, {r["item_id"] for r in rows})
    columns = ["user_id", "item_id", "timestamp"]
    header_only = _csv(tmp_path / "interactions.csv", [], columns)
    with pytest.raises(
        DataFormatError, match=r"^\S*interactions.csv: the interactions file has no rows$"
    ):
        _read(items, header_only)
    blank = tmp_path / "interactions.jsonl"
    blank.write_text("\n")
    with pytest.raises(
        DataFormatError, match=r"^\S*interactions.jsonl: the interactions file has no rows$"
    ):
        _read(items, blank)
    inter = _csv(tmp_path / "interactions.csv", inter_rows, columns)
    empty_items = tmp_path / "empty.jsonl"
    empty_items.write_text("")
    with pytest.raises(DataFormatError, match=r"^\S*empty.jsonl: the items file has no rows$"):
        _read(empty_items, inter)
    header_items = _csv(tmp_path / "header.csv", [], ["item_id", "title"])
    with pytest.raises(DataFormatError, match=r"^\S*header.csv: the items file has no rows$"):
        _read(header_items, inter)
    # Rows, but too few per user: the error is about the interactions, so it names that file.
    short = _csv(tmp_path / "interactions.csv", inter_rows[:2], columns)
    with pytest.raises(DataFormatError, match=r"^\S*interactions.csv: no user has 3 or more"):
        _read(items, short)


def test_generic_catalogue_without_text_is_refused(tmp_path, embedded):
    from store_hf.templates import format_content

    rows = _real_rows(embedded)
    inter = _csv(
        tmp_path / "interactions.csv",
        _real_interactions(embedded, {r["item_id"] for r in rows}),
        ["user_id", "item_id", "timestamp"],
    )
    ids_only = _jsonl(tmp_path / "ids.jsonl", [{"item_id": r["item_id"]} for r in rows])
    with pytest.raises(
        DataFormatError, match=r"^\S*ids.jsonl: the items have no text attributes \(only an id"
    ):
        _read(ids_only, inter)
    blank = _jsonl(
        tmp_path / "blank.jsonl",
        [{"item_id": r["item_id"], "title": " ", "brand": None} for r in rows],
    )
    with pytest.raises(
        DataFormatError,
        match=r"^\S*blank.jsonl: no item has any text: all of \['title', 'brand'\] are empty",
    ):
        _read(blank, inter)
    # Some items without any text are fine: the model formats them as "(no text)".
    rows[0] = {"item_id": rows[0]["item_id"], "title": "", "brand": ""}
    ds = _read(_jsonl(tmp_path / "some.jsonl", rows), inter)
    assert (
        format_content(ds.items[ds.item_index()[rows[0]["item_id"]]], ds.attributes) == "(no text)"
    )
    assert format_content(ds.items[ds.item_index()[rows[1]["item_id"]]], ds.attributes).startswith(
        "title: "
    )


def test_lcrec_null_item_in_a_sequence_is_an_error(tmp_path, embedded):
    items = {
        r["item_id"]: {a: r[a] for a in embedded.attributes}
        for r in embedded.items.select(range(10))
    }
    paths = _write_lcrec(tmp_path, items, {"0": ["0", "1", "2"], "1": ["3", None, "4"]})
    with pytest.raises(DataFormatError, match=r"X.inter.json: field 'user 1': null item id"):
        read_lcrec(*paths)
