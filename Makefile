# Every target creates the virtualenv it needs, so each works on a fresh clone.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: all demo test lint format typecheck pytest bench bench-quick clean

all: test

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e . --group dev
	touch $(STAMP)

# The main demo: an ETL flow on the embedded in-memory store (no server needed).
demo: $(STAMP)
	$(BIN)/python examples/etl.py

# Lint, type-check, then the tests; the tests start a throwaway Redis themselves
# (set REDIS_URL to use an existing server instead).
test: lint typecheck pytest

lint: $(STAMP)
	$(BIN)/ruff check src tests examples benchmarks scripts
	$(BIN)/ruff format --check src tests examples benchmarks scripts

format: $(STAMP)
	$(BIN)/ruff format src tests examples benchmarks scripts
	$(BIN)/ruff check --fix src tests examples benchmarks scripts

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP)
	@scripts/ensure-redis-server.sh
	$(BIN)/python -m pytest

bench: $(STAMP)
	$(BIN)/python benchmarks/w3.py

bench-quick: $(STAMP)
	$(BIN)/python benchmarks/w3.py --quick

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
