"""The baseline training scripts (examples/train_sasrec.py, examples/train_tiger.py) end to end
on the first 150 users of the embedded Amazon set: they rank the fixed test-user sample that
``store-hf evaluate`` ranks, their reported metrics are those of their saved ranks, and a rerun
with the same seed gives the same ranks."""

import json
from pathlib import Path

import pytest

from store_hf.baselines import MostPopular
from store_hf.data import leave_one_out, read_dataset, sample_users
from store_hf.metrics import ranking_metrics
from tests.tiny import write_generic_dataset

TEST_USERS = 20


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory, embedded):
    folder = tmp_path_factory.mktemp("generic")
    write_generic_dataset(folder, embedded)
    return folder


def _run(script_cli, script: str, data_dir: Path, out: Path, *extra: str) -> tuple[dict, dict]:
    cmd = ["--dataset", data_dir, "--output-dir", out, "--max-test-users", TEST_USERS]
    proc = script_cli(f"examples/{script}", *cmd, "--threads", "1", *extra)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((out / "metrics.json").read_text())
    assert json.loads(proc.stdout[proc.stdout.index("{\n") :]) == report  # printed as written
    return report, json.loads((out / "ranks.json").read_text())


def _check(report: dict, ranks: dict, data_dir: Path, system: str, max_history: int) -> None:
    dataset = read_dataset(data_dir)
    splits = leave_one_out(dataset, max_history=max_history)
    test = sample_users(splits["test"], TEST_USERS, 0)  # the default evaluation seed
    assert ranks["user_id"] == list(test["user_id"])
    assert report["test_users_evaluated"] == TEST_USERS < report["test_users_total"]
    assert report["test_users_note"].startswith("seeded random sample (eval seed 0)")
    assert report[system] == pytest.approx(ranking_metrics(ranks["ranks"], (1, 5, 10, 20)))
    popular = MostPopular().fit(splits["train"], item_ids=dataset.item_ids)
    expected = ranking_metrics(
        popular.rank_targets(test["history"], test["target"]), (1, 5, 10, 20)
    )
    assert report["most_popular"] == pytest.approx(expected)


def test_sasrec_script_ranks_the_evaluation_users_reproducibly(data_dir, tmp_path, script_cli):
    extra = ("--epochs", "3", "--patience", "1")
    report, ranks = _run(script_cli, "train_sasrec.py", data_dir, tmp_path / "a", *extra)
    _check(report, ranks, data_dir, "sasrec", max_history=50)
    assert (tmp_path / "a" / "model").is_dir() and 1 <= report["sasrec_epochs_run"] <= 3
    _, again = _run(script_cli, "train_sasrec.py", data_dir, tmp_path / "b", *extra)
    assert again == ranks  # seeded before the model is built


def test_tiger_script_ranks_the_evaluation_users(data_dir, tmp_path, script_cli):
    extra = ("--size", "cpu", "--epochs", "1", "--rqvae-epochs", "2", "--num-beams", "10")
    report, ranks = _run(script_cli, "train_tiger.py", data_dir, tmp_path, *extra)
    _check(report, ranks, data_dir, "tiger", max_history=20)
    assert (tmp_path / "codes.npy").is_file() and report["t5_epochs_run"] == 1
    assert set(report["seconds"]) >= {"load_and_split", "encode_texts", "train_t5", "total"}
