"""The run folder, second pass (issue 26): a stage command never takes a folder over, a run is
the same run from any working directory, `recommend`/`score` check the run's checksums, every
setting is range-checked, damaged weights and full disks are one line, inputs are checked before
anything is removed, stale locks are recognised by their process's start time, `describe` says
larger when it is larger, and files saved from one seed are byte-identical."""

import dataclasses
import json
import os
import shutil
import socket
import subprocess
import sys
import typing
from pathlib import Path

import numpy as np
import pytest

from store_hf.cli import main, memory_line
from store_hf.presets import CodebookSettings, RecStageSettings, TokenizerStageSettings
from store_hf.run_config import PipelineError, RunConfig, check_settings
from store_hf.run_folder import LOCK_FILE, boot_id, process_start

LATER = ("codebook", "recommender", "evaluate", "report")


@pytest.fixture
def tiny_run(shared_tiny_run):
    """A finished tiny run: ``root/out`` made from ``root/data`` (the session's shared run,
    read-only: every test here works on a copy, see :func:`_copy`)."""
    return shared_tiny_run.root


def _copy(tiny_run: Path, tmp_path: Path) -> tuple[Path, Path]:
    """A copy of the run folder and of its data (``tmp_path/out``, ``tmp_path/data``), the run
    pointed at the copied data; returns (run folder, data folder)."""
    out, data = tmp_path / "out", tmp_path / "data"
    shutil.copytree(tiny_run / "out", out)
    shutil.copytree(tiny_run / "data", data)
    run_file = out / "run_config.json"
    saved = json.loads(run_file.read_text())
    for name in ("items", "interactions"):
        saved["config"][name] = str(data / Path(saved["config"][name]).name)
    run_file.write_text(json.dumps(saved))
    return out, data


def _run_argv(out: Path, data: Path, items: str | None = None, inter: str | None = None):
    return [
        "run", "--preset", "tiny", "--output-dir", str(out), "--codebook-size", "32",
        "--pca-dim", "8", "--dataset-format", "generic",
        "--items", items or str(data / "items.jsonl"),
        "--interactions", inter or str(data / "interactions.csv"),
    ]  # fmt: skip


def _error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


def _edit_items(data: Path) -> None:
    items = data / "items.jsonl"
    rows = [json.loads(line) for line in items.read_text().splitlines()]
    rows[0]["title"] = rows[0]["title"] + " (edited)"
    items.write_text("".join(json.dumps(r) + "\n" for r in rows))


# ------------------------------------------------------------------ 1. never lose a finished run
@pytest.mark.parametrize("command", ["report", "evaluate"])
def test_case1_a_forced_stage_command_never_takes_the_folder_over(
    tiny_run, tmp_path, capsys, command
):
    out, data = _copy(tiny_run, tmp_path)
    _edit_items(data)
    before = sorted(p.name for p in out.iterdir())
    for force in ([], ["--force"]):
        assert main([command, str(out), *force]) == 2
        err = _error(capsys)
        assert "input data changed" in err and "items" in err
        assert f"store-hf run {out / 'run_config.json'} --force" in err  # what to do instead
    assert sorted(p.name for p in out.iterdir()) == before  # nothing removed, nothing added
    # the command it suggests reads the folder's own settings, for that folder
    config = RunConfig.from_yaml(out / "run_config.json")
    assert Path(config.output_dir) == out and config.items == str(data / "items.jsonl")
    assert config.identity() == RunConfig.from_run_folder(out).identity()


# ------------------------------------------------------- 2. one identity from any directory
def test_case2_the_same_run_from_another_working_directory(tiny_run, tmp_path, capsys, monkeypatch):
    out, data = _copy(tiny_run, tmp_path)  # started with absolute paths
    # store-hf run with the same files, spelt relative to one directory, then to another
    monkeypatch.chdir(tmp_path)
    assert main(_run_argv(Path("out"), data, "data/items.jsonl", "data/interactions.csv")) == 0
    monkeypatch.chdir(data)
    assert main(_run_argv(out, data, "items.jsonl", "./interactions.csv")) == 0
    # a stage command from a third: unchanged data is not "changed"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert main(["report", str(out)]) == 0
    saved = json.loads((out / "run_config.json").read_text())
    assert saved["config"]["items"] == str(data / "items.jsonl")  # kept absolute
    assert saved["data_paths"]["items"] == os.path.join("..", "data", "items.jsonl")
    assert set(saved["inputs"]) == {"items", "interactions"}  # by role, not by spelling
    assert "items" not in saved["identity"]
    capsys.readouterr()


def test_case2_a_missing_file_is_not_found_never_changed(tiny_run, tmp_path, capsys):
    out, data = _copy(tiny_run, tmp_path)
    (data / "items.jsonl").rename(tmp_path / "items-away.jsonl")
    for argv in (["report", str(out)], ["report", str(out), "--force"], _run_argv(out, data)):
        assert main(argv) == 2
        err = _error(capsys)
        assert f"file not found at {data / 'items.jsonl'}" in err and "changed" not in err
    assert (out / "report" / "stage.json").is_file()


def test_case2_a_run_folder_moved_with_its_data_finds_it(tiny_run, tmp_path, capsys):
    out, data = _copy(tiny_run, tmp_path / "a")
    assert main(["report", str(out)]) == 0  # records the data relative to the run folder
    shutil.move(tmp_path / "a", tmp_path / "b")
    moved = tmp_path / "b" / "out"
    assert main(["report", str(moved)]) == 0
    assert RunConfig.from_run_folder(moved).items == str(tmp_path / "b" / "data" / "items.jsonl")
    capsys.readouterr()


def test_case2_fingerprints_of_older_folders_still_match(tmp_path):
    from store_hf.run_config import changed_inputs

    data = tmp_path / "items.jsonl"
    data.write_text('{"item_id": "a", "title": "x"}\n')
    config = RunConfig(str(tmp_path / "run"), items=str(data), interactions=str(data))
    now = config.input_fingerprint()
    assert set(now) == {"items", "interactions"}
    older = {str(data): now["items"]}  # keyed by the path as typed, one file for both
    assert changed_inputs({"data/items.jsonl": now["items"], "x": now["items"]}, now) == []
    assert changed_inputs(older | {"x": "0" * 64}, now) != []
    assert changed_inputs({**now, "items": "0" * 64}, now) == ["items"]


# ------------------------------------------------ 3. recommend and score check the checksums
def _swap_two_ids(config_json: Path) -> None:
    """Two item ids exchanged in a model's config.json: the same size, other content."""
    size = config_json.stat().st_size
    config = json.loads(config_json.read_text())
    ids = config["item_ids"]
    ids[1], ids[2] = ids[2], ids[1]
    config_json.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    assert config_json.stat().st_size == size


def test_case3_recommend_and_score_verify_the_runs_checksums(tiny_run, tmp_path, capsys):
    out, _ = _copy(tiny_run, tmp_path)
    model = out / "recommender" / "model"
    _swap_two_ids(model / "config.json")
    history = ["--history", "0", "1"]
    for argv in (
        ["recommend", str(out), *history, "-k", "3"],
        ["recommend", str(model), *history, "-k", "3"],
        ["score", str(out), *history, "--candidates", "2", "3"],
    ):
        assert main(argv) == 2
        err = _error(capsys)
        assert f"{model / 'config.json'}: damaged" in err and "store-hf rec-train" in err
    # --no-verify loads it anyway (a model folder the user changed on purpose)
    assert main(["recommend", str(out), *history, "-k", "3", "--no-verify"]) == 0
    assert len(json.loads(capsys.readouterr().out)["items"]) == 3


# -------------------------------------------------------- 4. every setting range-checked
@pytest.mark.parametrize(
    "section, field, value",
    [
        ("recommender", "batch_size", -8),
        ("recommender", "per_device_batch_size", 0),
        ("tokenizer", "learning_rate", -1.0),
        ("tokenizer", "max_items", -5),
        ("recommender", "lora_dropout", 1.5),
        ("codebook", "n_init", 0),
    ],
)
def test_case4_bad_settings_stop_before_anything_is_written(
    tmp_path, capsys, section, field, value
):
    out = tmp_path / "out"
    config = tmp_path / "run.yaml"
    config.write_text(f"output_dir: {out}\npreset: tiny\n{section}:\n  {field}: {value}\n")
    assert main(["run", str(config)]) == 2
    err = _error(capsys)
    assert err.startswith(f"store-hf: error: {config}: {section}.{field}: must be ")
    assert f"got {value}" in err
    assert not out.exists()


def _numeric_fields(cls) -> list[tuple[str, type]]:
    hints = typing.get_type_hints(cls)
    kinds = []
    for f in dataclasses.fields(cls):
        args = typing.get_args(hints[f.name]) or (hints[f.name],)
        number = [a for a in args if a in (int, float)]
        if number:
            kinds.append((f.name, number[0]))
    return kinds


@pytest.mark.parametrize(
    "section, cls",
    [
        ("tokenizer", TokenizerStageSettings),
        ("recommender", RecStageSettings),
        ("codebook", CodebookSettings),
    ],
)
def test_case4_every_numeric_setting_of_every_stage_has_a_range(section, cls):
    """Derived from the dataclasses: a field added to presets.py is covered too."""
    fields = _numeric_fields(cls)
    assert fields
    for name, kind in fields:
        with pytest.raises(PipelineError, match=rf"^run.yaml: {section}\.{name}: must be"):
            RunConfig.from_dict({"output_dir": "x", section: {name: -5}}, source="run.yaml")
        if kind is float:
            with pytest.raises(PipelineError, match=f"{name}: must be a finite number"):
                RunConfig.from_dict({"output_dir": "x", section: {name: float("nan")}}, "run.yaml")


def test_case4_a_new_settings_field_is_covered_without_a_table_entry():
    @dataclasses.dataclass(frozen=True)
    class Extended(RecStageSettings):
        finetune: str = "lora"
        new_count: int = 3
        new_weight: float = 0.5

    assert check_settings({"new_count": 2, "finetune": "full"}, Extended, "x")["new_count"] == 2
    for name, value, needs in (("new_count", 0, ">= 1"), ("new_weight", -0.1, ">= 0")):
        with pytest.raises(PipelineError, match=f"x: {name}: must be {needs}, got {value}"):
            check_settings({name: value}, Extended, "x")
    with pytest.raises(PipelineError, match="x: finetune: expected a string"):
        check_settings({"finetune": 3}, Extended, "x")


def test_case4_the_rqvae_and_baseline_scripts_share_the_checker(capsys):
    from store_hf.baselines import SASRecConfig
    from store_hf.baselines.script import baseline_parser, checked_config
    from store_hf.semantic_ids import RQVAEConfig

    with pytest.raises(ValueError, match="RQVAEConfig: batch_size: must be >= 1, got 0"):
        RQVAEConfig(batch_size=0)
    with pytest.raises(ValueError, match="RQVAEConfig: hidden_dims: must be >= 1, got -2"):
        RQVAEConfig(hidden_dims=(8, -2))
    assert RQVAEConfig(hidden_dims=[8, 4], lr=1).hidden_dims == (8, 4)
    parser = baseline_parser("test")
    assert checked_config(parser, SASRecConfig, epochs=3).epochs == 3
    with pytest.raises(SystemExit) as exit_:
        checked_config(parser, SASRecConfig, epochs=0)
    assert exit_.value.code == 2
    assert "command line: SASRecConfig.epochs: must be > 0, got 0" in capsys.readouterr().err


@pytest.mark.parametrize(
    "script, flags, needle",
    [
        ("train_sasrec.py", ["--dropout", "1.5"], "SASRecConfig.dropout: must be in [0, 1)"),
        ("train_tiger.py", ["--batch-size", "-1"], "TIGERConfig.batch_size: must be >= 1"),
        ("train_tiger.py", ["--rqvae-epochs", "0"], "RQVAEConfig.epochs: must be > 0"),
        ("train_sasrec.py", ["--max-test-users", "0"], "max_test_users: must be >= 1"),
    ],
)
def test_case4_example_scripts_refuse_bad_settings_before_reading_data(
    tmp_path, script, flags, needle, script_cli
):
    out = tmp_path / "out"
    done = script_cli(f"examples/{script}", "--output-dir", out, *flags)
    assert done.returncode == 2, done.stderr
    assert needle in done.stderr and "Traceback" not in done.stderr
    assert not out.exists()


# ------------------------------------------------------ 5. damaged weights, full disk: one line
def test_case5_truncated_weights_are_one_line_naming_the_file(tiny_run, tmp_path, capsys):
    out, _ = _copy(tiny_run, tmp_path)
    outside = tmp_path / "model"  # a model folder outside a run: no checksums to compare
    shutil.copytree(out / "recommender" / "model", outside)
    for folder in (out / "recommender" / "model", outside):
        weights = folder / "model.safetensors"
        weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    for argv, needle in (
        (["recommend", str(out), "--history", "0", "-k", "2"], "damaged"),
        (["score", str(out), "--history", "0", "--candidates", "1"], "damaged"),
        (["recommend", str(outside), "--history", "0", "-k", "2"], "reading failed in"),
        (["score", str(outside), "--history", "0", "--candidates", "1"], "reading failed in"),
    ):
        assert main(argv) == 2
        err = _error(capsys)
        assert needle in err and "model.safetensors" in err, err


def test_case5_a_full_disk_while_saving_is_one_line(tiny_run, tmp_path, capsys, monkeypatch):
    import safetensors.numpy
    from safetensors import SafetensorError

    out, _ = _copy(tiny_run, tmp_path)

    def full_disk(*args, **kwargs):
        raise SafetensorError(
            'Error while serializing: IoError(Os { code: 28, kind: StorageFull, message: "No '
            'space left on device" })'
        )

    published = (out / "codebook" / "stage.json").read_bytes()
    monkeypatch.setattr(safetensors.numpy, "save", full_disk)
    assert main(["cluster", str(out), "--force"]) == 2
    err = _error(capsys)
    assert f"{out / 'codebook.partial'}: writing the stage's files failed" in err
    assert "No space left on device" in err
    # the new codebook was never published: the finished one stays until it is replaced
    assert (out / "codebook" / "stage.json").read_bytes() == published


# ------------------------------------------------ 6. check inputs first, remove after
def test_case6_a_forced_stage_with_a_damaged_input_removes_nothing(tiny_run, tmp_path, capsys):
    out, _ = _copy(tiny_run, tmp_path)
    weights = out / "tokenizer" / "model" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    assert main(["encode", str(out), "--force"]) == 2
    err = _error(capsys)
    assert str(weights) in err and "store-hf tokenizer-train" in err
    for stage in ("encode", *LATER):
        assert (out / stage / "stage.json").is_file(), stage


# ------------------------------------------------------------------ 7. stale locks
def _lock(out: Path, **fields) -> None:
    holder = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started": process_start(os.getpid()),
        "boot_id": boot_id(),
        **fields,
    }
    (out / LOCK_FILE).write_text(json.dumps(holder) + "\n")


@pytest.mark.skipif(process_start(os.getpid()) is None, reason="needs /proc")
def test_case7_a_lock_whose_pid_names_another_process_is_taken_over(tiny_run, tmp_path, capsys):
    out, _ = _copy(tiny_run, tmp_path)
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        # a live holder: refused
        _lock(out, pid=child.pid, started=process_start(child.pid))
        assert main(["report", str(out)]) == 2
        assert f"in use by another store-hf run (process {child.pid})" in _error(capsys)
        # the same pid, another start time (the id reused), another boot: taken over
        for stale in (
            {"pid": child.pid, "started": "1"},
            {"pid": child.pid, "boot_id": "another-boot"},
            {"started": "1"},  # this very process's pid, restarted (a container)
            {"started": None, "boot_id": None},  # an older lock naming this process
        ):
            _lock(out, **stale)
            assert main(["report", str(out)]) == 0, stale
            assert not (out / LOCK_FILE).exists()
    finally:
        child.kill()
        child.wait()
    capsys.readouterr()


def test_case7_a_lock_of_another_host_says_how_to_take_it_over(tiny_run, tmp_path, capsys):
    out, data = _copy(tiny_run, tmp_path)
    _lock(out, host="another-host")
    assert main(["report", str(out)]) == 2
    err = _error(capsys)
    assert "on host another-host" in err and "--break-lock" in err
    assert main(["report", str(out), "--break-lock"]) == 0
    _lock(out, host="another-host")
    assert main([*_run_argv(out, data), "--break-lock"]) == 0
    assert not (out / LOCK_FILE).exists()
    capsys.readouterr()


# ------------------------------------------------------------------ 8. describe
def test_case8_describe_says_larger_when_the_code_table_is_larger(capsys):
    smaller = memory_line({"hidden_size": 1024, "id_table": 4344 * 1024, "code_table": 1024**2})
    assert "(4.2x smaller)" in smaller
    larger = memory_line({"hidden_size": 1, "id_table": 400, "code_table": 1000})
    assert "(2.5x larger)" in larger and "smaller" not in larger
    assert main(["describe", "--codebook-size", "4096"]) == 0  # 4,344 items, 16,384 code rows
    out = capsys.readouterr().out
    assert "(3.8x larger)" in out and "x smaller" not in out


# ------------------------------------------------------- also: byte-identical saved files
def test_also_codebook_and_rqvae_files_from_one_seed_are_byte_identical(tmp_path):
    from store_hf.semantic_ids import RQVAE, RQVAEConfig, SemanticCodebook

    rng = np.random.default_rng(0)
    dense = rng.normal(size=(60, 3, 16)).astype(np.float32)
    for run in ("a", "b"):
        book = SemanticCodebook(codebook_size=4, pca_dim=4, seed=0).fit(dense)
        assert book.statistics()["fit_seconds"] > 0  # the fitted codebook keeps its time
        book.save_pretrained(tmp_path / run / "codebook")
        rq = RQVAE(16, RQVAEConfig(hidden_dims=(8,), latent_dim=4, codebook_size=4, epochs=2))
        rq.fit(dense[:, 0])
        rq.save(tmp_path / run / "rqvae")
    for name in ("codebook/codebook.json", "codebook/codebook.safetensors", "rqvae/rqvae.json",
                 "rqvae/rqvae.safetensors"):  # fmt: skip
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    reloaded = SemanticCodebook.from_pretrained(tmp_path / "a" / "codebook")
    assert np.array_equal(reloaded.codes, book.codes)
    RQVAE.load(tmp_path / "a" / "rqvae")
    # the content fingerprint still pairs the two files: a pair from two saves is refused
    other = SemanticCodebook(codebook_size=4, pca_dim=4, seed=1).fit(dense)
    other.save_pretrained(tmp_path / "c")
    shutil.copy(tmp_path / "c" / "codebook.json", tmp_path / "a" / "codebook" / "codebook.json")
    with pytest.raises(ValueError, match="different saves"):
        SemanticCodebook.from_pretrained(tmp_path / "a" / "codebook")
