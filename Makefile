# The two commands: `make dev` runs the whole system locally, `make test` checks it.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install test lint dev demo bench bench-quick clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# Coverage of the deployed code (shared/, functions/) fails the run below the floor.
COVERAGE_FLOOR ?= 93

test: lint
	$(BIN)/pytest --cov --cov-report=term --cov-fail-under=$(COVERAGE_FLOOR)

dev: $(STAMP)
	$(BIN)/python -m devstack

demo: $(STAMP)
	$(BIN)/python -m devstack.demo

bench: $(STAMP)
	$(BIN)/python -m devstack.bench --output BENCHMARKS.md

bench-quick: $(STAMP)
	$(BIN)/python -m devstack.bench --quick --output BENCHMARKS-quick.md

clean:
	rm -rf $(VENV) .dev .pytest_cache .mypy_cache .ruff_cache
