"""The retrieval metrics as a Hugging Face ``evaluate`` module: ``evaluate.load`` of the
package's local script, offline, gives store_hf.metrics' numbers."""

import json
import os
import subprocess
import sys
from pathlib import Path

import evaluate
import numpy as np
import pytest

from store_hf.metrics import evaluate_module_path, ranking_metrics, target_ranks

ROOT = Path(__file__).resolve().parents[1]

# rank of the target: 1, 3 (= K of the cut-off 3), not retrieved, 2 once the repeat is dropped
# (3 with dedupe=False), not retrieved in an empty list
PREDICTIONS = [["a", "b", "c"], ["d", "e", "f", "g"], ["h", "i"], ["j", "j", "k"], []]
REFERENCES = ["a", "f", "z", "k", "a"]


@pytest.fixture(scope="module")
def metric():
    return evaluate.load(evaluate_module_path())


def test_the_path_is_a_folder_with_its_script_of_the_same_name():
    path = Path(evaluate_module_path())
    assert path.is_dir() and (path / f"{path.name}.py").is_file()


@pytest.mark.parametrize("dedupe", [True, False])
def test_compute_equals_the_package_metrics(metric, dedupe):
    ks = [1, 2, 3, 10]
    expected = ranking_metrics(target_ranks(PREDICTIONS, REFERENCES, dedupe=dedupe), ks)
    got = metric.compute(predictions=PREDICTIONS, references=REFERENCES, ks=ks, dedupe=dedupe)
    assert got == expected
    # the cut-off equal to a rank counts the hit; the not retrieved targets count 0
    assert got["recall@3"] == 3 / 5 and got["num_users"] == 5
    assert got["recall@2"] == (2 if dedupe else 1) / 5


def test_add_batch_equals_one_call_and_integer_ids(metric):
    rng = np.random.default_rng(0)
    predictions = [rng.choice(50, size=int(rng.integers(0, 12)), replace=False).tolist()]
    predictions += [rng.choice(50, size=10, replace=False).tolist() for _ in range(40)]
    references = rng.integers(0, 50, size=len(predictions)).tolist()
    expected = ranking_metrics(target_ranks(predictions, references), (1, 5, 10, 20))
    for start in range(0, len(predictions), 16):  # batches of an evaluation loop
        stop = start + 16
        metric.add_batch(predictions=predictions[start:stop], references=references[start:stop])
    got = metric.compute()  # default cut-offs, as the package's
    assert got == expected and 0 < got["recall@10"] < 1


def test_a_wrong_cut_off_is_the_package_error(metric):
    with pytest.raises(ValueError, match="k"):
        metric.compute(predictions=PREDICTIONS, references=REFERENCES, ks=[0])


def _python(code: str, tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    environment = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "HF_HOME": str(tmp_path / "hf"),
        "HF_MODULES_CACHE": str(tmp_path / "modules"),
        **env,
    }
    return subprocess.run(
        [sys.executable, "-c", code], env=environment, capture_output=True, text=True, timeout=300
    )


def test_loads_offline_without_reaching_the_hub(tmp_path):
    """A fresh process, empty caches, offline, and every HTTP(S) connection sent to a closed
    port: a local module must not need the network."""
    code = (
        "import json, evaluate, store_hf.metrics as m\n"
        "metric = evaluate.load(m.evaluate_module_path())\n"
        f"print(json.dumps(metric.compute(predictions={PREDICTIONS!r}, "
        f"references={REFERENCES!r}, ks=[1, 3])))\n"
    )
    unreachable = "http://127.0.0.1:9"
    done = _python(
        code,
        tmp_path,
        HF_HUB_OFFLINE="1",
        HF_EVALUATE_OFFLINE="1",
        HTTP_PROXY=unreachable,
        HTTPS_PROXY=unreachable,
        NO_PROXY="",
    )
    assert done.returncode == 0, done.stderr
    got = json.loads(done.stdout.strip().splitlines()[-1])
    assert got == ranking_metrics(target_ranks(PREDICTIONS, REFERENCES), (1, 3))


def test_without_the_package_the_error_says_to_install_it(tmp_path):
    code = (
        "import sys, evaluate\n"
        "from store_hf.metrics import evaluate_module_path\n"
        "path = evaluate_module_path()\n"
        "sys.modules['store_hf.metrics'] = None  # as where store-hf is not installed\n"
        "evaluate.load(path)\n"
    )
    done = _python(code, tmp_path, HF_HUB_OFFLINE="1")
    assert done.returncode != 0
    assert "ImportError: the store_ranking evaluate module computes with the store-hf" in (
        done.stderr
    )
    assert "pip install store-hf" in done.stderr
