# FakeAI Streams: every command a developer or CI needs. `make help` lists them.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=
TEST_WORKERS ?= 2
HOST ?= 127.0.0.1
PORT ?= 8000
CHAOS_ROUNDS ?= 3

.DEFAULT_GOAL := help
.PHONY: help install run test check fmt lint types bench chaos mutation clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP) ## Create .venv and install the project with its dev tools

run: $(STAMP) ## Start everything (embedded Redis, producer, metrics, edge); HOST=, PORT= to move it
	$(BIN)/fakeai-streams up --host $(HOST) --port $(PORT)

test: $(STAMP) ## Run the test suite against a real Redis it starts itself, in random order; TEST_WORKERS=2
	$(BIN)/python -m pytest -n $(TEST_WORKERS) $(PYTEST_ARGS)

fmt: $(STAMP) ## Format and auto-fix lint
	$(BIN)/ruff format shared services tests
	$(BIN)/ruff check --fix shared services tests

lint: $(STAMP) ## Format check and lint (ruff)
	$(BIN)/ruff format --check shared services tests
	$(BIN)/ruff check shared services tests

types: $(STAMP) ## mypy, strict on fakeai
	$(BIN)/mypy

check: lint types test ## Format check, lint, types (mypy strict), tests: what CI runs

bench: $(STAMP) ## Run the standard benchmark scenarios against a fresh local server
	$(BIN)/python -m fakeai.services.bench.scenarios --out BENCHMARKS.md

chaos: $(STAMP) ## Kill producer, edge, metrics, Redis in turn under `up` with 50 streams; CHAOS_ROUNDS=3
	FAKEAI_CHAOS_ROUNDS=$(CHAOS_ROUNDS) $(BIN)/python -m pytest -p no:cacheprovider -q -s \
		tests/e2e/test_e2e_chaos.py $(PYTEST_ARGS)

mutation: $(STAMP) ## Mutation testing of the guarantee modules (slow; not in check): docs/TESTING.md
	infra/scripts/mutation.sh

clean: ## Remove the virtualenv and caches
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build dist
