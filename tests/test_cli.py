"""The `store-hf` command line."""

import json

from store_hf.cli import main


def test_describe_prints_statistics_and_the_memory_model(capsys, embedded):
    assert main(["describe", "--json", "--hidden-size", "576"]) == 0
    stats = json.loads(capsys.readouterr().out)
    n = len(embedded.items)
    assert stats["items"] == n
    assert stats["memory"] == {"hidden_size": 576, "id_table": n * 576, "code_table": 256 * 4 * 576}
    assert main(["describe"]) == 0
    table = capsys.readouterr().out
    assert f"ID table N x D = {n * 1024:,}" in table and "k x v x D = 1,048,576" in table


def test_describe_reports_a_missing_file_in_one_line(capsys, tmp_path):
    missing = tmp_path / "nope.jsonl"
    code = main(["describe", "--items", str(missing), "--interactions", str(missing)])
    err = capsys.readouterr().err
    assert code == 2 and str(missing) in err and len(err.strip().splitlines()) == 1
