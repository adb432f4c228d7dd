# longrun: the two commands a newcomer needs are `make run` and `make test`.
# Both set up everything a fresh machine lacks (virtualenv, pip, npm) first.

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
CHECKOV_VENV := .venv-checkov
PYTEST_ARGS ?=

.PHONY: help setup vendor browser run test lint typecheck pytest bench chaos clean

help:
	@echo "make run    - set up, start Azurite (or reuse it) and serve the app on http://127.0.0.1:7071"
	@echo "make test   - set up, then ruff, mypy and every test (Azurite is started by the tests)"
	@echo "make bench  - run the benchmarks in bench/ and print their figures"
	@echo "make vendor - copy the dashboard's browser libraries from node_modules into web/vendor/ (part of setup)"

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

# SCARF_ANALYTICS=false: swagger-ui-dist's dependency @scarf/scarf would report the install to its maker.
node_modules/.installed: package.json package-lock.json
	SCARF_ANALYTICS=false npm ci --no-audit --no-fund --loglevel=error
	touch $@

CHECKOV_SETUP := $(if $(wildcard requirements-checkov.txt),$(CHECKOV_VENV)/.installed,)

# The dashboard's browser libraries, copied from node_modules into web/vendor/ (git-ignored, deployed:
# azd's prepackage hook runs this target; see docs/dashboard.md). Only the files the pages load.
VENDOR_FILES := web/vendor/uplot/uPlot.iife.min.js web/vendor/uplot/uPlot.min.css \
	web/vendor/swagger-ui/swagger-ui-bundle.js web/vendor/swagger-ui/swagger-ui.css
web/vendor/.installed: node_modules/.installed package.json
	rm -rf web/vendor
	mkdir -p web/vendor/uplot web/vendor/swagger-ui
	cp node_modules/uplot/dist/uPlot.iife.min.js node_modules/uplot/dist/uPlot.min.css node_modules/uplot/LICENSE web/vendor/uplot/
	cp node_modules/swagger-ui-dist/swagger-ui-bundle.js node_modules/swagger-ui-dist/swagger-ui.css \
	   node_modules/swagger-ui-dist/LICENSE node_modules/swagger-ui-dist/NOTICE web/vendor/swagger-ui/
	for f in $(VENDOR_FILES); do test -s $$f || { echo "make vendor: $$f is missing" >&2; exit 1; }; done
	touch $@

vendor: web/vendor/.installed

# The dashboard tests drive Debian's Chromium through Playwright (no browser download).
/usr/bin/chromium:
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium

browser: /usr/bin/chromium

setup: $(VENV)/.installed node_modules/.installed web/vendor/.installed

run: setup
	@echo "Dashboard: http://127.0.0.1:7071/api/ui   Swagger UI: http://127.0.0.1:7071/api/docs"
	$(PY) -m devhost --with-azurite

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: setup
	$(VENV)/bin/mypy

pytest: setup browser $(CHECKOV_SETUP)
	$(PY) -m pytest $(PYTEST_ARGS)

test: lint typecheck pytest

bench: setup
	$(PY) -m bench

# The fault suite (not part of `make test`): `make chaos CHAOS_ARGS=--short` for the 3-minute run.
chaos: setup
	$(PY) -m bench.chaos $(CHAOS_ARGS)

clean:
	rm -rf $(VENV) $(CHECKOV_VENV) node_modules web/vendor .azurite .mypy_cache .ruff_cache .pytest_cache .hypothesis
