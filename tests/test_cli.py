"""The `store-hf` command line: answers, and one-line errors instead of tracebacks."""

import dataclasses
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

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


def _strict_json(text: str):
    """json.loads that refuses what is not JSON (Python's reader accepts -Infinity and NaN)."""

    def refuse(constant: str):
        raise ValueError(f"not JSON: {constant}")

    return json.loads(text, parse_constant=refuse)


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


def test_the_model_classes_register_the_recommendation_pipeline(monkeypatch):
    """Using the package's model classes registers ``pipeline("store-recommendation")`` too."""
    from transformers.pipelines import PIPELINE_REGISTRY

    import store_hf

    monkeypatch.delitem(sys.modules, "store_hf.pipeline_store", raising=False)
    monkeypatch.delattr(store_hf, "pipeline_store", raising=False)
    store_hf._register_auto_classes()
    assert "store_hf.pipeline_store" in sys.modules
    assert "store-recommendation" in PIPELINE_REGISTRY.supported_tasks


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


def _unwritable(tmp_path: Path, kind: str) -> Path:
    if kind == "under a file":
        (tmp_path / "file").write_text("")
        return tmp_path / "file" / "run"
    if not Path(kind).parent.is_dir():
        pytest.skip(f"no {Path(kind).parent} here")
    return Path(kind)


@pytest.mark.parametrize("kind", ["under a file", "/proc/store-hf-test", "/sys/store-hf-test"])
def test_an_unwritable_output_folder_is_one_line_naming_it(tmp_path, monkeypatch, capsys, kind):
    from store_hf.pipeline import Pipeline

    out = _unwritable(tmp_path, kind)
    # the dataset is read and checked before the folder is claimed: skipped to keep it fast
    monkeypatch.setattr(Pipeline, "check_inputs", lambda self: None)
    assert main(["run", "--output-dir", str(out), "--preset", "tiny"]) == 2
    line = _one_line_error(capsys)
    assert line.startswith(f"store-hf: error: {out}: ") and "Errno" not in line


def test_an_interrupt_is_one_line_and_exit_130(monkeypatch, capsys):
    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "_describe", interrupted)
    assert main(["describe"]) == 130
    assert capsys.readouterr().err == "store-hf: interrupted\n"


def test_a_bug_keeps_its_traceback(monkeypatch):
    def broken(args):
        raise AttributeError("a bug")

    monkeypatch.setattr(cli, "_describe", broken)
    with pytest.raises(AttributeError):
        main(["describe"])


# ----------------------------------------------------------------------------- a trained model
CATALOGUE = [f"i{j}" for j in range(40)]


@pytest.fixture
def recommender_folder(tiny_recommender_folder) -> Path:
    """A saved recommender of 40 items on a tiny random backbone (the session's shared one,
    read-only)."""
    return tiny_recommender_folder


def test_recommend_caps_k_at_the_catalogue_and_prints_valid_json(recommender_folder, capsys):
    """-k 1000 on 405 items printed 405 items, 1,000 scores and -Infinity (not JSON)."""
    assert main(["recommend", str(recommender_folder), "--history", "i1", "i2", "-k", "1000"]) == 0
    captured = capsys.readouterr()
    out = _strict_json(captured.out)
    assert len(out["items"]) == len(out["scores"]) == len(CATALOGUE)
    assert sorted(out["items"]) == sorted(CATALOGUE)
    assert "-k 1000 is more than the 40 items of the catalogue; recommending all 40" in (
        captured.err
    )
    assert main(["recommend", str(recommender_folder), "--history", "i1", "-k", "3"]) == 0
    captured = capsys.readouterr()
    out = _strict_json(captured.out)
    assert len(out["items"]) == len(out["scores"]) == 3 and "catalogue" not in captured.err


def test_recommend_and_score_take_a_run_folder(recommender_folder, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(recommender_folder, run / "recommender" / "model")
    assert main(["recommend", str(run), "--history", "i1", "i2", "-k", "2"]) == 0
    assert len(_strict_json(capsys.readouterr().out)["items"]) == 2
    assert main(["score", str(run), "--history", "i1", "--candidates", "i2", "i3"]) == 0
    scores = _strict_json(capsys.readouterr().out)
    assert list(scores) == ["i2", "i3"] and all(0.0 <= s <= 1.0 for s in scores.values())


def test_recommend_errors_are_one_line(recommender_folder, tmp_path, monkeypatch, capsys):
    folder = str(recommender_folder)
    assert main(["recommend", folder, "--history", "i1", "nope"]) == 2
    assert "'nope' is not in the recommender's catalogue" in _one_line_error(capsys)
    assert main(["recommend", str(tmp_path), "--history", "i1"]) == 2
    assert "not a model folder nor a store-hf run folder" in _one_line_error(capsys)

    def no_loading(path, verify=True):  # k is checked before the model loads
        raise AssertionError("loaded the model")

    monkeypatch.setattr(cli, "_load_rec", no_loading)
    for k in ("0", "-3"):
        assert main(["recommend", folder, "--history", "i1", "-k", k]) == 2
        assert _one_line_error(capsys) == f"store-hf: error: -k must be at least 1, got {k}"


def test_non_finite_scores_print_as_null(monkeypatch, capsys):
    import torch

    class Stand_in:
        config = SimpleNamespace(item_ids=["a", "b", "c", "d"])

        def recommend(self, histories, k):  # two items found, then -inf fillers
            scores = torch.tensor([[-0.5, math.nan, -math.inf, -math.inf]])
            return SimpleNamespace(item_ids=[["a", "b"]], scores=scores[:, :k])

        def score(self, histories, candidates):
            return torch.tensor([0.25, math.nan])

    monkeypatch.setattr(cli, "_load_rec", lambda path, verify=True: Stand_in())
    assert main(["recommend", "m", "--history", "a", "-k", "4"]) == 0
    assert _strict_json(capsys.readouterr().out) == {"items": ["a", "b"], "scores": [-0.5, None]}
    assert main(["score", "m", "--history", "a", "--candidates", "b", "c"]) == 0
    assert _strict_json(capsys.readouterr().out) == {"b": 0.25, "c": None}


# ----------------------------------------------------------------------------- push
def test_push_without_network_is_one_line(recommender_folder, monkeypatch, capsys):
    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "get_token", lambda: "hf_test")
    # a port nothing listens on: the real client fails to connect, as it does offline
    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", "http://127.0.0.1:9")
    assert main(["push", str(recommender_folder), "--repo-id", "org/name"]) == 2
    line = _one_line_error(capsys)
    assert line.startswith("store-hf: error: could not reach the Hugging Face Hub: ")
    assert "127.0.0.1:9" in line


@pytest.mark.parametrize("client", ["httpx2", "httpx", "requests", "builtins"])
def test_push_to_hub_turns_client_network_errors_into_connection_error(recommender_folder, client):
    """Whatever HTTP client huggingface_hub uses, a network failure is one ConnectionError."""
    from store_hf.hub import push_to_hub

    if client == "builtins":
        error = TimeoutError("timed out")
    else:
        module = pytest.importorskip(client)
        error = (module.ConnectError if client != "requests" else module.ConnectionError)(
            "Name or service not known"
        )

    class Offline:
        endpoint = "https://hub.example"

        def create_repo(self, *args, **kwargs):
            raise error

    with pytest.raises(ConnectionError, match="^could not reach the Hugging Face Hub: ") as e:
        push_to_hub(recommender_folder, "org/name", token="hf_test", api=Offline())
    assert str(error) in str(e.value) and "https://hub.example" in str(e.value)
