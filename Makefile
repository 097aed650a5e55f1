# The developer's vocabulary: `make run` (the whole broker locally), `make test` (every check).
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV := .venv
BIN := $(VENV)/bin
# Python 3.13 from PATH first, then from pyenv.
PYTHON313 ?= $(shell for p in $$(command -v python3.13) $${PYENV_ROOT:-$$HOME/.pyenv}/versions/3.13*/bin/python3.13; do \
	"$$p" -c 'import sys; assert sys.version_info[:2] == (3, 13)' 2>/dev/null && { echo "$$p"; break; }; done)
export PATH := $(CURDIR)/$(BIN):$(dir $(PYTHON313)):$(PATH)
export SAM_CLI_TELEMETRY := 0
# Byte-code and pytest's rewritten test modules are kept between runs (a fresh run compiles them again).
unexport PYTHONDONTWRITEBYTECODE

.PHONY: help venv run test test-fast lint unit validate build bench bench-smoke clean browser-deps

help:
	@echo "make run    - the whole broker locally (embedded AWS + Webex simulator)"
	@echo "make test   - every check: ruff, mypy, pytest, sam validate (both forms), cfn-lint, sam build, bench-smoke"
	@echo "make test-fast - after each change: ruff, mypy, the unit tier, then integration and simulator (~45 s)"
	@echo "make bench  - performance figures: cold start, warm overhead, refresh throughput, size, memory, cost (~14 min)"
	@echo "make bench-smoke - the same benchmark at tiny sizes (< 1 min): proves it still runs"
	@echo "make browser-deps - Debian's headless Chromium for the browser test (apt-get install chromium)"

$(BIN)/.installed: requirements-dev.txt pyproject.toml clients/python/pyproject.toml
	@test -n "$(PYTHON313)" || { echo "Python 3.13 not found on PATH or under pyenv" >&2; exit 1; }
	"$(PYTHON313)" -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e . -e clients/python
	touch $@

venv: $(BIN)/.installed

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# Every tier; two workers, each test file on one of them (an e2e file's module-scoped stacks are made once).
unit: venv
	$(BIN)/pytest -n 2 --dist loadfile

# The loop to run after each change: lint, types, the unit tier first (a pure rule that broke shows
# in seconds), then the integration and simulator tiers on three workers, each stealing the others'
# queues at the end (every test sets up its own state, so any test runs on any worker). Three on two
# cores: while one waits out a deadline or a lease, the other two keep both cores busy.
test-fast: venv
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/pytest -q tests/unit clients/python/tests
	$(BIN)/pytest -n 3 --dist worksteal tests/integration tests/simulator

validate: venv
	$(BIN)/sam validate --lint
	$(BIN)/sam validate --region us-east-1
	$(BIN)/cfn-lint template.yaml

build: venv
	$(BIN)/sam build

run: venv
	$(BIN)/python -m devstack.runner

# Tables on stdout, JSON in bench/results/ (gitignored); exits non-zero only if a section crashed.
bench: venv
	$(BIN)/python -m bench.run

bench-smoke: venv
	$(BIN)/python -m bench.run --smoke

test: lint unit validate build bench-smoke

# The browser test drives Debian's chromium; Playwright's own browser download is not used.
browser-deps:
	command -v chromium >/dev/null || { sudo=$$( [ $$(id -u) -eq 0 ] || echo sudo ); \
		$$sudo apt-get update -qq && $$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; }

clean:
	rm -rf $(VENV) .aws-sam .pytest_cache .ruff_cache
