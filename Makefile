# `make train` and `make test` set everything up from a clean clone: uv (installed with pip
# when missing), then `uv sync --locked` from the committed uv.lock.
SHELL := /bin/bash
PYTHON ?= python3
UV := $(shell command -v uv 2>/dev/null || echo "$(PYTHON) -m uv")
RUN := $(UV) run --locked --no-sync

PROJECT_SOURCES := train.py evaluate.py framework lightning_modules datamodules callbacks analysis benchmarks examples tests

.PHONY: help setup train test test-fast bench lint clean data
.DEFAULT_GOAL := help

help:  ## these targets (plain `make`)
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/^([a-z-]+):[^#]*## /  make \1\t/' | expand -t 18

setup:  ## uv (with pip, when missing) and the locked environment in .venv
	@$(UV) --version >/dev/null 2>&1 || $(PYTHON) -m pip install --quiet uv || $(PYTHON) -m pip install --quiet --user uv
	@UV_COMPILE_BYTECODE=1 $(UV) sync --locked --quiet  # .pyc at install: each process imports torch 2-3x faster
	@$(RUN) python -m compileall -q $(PROJECT_SOURCES)  # ours: under PYTHONDONTWRITEBYTECODE=1 each process compiled them

train: setup  ## LeNet-5 on the bundled digits; prints the test accuracy and the run's directory
	$(RUN) python train.py $(ARGS)

# Tests run in TEST_WORKERS pytest-xdist processes, one thread each (tiny tensors run best on one thread);
# --dist loadscope keeps each module in one worker, so a module-scoped fixture runs once; --no-loadscope-reorder keeps
# the order of tests/conftest.py (the longest modules first) instead of the number of tests.
TEST_WORKERS ?= 2
PYTEST := OMP_NUM_THREADS=1 $(RUN) pytest -q -n $(TEST_WORKERS) --dist loadscope --no-loadscope-reorder

test: setup  ## the whole offline test suite (slow tests included)
	$(PYTEST) $(ARGS)

test-fast: setup  ## everything but the tests marked slow
	$(PYTEST) -m "not slow" $(ARGS)

# Every script's last stdout line (one JSON object) goes into logs/bench/last_lines.jsonl; summary.py
# turns them into the closing table. BENCHMARKS picks scripts: `make bench BENCHMARKS=benchmarks/overhead.py`.
BENCHMARKS ?= $(filter-out benchmarks/summary.py,$(wildcard benchmarks/*.py))
# BENCH_ARGS go to every script: `make bench BENCH_ARGS=--smoke` runs every script at smoke size (a check that they
# work, in about a minute).
BENCH_ARGS ?=

# A script that fails (e.g. a flag in BENCH_ARGS it does not take) gets a row saying so; the others still run,
# and make then exits 1.
bench: setup  ## speed and memory ratios against named baselines (not tests), then a met/missed table
	@mkdir -p logs/bench && : > logs/bench/last_lines.jsonl
	@set -o pipefail; failed=0; for script in $(BENCHMARKS); do echo "== $$script"; \
		if $(RUN) python $$script $(BENCH_ARGS) | tee logs/bench/output.txt; then \
			tail -n 1 logs/bench/output.txt >> logs/bench/last_lines.jsonl; \
		else code=$$?; failed=1; printf '{"benchmark": "%s", "failed": "exit code %s"}\n' \
			"$$(basename $$script .py)" $$code >> logs/bench/last_lines.jsonl; fi; done; \
	echo "== summary ($(shell env -u OMP_NUM_THREADS nproc 2>/dev/null || echo ?) CPUs)"; \
	$(RUN) python benchmarks/summary.py logs/bench/last_lines.jsonl && exit $$failed

data: setup  ## MNIST into DATA_DIR (default ./data) and the ImageNet AlexNet convolutions into the torch hub cache, once
	$(RUN) python -m framework.fetch_data

lint: setup  ## ruff
	$(RUN) ruff check .

clean:  ## deletes logs/ (every run's outputs too) and pytest's cache
	rm -rf logs .pytest_cache
