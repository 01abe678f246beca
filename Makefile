# Rocket Relay — `make run` serves, `make test` runs the whole suite, `make demo` serves against
# the bundled provider emulator. Everything installs into .venv on first use.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export LITELLM_LOCAL_MODEL_COST_MAP := True

# The second test pass runs the end-to-end suite on the production backends.
TEST_PG ?= postgresql+psycopg://postgres@127.0.0.1:5432/test
TEST_REDIS ?= redis://127.0.0.1:6379/15
DEMO_PORT ?= 9100

.PHONY: run test demo install dev clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $@ $(VENV)/.installed

install: $(VENV)/.installed
dev: $(VENV)/.installed-dev

# `relay serve` applies migrations first and, on an empty database, creates the `dev` account.
run: install
	$(BIN)/relay serve

test: dev
	@echo "== pass 1: SQLite + in-process limiter (plus unit tests on SQLite, PostgreSQL and Redis)"
	$(BIN)/python -m pytest -q
	@echo "== pass 2: end-to-end on PostgreSQL + Redis"
	RELAY_TEST_DATABASE_URL=$(TEST_PG) RELAY_TEST_REDIS_URL=$(TEST_REDIS) $(BIN)/python -m pytest -q tests/e2e

# The emulator answers every seed example; its keys join the shared pool via the environment.
demo: install
	@$(BIN)/python -m tests.emulator --port $(DEMO_PORT) & emulator=$$!; \
	trap 'kill $$emulator 2>/dev/null' EXIT; \
	RELAY_OPENAI_BASE_URL=http://127.0.0.1:$(DEMO_PORT)/v1 \
	RELAY_ANTHROPIC_BASE_URL=http://127.0.0.1:$(DEMO_PORT) \
	OPENAI_API_KEY=sk-demo-openai ANTHROPIC_API_KEY=sk-ant-demo \
	$(BIN)/relay serve

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache
