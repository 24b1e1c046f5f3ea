# Every target creates the virtualenv it needs, so each works on a fresh clone.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: all demo demo-distributed test lint format typecheck pytest bench bench-quick soak clean

all: test

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e . --group dev
	touch $(STAMP)

# The main demo: an ETL flow on the embedded in-memory store (no server needed).
demo: $(STAMP)
	$(BIN)/python examples/etl.py

# The ETL flow across two services served by Celery workers (examples/distributed):
# starts a throwaway redis-server (unless DATAGRAPH_REDIS_URL names one) and the
# two workers, shows the run live, and stops everything it started.
demo-distributed: $(STAMP)
	$(BIN)/python -m examples.distributed.demo

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
	@scripts/ensure-test-tools.sh
	$(BIN)/python -m pytest

# The benchmark suite (docs/benchmarks.md): every performance target next to its
# baseline, measured in one run. It installs the peers it compares with (Celery,
# async-graph-data-flow) and matplotlib, and starts throwaway redis-servers and
# Celery workers itself. BENCH_ARGS passes options, e.g. BENCH_ARGS='--only W3'.
BENCH_STAMP := $(VENV)/.installed-bench

$(BENCH_STAMP): $(STAMP) pyproject.toml
	$(BIN)/python -m pip install --quiet -e . --group bench
	touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)
	$(BIN)/python -m benchmarks.suite $(BENCH_ARGS)

bench-quick: $(BENCH_STAMP)
	$(BIN)/python -m benchmarks.suite --quick $(BENCH_ARGS)

# The soak test (docs/reliability.md, "Soak"): 100 runs of a 5-processor flow kept in
# flight on a throwaway redis-server for SOAK_MINUTES (default 10); fails unless every
# output is exact, no key is left and worker RSS and Redis memory stay flat.
SOAK_MINUTES ?= 10

soak: $(BENCH_STAMP)
	$(BIN)/python -m benchmarks.soak --minutes $(SOAK_MINUTES) --json docs/images/soak.json --plot docs/images/soak.png

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
