"""The `store-hf` command line: answers, and one-line errors instead of tracebacks."""

import dataclasses
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from store_hf import cli
from store_hf.cli import main

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "transformers", "datasets", "accelerate", "numpy")


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("store-hf")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


# ----------------------------------------------------------------------------- describe
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


# ----------------------------------------------------------------------------- --help
def test_parsing_imports_nothing_heavy():
    """--help used to take about 5 s: cli.py imported the data layer (datasets) and
    store_hf/__init__ the models (torch, transformers) before argparse ran."""
    code = (
        "import sys\n"
        "import store_hf.cli as cli\n"
        "parser = cli.build_parser()\n"
        "parser.format_help()\n"
        "parser.parse_args(['run', 'x.yaml', '--output-dir', 'o', '--dataset-format', 'mind'])\n"
        "parser.parse_args(['recommend', 'runs/x', '--history', 'a', '-k', '3'])\n"
        f"print([m for m in {HEAVY!r} if m in sys.modules])\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    assert proc.stdout.strip() == "[]", proc.stdout


def test_help_is_plain_text():
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-m", "store_hf", "--help"], capture_output=True, text=True, env=env
    )
    assert proc.returncode == 0 and "usage: store-hf" in proc.stdout
    helps = [proc.stdout]
    sub = next(a for a in cli.build_parser()._actions if a.dest == "command")
    helps += [p.format_help() for p in sub.choices.values()]
    assert not [h for h in helps if "``" in h or ":class:" in h or ":func:" in h]


def test_dataset_formats_are_the_registered_readers():
    from store_hf.data import available_formats

    assert list(cli.DATASET_FORMATS) == available_formats()


def test_the_package_exports_still_load():
    import store_hf
    from store_hf import CodeTrie, StoreForGenerativeRec

    assert StoreForGenerativeRec.__name__ == "StoreForGenerativeRec" and CodeTrie
    assert set(store_hf.__all__) <= set(dir(store_hf))
    with pytest.raises(AttributeError):
        store_hf.NoSuchThing  # noqa: B018


# ----------------------------------------------------------------------------- stage commands
def _run_folder(folder: Path, output_dir: str) -> Path:
    """A run folder as `store-hf run` leaves it (its run_config.json), stages not run."""
    from store_hf.run_config import RunConfig

    config = RunConfig(output_dir=output_dir, preset="tiny")
    folder.mkdir(parents=True)
    (folder / "run_config.json").write_text(
        json.dumps({"identity": config.identity(), "config": dataclasses.asdict(config)})
    )
    return folder


def test_stage_commands_act_on_the_folder_named(tmp_path, monkeypatch, capsys):
    """`cp -a runs/ref runs/c; store-hf report runs/c --force` rewrote runs/ref: the stage
    commands read output_dir from the copied run_config.json."""
    from store_hf.pipeline import Pipeline

    ref = _run_folder(tmp_path / "ref", str(tmp_path / "ref"))
    copy = tmp_path / "c"
    shutil.copytree(ref, copy)
    acted_on = []
    for stage in cli._STAGE_COMMANDS.values():  # record the folder instead of training
        monkeypatch.setattr(Pipeline, stage, lambda self: acted_on.append(self.out) or self.out)
    for command in cli._STAGE_COMMANDS:
        assert main([command, str(copy), "--force"]) == 0
    assert acted_on == [copy] * len(cli._STAGE_COMMANDS)
    assert capsys.readouterr().out.split() == [str(copy)] * len(cli._STAGE_COMMANDS)
    # a run started elsewhere (output_dir relative to another working directory)
    moved = _run_folder(tmp_path / "moved", "runs/demo")
    assert main(["report", str(moved)]) == 0 and acted_on[-1] == moved
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c", "moved", "ref"]


@pytest.mark.parametrize(
    "content, expected",
    [("", "not valid JSON"), ("{", "not valid JSON"), ("[1]", "no 'config' mapping")],
)
def test_a_damaged_run_config_is_one_line_naming_the_file(tmp_path, capsys, content, expected):
    run_file = tmp_path / "run" / "run_config.json"
    run_file.parent.mkdir()
    run_file.write_text(content)
    assert main(["evaluate", str(run_file.parent)]) == 2
    line = _one_line_error(capsys)
    assert line.startswith(f"store-hf: error: {run_file}: ") and expected in line


def test_a_stage_command_without_a_run_folder_says_so(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    assert "no run_config.json" in _one_line_error(capsys)


# ----------------------------------------------------------------------------- run settings
def test_a_mistyped_setting_names_the_field_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "out"
    bad = tmp_path / "bad.yaml"
    bad.write_text(f"output_dir: {out}\nseed: abc\n")
    assert main(["run", str(bad)]) == 2
    assert _one_line_error(capsys) == (
        f"store-hf: error: {bad}: seed: expected an integer, got 'abc' (str)"
    )
    assert not out.exists()  # no output folder, no run_config.json
    bad.write_text(f"output_dir: {out}\nrecommender:\n  learning_rate: fast\n")
    assert main(["run", str(bad)]) == 2
    assert "recommender.learning_rate: expected a number, got 'fast'" in _one_line_error(capsys)
    assert not out.exists()


@pytest.mark.parametrize(
    "values, field",
    [
        ({"seed": True}, "seed"),  # a YAML bool is no seed, although bool is an int
        ({"kcore": "5"}, "kcore"),
        ({"preset": 3}, "preset"),
        ({"codebook": []}, "codebook"),
        ({"codebook": {"pca_dim": 3.5}}, "codebook.pca_dim"),
        ({"tokenizer": {"bf16": "yes"}}, "tokenizer.bf16"),
    ],
)
def test_setting_types_are_checked(values, field):
    from store_hf.run_config import PipelineError

    with pytest.raises(PipelineError, match=rf"^run.yaml: {field}: expected "):
        cli._build_config({"output_dir": "x", **values}, source="run.yaml")


def test_setting_values_of_the_right_type_pass():
    config = cli._build_config(
        {
            "output_dir": "x",
            "kcore": None,
            "seed": 3,
            # PyYAML (YAML 1.1) reads 5e-4 as a string: for a float field it is the number
            "recommender": {"learning_rate": "5e-4", "max_train_users": None, "alignment": False},
            "tokenizer": {"num_epochs": 2, "bf16": None},
        },
        source="run.yaml",
    )
    assert config.seed == 3 and config.recommender["learning_rate"] == 5e-4
    assert config.tokenizer == {"num_epochs": 2, "bf16": None}
