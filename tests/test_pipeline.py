"""`store-hf run` end to end on the tiny preset, with a user's own catalogue in the generic format."""

import csv
import json
import subprocess
import sys

import pytest

from store_hf.cli import main
from store_hf.pipeline import STAGES, Pipeline, PipelineError, RunConfig


def _write_generic(folder, embedded, num_users=150):
    """The first users of the embedded Amazon set, rewritten as generic items/interactions."""
    folder.mkdir(parents=True, exist_ok=True)
    rows, used = [], set()
    for user, seq in zip(
        embedded.sequences["user_id"][:num_users], embedded.sequences["item_ids"][:num_users]
    ):
        for t, item in enumerate(seq):
            rows.append((user, item, 1_600_000_000 + t))
            used.add(item)
    with open(folder / "interactions.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["user_id", "item_id", "timestamp"])
        w.writerows(rows)
    with open(folder / "items.jsonl", "w") as f:
        for row in embedded.items:
            if row["item_id"] in used:
                f.write(json.dumps({k: row[k] for k in ("item_id", "title", "brand")}) + "\n")
    return folder / "items.jsonl", folder / "interactions.csv"


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, embedded):
    root = tmp_path_factory.mktemp("pipeline")
    items, interactions = _write_generic(root / "data", embedded)
    args = ["run", "--preset", "tiny", "--output-dir", str(root / "out")]
    args += ["--dataset-format", "generic", "--items", str(items)]
    args += ["--interactions", str(interactions)]
    assert main(args) == 0
    return root / "out", args


def test_every_stage_finishes_and_the_report_has_the_table(tiny_run, capsys):
    out, _ = tiny_run
    for stage in STAGES:
        assert json.loads((out / stage / "stage.json").read_text())["stage"] == stage
    assert not list(out.glob("*.partial"))
    summary = json.loads((out / "metrics.json").read_text())
    assert set(summary["systems"]) == {"STORE", "MostPopular"}
    for metrics in summary["systems"].values():
        assert all(0.0 <= metrics[f"recall@{k}"] <= 1.0 for k in (1, 5, 10, 20))
        assert metrics["num_users"] == summary["systems"]["STORE"]["num_users"] > 0
    report = (out / "report.md").read_text()
    assert "| STORE |" in report and "| MostPopular |" in report and "Codebook" in report
    for png in ("training_curves.png", "recall_at_k.png", "cluster_sizes.png"):
        assert (out / "report" / png).stat().st_size > 1000
    codebook = json.loads((out / "codebook" / "statistics.json").read_text())
    assert codebook["collision_rate_after"] == 0.0


def test_a_second_run_skips_finished_stages(tiny_run, caplog):
    out, args = tiny_run
    before = {s: (out / s / "stage.json").stat().st_mtime_ns for s in STAGES}
    with caplog.at_level("INFO"):
        assert main(args) == 0
    assert {s: (out / s / "stage.json").stat().st_mtime_ns for s in STAGES} == before
    assert sum("already done" in r.message for r in caplog.records) == len(STAGES)


def test_one_stage_can_be_redone_alone(tiny_run):
    out, _ = tiny_run
    rec = (out / "recommender" / "stage.json").stat().st_mtime_ns
    old = (out / "evaluate" / "stage.json").stat().st_mtime_ns
    assert main(["evaluate", str(out), "--force"]) == 0
    assert (out / "evaluate" / "stage.json").stat().st_mtime_ns > old
    assert (out / "recommender" / "stage.json").stat().st_mtime_ns == rec


def test_a_failed_stage_leaves_no_finished_folder(tiny_run, tmp_path, monkeypatch):
    out, _ = tiny_run
    config = RunConfig.from_dict(json.loads((out / "run_config.json").read_text())["config"])
    pipeline = Pipeline(config, force=True)

    def boom(folder):
        (folder / "half-written.json").write_text("{")
        raise KeyboardInterrupt  # killed mid-stage

    monkeypatch.setattr(pipeline, "_report", boom)
    with pytest.raises(KeyboardInterrupt):
        pipeline.report()
    assert (out / "report").is_dir()  # the old finished stage is untouched...
    assert not (out / "report" / "half-written.json").exists()
    assert (out / "report.partial" / "half-written.json").exists()  # ...the attempt is aside


def test_model_folder_recommends_without_the_package(tiny_run, tmp_path):
    out, _ = tiny_run
    folder = out / "recommender" / "model"
    test = json.loads((out / "evaluate" / "stage.json").read_text())
    assert test["metrics"]["STORE"]["num_users"] > 0
    assert main(["recommend", str(out), "--history", *_history(folder), "-k", "5"]) == 0
    code = (
        "import sys, json\n"
        "sys.modules['store_hf'] = None\n"
        "from transformers import AutoModelForCausalLM\n"
        f"m = AutoModelForCausalLM.from_pretrained({str(folder)!r}, trust_remote_code=True)\n"
        f"print(json.dumps(m.recommend([{_history(folder)!r}], k=5).item_ids[0]))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    from store_hf.modeling_store import StoreForGenerativeRec

    local = StoreForGenerativeRec.from_pretrained(folder).recommend([_history(folder)], k=5)
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == local.item_ids[0]


def _history(folder):
    ids = json.loads((folder / "config.json").read_text())["item_ids"]
    return ids[:3]


def test_bad_input_gets_one_line_errors(tiny_run, tmp_path, capsys):
    out, args = tiny_run
    snapshot = (out / "run_config.json").read_text()
    cases = [
        (["run", "--preset", "huge", "--output-dir", str(tmp_path / "a")], "huge"),
        (
            [
                "run",
                "--output-dir",
                str(tmp_path / "b"),
                "--dataset-format",
                "generic",
                "--items",
                str(tmp_path / "missing.jsonl"),
                "--interactions",
                str(tmp_path / "x.csv"),
            ],
            "missing.jsonl",
        ),
        ([*args[:-6], "--seed", "7", *args[-6:]], "another run"),  # a folder from another run
    ]
    bad_yaml = tmp_path / "run.yaml"
    bad_yaml.write_text(f"output_dir: {tmp_path / 'c'}\npreset: tiny\nrecommender:\n  lorra_r: 8\n")
    cases.append((["run", str(bad_yaml)], "lorra_r"))
    for argv, needle in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert needle in err and len(err.splitlines()) == 1, err
    assert (out / "run_config.json").read_text() == snapshot
    with pytest.raises(PipelineError, match="unknown key"):
        RunConfig.from_dict({"output_dir": "x", "presett": "cpu"})


@pytest.mark.parametrize("name", ["mind-small-subset", "movielens-latest-small"])
def test_run_on_the_shared_datasets(name, tmp_path, capsys):
    from conftest import shared_path

    folder = shared_path(name)
    config = tmp_path / "run.yaml"
    config.write_text(
        f"output_dir: {tmp_path / 'out'}\n"
        "preset: tiny\n"
        f"dataset: {folder}\n"
        "tokenizer:\n  max_items: 32\n"
        "recommender:\n  max_train_users: 6\n  max_eval_users: 8\n"
        "  joint_epochs: 0.5\n  num_epochs: 0.5\n"
    )
    assert main(["run", str(config)]) == 0
    summary = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert summary["systems"]["STORE"]["num_users"] == 8
    assert "| STORE |" in capsys.readouterr().out
    if name.startswith("mind"):  # a click log: the scoring mode is trained and evaluated on it
        scoring = summary["scoring"]
        assert scoring["impressions"] == "held-out logged impressions"
        assert scoring["num_impressions"] > 0 and 0.0 <= scoring["mrr"] <= 1.0
