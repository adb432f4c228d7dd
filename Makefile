# longrun: the two commands a newcomer needs are `make run` and `make test`.
# Both set up everything a fresh machine lacks (virtualenv, pip, npm) first.

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
CHECKOV_VENV := .venv-checkov
PYTEST_ARGS ?=

.PHONY: help setup run test lint typecheck pytest bench chaos clean

help:
	@echo "make run    - set up, start Azurite (or reuse it) and serve the app on http://127.0.0.1:7071"
	@echo "make test   - set up, then ruff, mypy and every test (Azurite is started by the tests)"
	@echo "make bench  - run the benchmarks in bench/ and print their figures"

$(VENV)/.installed: requirements.txt requirements-dev.txt client/pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	# The client package and its `longrun` console script (tests/client run .venv/bin/longrun).
	$(PY) -m pip install --quiet --disable-pip-version-check -e ./client
	touch $@

# checkov pins its own pycep-parser and friends, so it lives in a virtualenv of its own.
$(CHECKOV_VENV)/.installed: requirements-checkov.txt
	test -x $(CHECKOV_VENV)/bin/python || $(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-checkov.txt
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

CHECKOV_SETUP := $(if $(wildcard requirements-checkov.txt),$(CHECKOV_VENV)/.installed,)

setup: $(VENV)/.installed node_modules/.installed

run: setup
	$(PY) -m devhost --with-azurite

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: setup
	$(VENV)/bin/mypy

pytest: setup $(CHECKOV_SETUP)
	$(PY) -m pytest $(PYTEST_ARGS)

test: lint typecheck pytest

bench: setup
	$(PY) -m bench

# The fault suite (not part of `make test`): `make chaos CHAOS_ARGS=--short` for the 3-minute run.
chaos: setup
	$(PY) -m bench.chaos $(CHAOS_ARGS)

clean:
	rm -rf $(VENV) $(CHECKOV_VENV) node_modules .azurite .mypy_cache .ruff_cache .pytest_cache .hypothesis
