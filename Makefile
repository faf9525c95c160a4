# dsr-lake. `make help` lists the targets. Every target installs what it needs first.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help install promtool strace check test test-fast demo bench bench-quick bench-history bench-flat bench-spark bench-steps clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[spark,airflow,dev]'
	touch $(STAMP)

install: $(STAMP) promtool strace ## create .venv and install the project with everything the tests need

# promtool checks `dsr status --prometheus` (tests/cli/test_status.py); Debian's `prometheus` package ships it.
# Installed when missing and this is root with apt-get; otherwise the test skips, except under CI=true, where a
# promtool that cannot be installed fails here (and the test would fail too).
promtool: ## install promtool (Debian's prometheus package) when missing and possible
	@command -v promtool >/dev/null && exit 0; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends prometheus >/dev/null \
			&& command -v promtool >/dev/null && exit 0; \
	fi; \
	if [ "$${CI:-}" = true ]; then echo "promtool missing and not installable (apt-get install prometheus)" >&2; exit 1; fi; \
	echo "promtool missing (apt-get install prometheus): its test will skip" >&2

# strace counts the files the dsr process opens (tests/opens.py: its test, the Spark reads test, bench-spark); the
# same rule as promtool: installed when missing as root with apt-get, else its tests skip, except under CI=true.
strace: ## install strace (Debian's strace package) when missing and possible
	@command -v strace >/dev/null && exit 0; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends strace >/dev/null \
			&& command -v strace >/dev/null && exit 0; \
	fi; \
	if [ "$${CI:-}" = true ]; then echo "strace missing and not installable (apt-get install strace)" >&2; exit 1; fi; \
	echo "strace missing (apt-get install strace): the tests that count opened files will skip" >&2

check: $(STAMP) ## ruff + mypy
	$(BIN)/ruff check dsr dags jobs tests bench
	$(BIN)/mypy

test: $(STAMP) promtool strace ## the whole test suite (Delta, GE, Spark Connect on Sail, Airflow, S3 on moto)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-fast: $(STAMP) promtool strace ## the suite without the slow end-to-end tests
	$(BIN)/python -m pytest -m 'not slow' $(PYTEST_ARGS)

.PHONY: test-crash
test-crash: $(STAMP) ## the full sweep of purge crash trials: kill -9 at every file event and crash point, local and S3 (long)
	DSR_CRASH_FULL=1 $(BIN)/python -m pytest -m crash_full tests/crash $(PYTEST_ARGS)

demo: $(STAMP) ## build a demo lake and run the Airflow DAG on it end to end (./demo)
	$(BIN)/dsr demo --dir demo

bench: $(STAMP) strace ## dsr against its competitors (2M rows, 2 layouts, K=1..10,000; BENCH_ARGS=--large for 20M), then bench-history, bench-flat and bench-spark
	$(BIN)/python bench/compare.py $(BENCH_ARGS)
	$(BIN)/python bench/history.py
	$(BIN)/python bench/flat.py
	$(BIN)/python bench/spark_scale.py

bench-history: $(STAMP) ## bookkeeping on a long history (100,000 requests, 500,000 audit events)
	$(BIN)/python bench/history.py

bench-flat: $(STAMP) ## erase memory against table size with the touched files fixed (2M rows in 100 files, then 10x)
	$(BIN)/python bench/flat.py

bench-spark: $(STAMP) strace ## the dsr process on Spark (Sail in its own process) at 2M rows / 100 files and 20M / 1,000: peak RSS, data files and bytes it reads, run vs MERGE alone
	$(BIN)/python bench/spark_scale.py

bench-quick: $(STAMP) ## the comparative benchmark on a small lake, and the history bench on a short one
	$(BIN)/python bench/compare.py --quick
	$(BIN)/python bench/history.py --quick

bench-steps: $(STAMP) ## every step of one run timed, with scans and peak memory
	$(BIN)/python bench/run.py

clean: ## remove the venv, the demo and caches
	rm -rf $(VENV) demo .pytest_cache .mypy_cache .ruff_cache
