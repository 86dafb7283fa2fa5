from pathlib import Path
from typing import NamedTuple

import pytest

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
