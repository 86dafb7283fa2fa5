"""`accelerate launch` with 2 CPU processes (gloo) trains both models like one process does, and
`encode_items` shards items across the processes and gathers them in order."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "tests" / "scripts" / "distributed_check.py"


def _run(command, env=None):
    proc = subprocess.run(command, capture_output=True, text=True, env=env, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]


def test_two_processes_match_one(tmp_path):
    accelerate = Path(sys.executable).with_name("accelerate")
    if not accelerate.is_file():
        pytest.fail("the accelerate launcher is missing next to this Python")
    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir(), two.mkdir()
    _run([sys.executable, str(SCRIPT), str(one)])
    config = ROOT / "examples" / "accelerate" / "cpu_2proc.yaml"
    env = {**os.environ, "ACCELERATE_USE_CPU": "true"}
    _run([str(accelerate), "launch", "--config_file", str(config), str(SCRIPT), str(two)], env)
    single, double = (json.loads((d / "losses.json").read_text()) for d in (one, two))
    assert (single["world"], double["world"]) == (1, 2)
    for stage in ("tokenizer", "recommender"):
        assert len(single[stage]) == len(double[stage]) >= 2
        torch.testing.assert_close(single[stage], double[stage], rtol=1e-4, atol=1e-4)
    a, b = (torch.load(d / "embeddings.pt") for d in (one, two))
    assert a.shape == b.shape == (21, 4, 64)
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
