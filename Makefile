# `make run` and `make test` work on a machine with only Python >= 3.11 and make.
PYTHON ?= python3
VENV := .venv
VENV_PY := $(VENV)/bin/python
RUNTIME_STAMP := $(VENV)/.runtime-installed
DEV_STAMP := $(VENV)/.dev-installed

.PHONY: run test lint models bench-proxy bench-batch results clean

$(VENV_PY):
	$(PYTHON) -m venv $(VENV)
	$(VENV_PY) -m pip install --quiet --upgrade pip

$(RUNTIME_STAMP): requirements.txt | $(VENV_PY)
	$(VENV_PY) -m pip install --quiet -r requirements.txt
	touch $@

$(DEV_STAMP): requirements.txt requirements-dev.txt | $(VENV_PY)
	$(VENV_PY) -m pip install --quiet -r requirements-dev.txt
	touch $(RUNTIME_STAMP) $@

## Start every process of the suite (Ctrl-C stops them all).
run: $(RUNTIME_STAMP)
	$(VENV_PY) scripts/run_suite.py

## Lint and run the whole test suite.
test: $(DEV_STAMP)
	$(VENV_PY) -m ruff check .
	$(VENV_PY) -m pytest $(PYTEST_ARGS)

lint: $(DEV_STAMP)
	$(VENV_PY) -m ruff check .
	$(VENV_PY) -m ruff format --check .

## Retrain and re-export the ONNX models and label file into models/.
models: $(DEV_STAMP)
	$(VENV_PY) -m src.ml.train --output-dir models

## Run the documented scenarios for real and write TEST_RESULTS.md.
results: $(DEV_STAMP)
	$(VENV_PY) scripts/record_results.py

bench-proxy: $(DEV_STAMP)
	$(VENV_PY) bench/bench_proxy.py $(BENCH_ARGS)

bench-batch: $(DEV_STAMP)
	$(VENV_PY) bench/bench_batch.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache data
