# Two commands on a fresh machine:  `make demo` (the main job, no downloads) and `make test` (the suite).
# `make demo` installs the package alone; only `make test` (and `lint`, `unit`) add the dev extras.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.raddino-installed
DEV_STAMP := $(VENV)/.raddino-dev-installed

.PHONY: demo test lint unit clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $(STAMP)

$(DEV_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(DEV_STAMP)

demo: $(STAMP)
	$(BIN)/raddino demo --out demo

lint: $(DEV_STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/mypy
	$(BIN)/lint-imports

unit: $(DEV_STAMP)
	$(BIN)/python -m pytest -n 2 --dist loadgroup

test: lint unit

clean:
	rm -rf $(VENV) demo .pytest_cache .mypy_cache .ruff_cache
