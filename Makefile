# The two commands: `make dev` runs the whole system locally, `make test` checks it.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install test lint dev demo bench bench-quick clean console chromium

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

# The advisor console: npm with the committed lockfile, bundled by esbuild into dashboard/dist.
CONSOLE := dashboard/dist/app.js
$(CONSOLE): dashboard/package.json dashboard/package-lock.json dashboard/build.mjs $(wildcard dashboard/src/*)
	cd dashboard && npm ci --no-audit --no-fund --loglevel=error && npm run build

console: $(CONSOLE)

# The browser tests drive Debian's Chromium (Playwright's own download is not reachable).
chromium:
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "installing Debian's chromium for the browser tests"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# Coverage of the deployed code (shared/, functions/) fails the run below the floor.
COVERAGE_FLOOR ?= 93

test: lint console chromium
	$(BIN)/pytest --cov --cov-report=term --cov-fail-under=$(COVERAGE_FLOOR)

dev: $(STAMP) console
	$(BIN)/python -m devstack

demo: $(STAMP)
	$(BIN)/python -m devstack.demo

bench: $(STAMP)
	$(BIN)/python -m devstack.bench --output BENCHMARKS.md

bench-quick: $(STAMP)
	$(BIN)/python -m devstack.bench --quick --output BENCHMARKS-quick.md

clean:
	rm -rf $(VENV) .dev .pytest_cache .mypy_cache .ruff_cache dashboard/node_modules dashboard/dist
