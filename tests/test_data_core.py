"""The common representation and its cleaning, independent of any file format."""

import pytest

from store_hf.data import DataFormatError, DataOptions
from store_hf.data.dataset import ItemTable, build_dataset
from store_hf.data.text import clean_text


def test_clean_text_unescapes_and_normalises():
    assert clean_text("Tom &amp; Jerry  \n\t rocks") == "Tom & Jerry rocks"
    assert clean_text("&#x2605; 5 stars") == "\u2605 5 stars"
    assert clean_text("double &amp;amp; escaped") == "double & escaped"
    assert clean_text(["Tools", ["Hand Tools", ""], None]) == "Tools, Hand Tools"
    assert clean_text(None) == "" and clean_text(float("nan")) == ""


def _table(embedded, n=30):
    table = ItemTable(["title", "brand"])
    for row in embedded.items.select(range(n)):
        table.add(row["item_id"], row)
    return table


def test_build_orders_by_time_and_counts_drops(embedded):
    table = _table(embedded)
    ids = list(table.rows)
    inter = [
        ("u1", ids[2], 30.0),
        ("u1", ids[0], 10.0),
        ("u1", ids[1], 20.0),
        ("u1", ids[1], 20.0),  # back-to-back duplicate
        ("u1", "no-such-item", 25.0),
        ("u2", ids[3], None),
        ("u2", ids[4], None),
        ("u3", ids[5], 1.0),  # too short: dropped
    ]
    ds = build_dataset("t", table, inter, DataOptions(min_sequence_length=2))
    seqs = dict(zip(ds.sequences["user_id"], ds.sequences["item_ids"]))
    assert seqs == {"u1": [ids[0], ids[1], ids[2]], "u2": [ids[3], ids[4]]}
    assert ds.drops == {
        "interactions_unknown_item": 1,
        "unknown_item_ids": 1,
        "consecutive_duplicates": 1,
        "short_sequence_users": 1,
        "short_sequence_interactions": 1,
    }
    assert ds.num_items == 30 and ds.attributes == ["title", "brand"]


def test_keep_consecutive_duplicates(embedded):
    table = _table(embedded)
    ids = list(table.rows)
    inter = [("u", ids[0], 1.0), ("u", ids[0], 2.0), ("u", ids[1], 3.0)]
    ds = build_dataset("t", table, inter, DataOptions(consecutive_duplicates="keep"))
    assert ds.sequences["item_ids"][0] == [ids[0], ids[0], ids[1]]


def test_kcore_is_iterative(embedded):
    table = _table(embedded)
    a, b, c = list(table.rows)[:3]
    # c has one interaction; removing it leaves u3 with one, so u3 goes too: a second round.
    inter = [("u1", a, 1), ("u1", b, 2), ("u2", a, 1), ("u2", b, 2), ("u3", b, 1), ("u3", c, 2)]
    ds = build_dataset("t", table, inter, DataOptions(kcore=2, min_sequence_length=2))
    seqs = dict(zip(ds.sequences["user_id"], ds.sequences["item_ids"]))
    assert seqs == {"u1": [a, b], "u2": [a, b]}
    assert ds.drops["kcore_users"] == 1
    assert set(ds.item_ids) == {a, b}
    assert ds.drops["kcore_items"] == 28


def test_duplicate_item_id_names_both_lines():
    table = ItemTable(["title"])
    table.add("X1", {"title": "a"}, "items.csv", 2)
    with pytest.raises(
        DataFormatError,
        match=r"items.csv:7: field 'item_id': duplicate item id 'X1' \(first seen at line 2\)",
    ):
        table.add("X1", {"title": "b"}, "items.csv", 7)


def test_empty_catalogue_and_no_users(embedded):
    with pytest.raises(DataFormatError, match="items.json: the item table is empty"):
        build_dataset("t", ItemTable(["title"]), [], source="items.json")
    with pytest.raises(DataFormatError, match="no user has 3 or more"):
        build_dataset("t", _table(embedded), [("u", "0", 1.0)], source="items.json")


def test_bad_options():
    with pytest.raises(DataFormatError, match="consecutive_duplicates"):
        DataOptions(consecutive_duplicates="merge")
    with pytest.raises(DataFormatError, match="kcore"):
        DataOptions(kcore=0)


def test_encoding_and_gzip_errors_name_the_file(tmp_path, embedded):
    import gzip

    from store_hf.data import read_dataset

    items = tmp_path / "items.csv"
    items.write_bytes("item_id,title\n1,Caf\u00e9 press\n".encode("latin-1"))
    inter = tmp_path / "interactions.csv"
    inter.write_text("user_id,item_id\nu,1\n")
    with pytest.raises(DataFormatError, match=r"items.csv: not valid utf-8 text"):
        read_dataset(items=items, interactions=inter, format="generic")
    bad_gz = tmp_path / "interactions.jsonl.gz"
    bad_gz.write_bytes(gzip.compress(b'{"user_id": "u", "item_id": "1"}\n')[:-12])
    items.write_text("item_id,title\n1,press\n")
    with pytest.raises(DataFormatError, match=r"interactions.jsonl.gz: corrupt gzip file"):
        read_dataset(items=items, interactions=bad_gz, format="generic")


def test_load_dataset_or_embedded_reads_the_embedded_set_when_nothing_is_named(embedded):
    from store_hf.data import load_dataset_or_embedded

    ds = load_dataset_or_embedded(options=DataOptions(kcore=None))
    assert (ds.num_items, ds.num_users) == (embedded.num_items, embedded.num_users)
    with pytest.raises(DataFormatError):
        load_dataset_or_embedded(items="only-items.json")


def test_null_and_non_scalar_item_ids_are_refused(embedded):
    table = ItemTable(["title"])
    row = embedded.items[0]
    with pytest.raises(DataFormatError, match=r"^items.jsonl:3: field 'asin': null item id$"):
        table.add(None, row, "items.jsonl", 3, field="asin")
    with pytest.raises(DataFormatError, match=r"items.jsonl:4: field 'item_id': item id must be"):
        table.add(["0"], row, "items.jsonl", 4)
    with pytest.raises(DataFormatError, match=r"items.jsonl:5: field 'item_id': empty item id"):
        table.add("  ", row, "items.jsonl", 5)
    table.add(7, row, "items.jsonl", 6)  # integers are ids, as text
    assert list(table.rows) == ["7"] and len(table) == 1
    with pytest.raises(DataFormatError, match="'item_id' is the id column"):
        ItemTable(["title", "item_id"])


def test_parse_number_refuses_non_finite_values():
    from store_hf.data.io import parse_number

    assert parse_number("964982703", "ratings.csv", 2, "timestamp") == 964982703.0
    for text in ("nan", "inf", "-Infinity", "1e400"):
        with pytest.raises(
            DataFormatError,
            match=rf"^ratings.csv:2: field 'timestamp': not a finite number: '{text}'$",
        ):
            parse_number(text, "ratings.csv", 2, "timestamp")


def test_catalogue_without_text_is_refused(embedded):
    ids = embedded.items["item_id"][:6]
    inter = [("u", i, float(t)) for t, i in enumerate(ids)]
    no_columns = ItemTable([])
    for i in ids:
        no_columns.add(i, {})
    with pytest.raises(DataFormatError, match=r"^items.csv: the items have no text attributes"):
        build_dataset("t", no_columns, inter, source="items.csv")
    blank = ItemTable(["title", "brand"])
    for i in ids:
        blank.add(i, {"title": "  ", "brand": None})
    with pytest.raises(DataFormatError, match=r"^items.csv: no item has any text"):
        build_dataset("t", blank, inter, source="items.csv")
    # One item with text is enough; the others are formatted as "(no text)" by the model.
    blank.rows[ids[2]]["title"] = embedded.items[2]["title"]
    ds = build_dataset("t", blank, inter, source="items.csv")
    assert ds.attributes == ["title", "brand"] and ds.num_items == 6
    # The check is on the items kept: here filtering keeps only items without text.
    with pytest.raises(DataFormatError, match="no item has any text"):
        build_dataset(
            "t",
            blank,
            [(u, i, t) for u, i, t in inter if i != ids[2]],
            DataOptions(drop_unused_items=True),
            source="items.csv",
        )


def test_no_user_left_names_the_interactions_file(embedded):
    with pytest.raises(DataFormatError, match=r"^ratings.csv: no user has 3 or more"):
        build_dataset(
            "t",
            _table(embedded),
            [("u", "0", 1.0)],
            source="items.csv",
            interactions_source="ratings.csv",
        )
