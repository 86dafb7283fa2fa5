"""Every ```python block in docs/ and the README runs (blocks of one file share a namespace)."""

import os
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = sorted([*ROOT.glob("docs/*.md"), ROOT / "README.md"])
BLOCK = re.compile(r"```python\n(.*?)```", re.S)


@pytest.mark.parametrize("path", DOCS, ids=lambda p: p.name)
def test_doc_examples_run(path, tmp_path, monkeypatch):
    blocks = BLOCK.findall(path.read_text())
    if not blocks:
        pytest.skip(f"{path.name} has no python examples")
    monkeypatch.chdir(tmp_path)  # examples write to relative paths such as runs/
    if path.name == "README.md":  # its quick start loads what `make demo` saves: a tiny stand-in
        from tiny import save_tiny_recommender

        save_tiny_recommender(tmp_path / "runs" / "demo" / "recommender" / "model")
    namespace: dict = {"__name__": f"doc_{path.stem}"}
    for i, code in enumerate(blocks):
        try:
            exec(compile(code, f"{path.name}[block {i}]", "exec"), namespace)
        except Exception as e:  # name the block in the failure
            raise AssertionError(f"{path.name} block {i} failed: {e!r}\n{code}") from e
    assert os.getcwd() == str(tmp_path)
