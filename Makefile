PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Debian's Chromium drives the browser tests (Playwright never downloads a browser).
CHROMIUM := /usr/bin/chromium
# axe-core (npm), injected into the dashboard's pages by the browser tests.
AXE_VERSION := 4.14.1
AXE := build/axe/node_modules/axe-core/axe.min.js

.PHONY: setup demo test test-fast lint bench anchors-venv clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e ".[dev,ray]"
	touch $(STAMP)

$(CHROMIUM):
	apt-get update -q
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium

NPM := /usr/bin/npm

$(NPM):
	apt-get update -q
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q npm

$(AXE): | $(NPM)
	npm install --silent --no-audit --no-fund --prefix build/axe axe-core@$(AXE_VERSION)

setup: $(STAMP) $(CHROMIUM) $(AXE)

demo: $(STAMP)
	$(BIN)/medserve demo

test: $(STAMP) $(CHROMIUM) $(AXE)
	$(BIN)/ruff check src tests bench
	$(BIN)/lint-imports
	$(BIN)/pytest -q

# The development lane: everything but the tests marked slow (make test runs those too).
test-fast: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/lint-imports
	$(BIN)/pytest -q -m "not slow"

bench: $(STAMP)
	$(BIN)/python bench/quality.py

# AutoGluon for bench/quality.py --anchors, in its own venv (it needs pandas < 2.4).
# torch first and alone, so that its CPU build is the one installed.
ANCHORS := .venv-anchors
anchors-venv: $(ANCHORS)/.installed
$(ANCHORS)/.installed: bench/requirements-anchors.txt
	test -x $(ANCHORS)/bin/python || $(PY) -m venv $(ANCHORS)
	$(ANCHORS)/bin/pip install -q --upgrade pip
	nice -n 10 $(ANCHORS)/bin/pip install -q torch==2.13.0
	nice -n 10 $(ANCHORS)/bin/pip install -q -r bench/requirements-anchors.txt
	touch $@

clean:
	rm -rf $(VENV) .medserve .pytest_cache
