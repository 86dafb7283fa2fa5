import importlib
import logging
import os
import subprocess
import sys
import traceback
from pathlib import Path
from typing import NamedTuple

import pytest

if os.environ.get("PYTEST_XDIST_WORKER"):
    # `make test` runs one pytest-xdist worker per core: one torch thread each (and in the
    # scripts they start), since two 2-thread torch processes on 2 cores spend most of their
    # time waiting at each other's thread barriers. Set before anything imports torch.
    os.environ["OMP_NUM_THREADS"] = "1"
    os.environ["MKL_NUM_THREADS"] = "1"

#: Session fixtures that build a model or a run: the tests that use one are kept on one
#: pytest-xdist worker (``--dist loadgroup``), so each is built once per test run.
SHARED_BUILDS = ("shared_tiny_run", "tiny_recommender_folder")


def xdist_group(item: pytest.Item) -> str | None:
    """The pytest-xdist group of a test: the first shared build it uses, else its module where
    it uses a module- or class-scoped fixture (the real SmolLM2, a trained TIGER...), so that
    such a fixture too is built on one worker only; ``None``: any worker."""
    names = getattr(item, "fixturenames", ())
    for name in SHARED_BUILDS:
        if name in names:
            return name
    defs = getattr(getattr(item, "_fixtureinfo", None), "name2fixturedefs", {})
    if any(defs.get(name) and defs[name][-1].scope in ("module", "class") for name in names):
        return item.nodeid.split("::")[0]
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        group = xdist_group(item)
        if group is not None:
            item.add_marker(pytest.mark.xdist_group(group))


ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def shared_path(*parts: str) -> Path:
    """A path under ../shared/data, skipping the test cleanly where that folder is absent."""
    p = SHARED_DATA.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"shared data not available: {p}")
    return p


@pytest.fixture(scope="session")
def embedded():
    from store_hf.data import load_embedded_dataset

    return load_embedded_dataset()


# ------------------------------------------------------------------ shared tiny models and runs
# Built once per test session (each takes seconds to minutes on 2 cores); tests that change
# what they get work on a copy.
@pytest.fixture(scope="session")
def tiny_recommender_folder(tmp_path_factory) -> Path:
    """A saved recommender of 40 items ``i0`` ... ``i39`` (v 3, k 16) on a tiny random OPT,
    with SmolLM2's tokenizer (``tiny.save_tiny_recommender``). Read-only: copy it to change it."""
    from tiny import save_tiny_recommender

    return save_tiny_recommender(tmp_path_factory.mktemp("tiny-recommender") / "model")


@pytest.fixture(scope="session")
def tiny_recommender(tiny_recommender_folder):
    """:data:`tiny_recommender_folder` loaded by the package, in eval mode."""
    from store_hf.modeling_store import StoreForGenerativeRec

    return StoreForGenerativeRec.from_pretrained(tiny_recommender_folder).eval()


class TinyRun(NamedTuple):
    """A finished ``store-hf run``: ``root/data`` (its generic dataset), ``out`` (``root/out``)
    and the command-line arguments that made it."""

    root: Path
    out: Path
    args: list[str]


@pytest.fixture(scope="session")
def shared_tiny_run(tmp_path_factory, embedded) -> TinyRun:
    """``store-hf run`` of the tiny preset on the first 150 embedded users (generic format),
    codebook 32 clusters on 8 PCA dimensions (not the defaults, so that settings are seen to
    reach the stages); about a minute. Read-only: a test that changes the run works on a copy."""
    from tiny import tiny_run_args

    from store_hf.cli import main

    root = tmp_path_factory.mktemp("tiny-run")
    args = tiny_run_args(root, embedded, "--codebook-size", "32", "--pca-dim", "8")
    assert main(args) == 0
    return TinyRun(root, root / "out", args)


# ------------------------------------------------------------------ scripts, in this process
@pytest.fixture
def script_cli(capsys, caplog, monkeypatch):
    """``python SCRIPT ARGS`` (a script of ``benchmarks/`` or ``examples/``, with a ``main()``)
    run in this process, from the repository root (a subprocess would import torch and
    transformers again, about 10 s of CPU per call): a CompletedProcess with the exit status, stdout, and stderr followed by the log records (INFO
    and up). As from the interpreter: ``SystemExit("message")`` gives status 1 and the message on
    stderr, an uncaught exception status 1 and its traceback. Torch's thread count is restored
    after each call (``--threads`` sets it)."""
    import torch

    monkeypatch.syspath_prepend(str(ROOT))  # benchmarks/, examples/: namespace packages
    monkeypatch.chdir(ROOT)
    caplog.set_level(logging.INFO)

    def run(script: str, *args: str) -> subprocess.CompletedProcess:
        module = importlib.import_module(".".join(Path(script).with_suffix("").parts))
        argv = [script, *map(str, args)]
        capsys.readouterr()
        caplog.clear()
        monkeypatch.setattr(sys, "argv", argv)
        threads, message = torch.get_num_threads(), ""
        try:
            code = module.main() or 0
        except SystemExit as e:  # argparse's error() (status 2) or SystemExit("why")
            if isinstance(e.code, str):
                code, message = 1, e.code + "\n"
            else:
                code = e.code or 0
        except Exception:
            code, message = 1, traceback.format_exc()
        finally:
            torch.set_num_threads(threads)
        out = capsys.readouterr()
        return subprocess.CompletedProcess(argv, code, out.out, out.err + message + caplog.text)

    return run
