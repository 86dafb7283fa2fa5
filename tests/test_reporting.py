"""``report_to``: where the training stages log (run config, ``--report-to``, TrainingArguments,
TensorBoard under ``<run>/logs/<stage>``)."""

import os

import pytest

from store_hf.cli import build_parser
from store_hf.presets import get_preset
from store_hf.reporting import (
    INTEGRATIONS,
    TENSORBOARD_ENV,
    parse_report_to,
    tensorboard_logging_dir,
)
from store_hf.run_config import PipelineError, RunConfig


def test_the_integration_names_agree_with_transformers():
    from transformers.integrations.integration_utils import INTEGRATION_TO_CALLBACK

    assert sorted(INTEGRATIONS) == sorted(INTEGRATION_TO_CALLBACK)


@pytest.mark.parametrize(
    "value, names",
    [
        ("none", []),
        ("tensorboard", ["tensorboard"]),
        ("tensorboard, trackio", ["tensorboard", "trackio"]),
        (["wandb", "tensorboard"], ["wandb", "tensorboard"]),
        ("all", ["all"]),
    ],
)
def test_report_to_names(value, names):
    assert parse_report_to(value) == names


@pytest.mark.parametrize(
    "value, message",
    [
        ("tensorbord", r"\['tensorbord'\] not one of"),
        ("", "no integration named"),
        ("none,tensorboard", "stand alone"),
    ],
)
def test_report_to_refuses(value, message):
    with pytest.raises(ValueError, match=message):
        parse_report_to(value)


@pytest.mark.parametrize("preset", ["tiny", "cpu"])
def test_stage_training_arguments_carry_report_to(tmp_path, preset):
    from store_hf.training import stage_training_arguments
    from store_hf.training.recommender import _stage_args

    settings = get_preset(preset)
    tokenizer = stage_training_arguments(tmp_path, settings.tokenizer, report_to="tensorboard")
    assert tokenizer.report_to == ["tensorboard"]
    recommender = _stage_args(
        tmp_path, settings.recommender, seed=0, epochs=1.0, report_to="tensorboard,trackio"
    )
    assert recommender.report_to == ["tensorboard", "trackio"]
    # the default stays offline
    assert stage_training_arguments(tmp_path, settings.tokenizer).report_to == []


def test_tensorboard_folder_is_set_for_the_block_only(tmp_path, monkeypatch):
    monkeypatch.setenv(TENSORBOARD_ENV, "/elsewhere")
    with tensorboard_logging_dir(tmp_path / "logs" / "tokenizer"):
        assert os.environ[TENSORBOARD_ENV] == str(tmp_path / "logs" / "tokenizer")
    assert os.environ[TENSORBOARD_ENV] == "/elsewhere"
    monkeypatch.delenv(TENSORBOARD_ENV)
    with tensorboard_logging_dir(None):
        assert TENSORBOARD_ENV not in os.environ
    with tensorboard_logging_dir(tmp_path):
        pass
    assert TENSORBOARD_ENV not in os.environ


def test_run_config_checks_report_to_and_leaves_it_out_of_the_identity(tmp_path):
    config = RunConfig.from_dict({"output_dir": "x", "report_to": ["tensorboard", "trackio"]})
    assert config.report_to == ["tensorboard", "trackio"]
    assert RunConfig(output_dir="x").report_to == "none"  # offline by default
    # where the logs go changes no result: the same run
    assert "report_to" not in config.identity()
    assert config.identity() == RunConfig(output_dir="x").identity()

    path = tmp_path / "run.yaml"
    path.write_text("output_dir: x\nreport_to: tensorbord\n")
    with pytest.raises(PipelineError, match=r"run.yaml: report_to: \['tensorbord'\] not one of"):
        RunConfig.from_yaml(path)
    path.write_text("output_dir: x\nreport_to: 3\n")
    with pytest.raises(PipelineError, match=r"report_to: expected a string or a list \(each a"):
        RunConfig.from_yaml(path)
    path.write_text("output_dir: x\nreport_to: [tensorboard, 3]\n")
    with pytest.raises(PipelineError, match="report_to: expected"):
        RunConfig.from_yaml(path)


def test_report_to_flag(capsys):
    parser = build_parser()
    args = parser.parse_args(["run", "--output-dir", "x", "--report-to", "tensorboard,trackio"])
    assert args.report_to == "tensorboard,trackio"
    assert parser.parse_args(["run", "--output-dir", "x"]).report_to is None  # the config's
    for command in ("tokenizer-train", "rec-train"):
        assert parser.parse_args([command, "x", "--report-to", "wandb"]).report_to == "wandb"
    with pytest.raises(SystemExit) as exit_:
        parser.parse_args(["run", "--output-dir", "x", "--report-to", "tensorbord"])
    assert exit_.value.code == 2
    assert "argument --report-to: ['tensorbord'] not one of" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # stages that do not train have no logs to send
        parser.parse_args(["evaluate", "x", "--report-to", "tensorboard"])


def test_run_config_from_the_command_line_takes_the_flag(tmp_path):
    from store_hf.cli import _run_config_from_args

    path = tmp_path / "run.yaml"
    path.write_text(f"output_dir: {tmp_path / 'out'}\nreport_to: trackio\n")
    args = build_parser().parse_args(["run", str(path)])
    assert _run_config_from_args(args).report_to == "trackio"
    args = build_parser().parse_args(["run", str(path), "--report-to", "tensorboard"])
    assert _run_config_from_args(args).report_to == "tensorboard"  # flags over the file


def test_an_integration_that_is_not_installed_stops_the_run_before_it_starts(tmp_path, monkeypatch):
    import transformers.integrations

    from store_hf.pipeline import Pipeline

    monkeypatch.setattr(transformers.integrations, "get_available_reporting_integrations", list)
    out = tmp_path / "out"
    pipeline = Pipeline(RunConfig(output_dir=str(out), preset="tiny", report_to="tensorboard"))
    with pytest.raises(PipelineError, match=r"report_to: \['tensorboard'\] not installed"):
        pipeline.run()
    assert not out.exists()  # before anything is written


def test_the_tokenizer_stage_writes_tensorboard_events_under_the_run_folder(tmp_path, embedded):
    """The tiny preset's tokenizer stage (seconds) with ``report_to: tensorboard``: event files
    under ``<run>/logs/tokenizer``, none under the Trainer's checkpoint folder."""
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tiny import write_generic_dataset

    from store_hf.pipeline import Pipeline

    items, interactions = write_generic_dataset(tmp_path / "data", embedded, num_users=60)
    path = tmp_path / "run.yaml"
    path.write_text(
        f"output_dir: {tmp_path / 'out'}\npreset: tiny\nreport_to: tensorboard\n"
        f"dataset_format: generic\nitems: {items}\ninteractions: {interactions}\n"
        "tokenizer:\n  max_items: 32\n"
    )
    Pipeline(RunConfig.from_yaml(path)).run(until="tokenizer")
    logs = tmp_path / "out" / "logs" / "tokenizer"
    assert list(logs.glob("events.out.tfevents.*"))
    assert not list((tmp_path / "out" / "checkpoints").rglob("events.out.tfevents.*"))
    events = EventAccumulator(str(logs))
    events.Reload()
    assert "train/loss" in events.Tags()["scalars"]
    assert TENSORBOARD_ENV not in os.environ  # the next Trainer is not sent there
