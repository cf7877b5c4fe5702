# CryptoTrace: `make demo` and `make test` work on a fresh machine with python3 (>= 3.10).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
DEMO_SECONDS ?=

.PHONY: install lock model demo worker system-deps test test-unit test-integration lint audit clean

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e '.[dev]'
	touch $@

# The per-tick core compiled with mypyc (models/_native.py lists the modules; needs a C compiler and
# the Python headers). Rebuilt when one of them changes; a stale build is ignored at import, never run.
# CORE=interpreted skips it (e.g. on a machine without a compiler): the same code, about 2x slower.
CORE ?= compiled
CORE_SOURCES := $(wildcard models/*.py models/*.pyx models/detectors/*.py)  # a superset: simpler than parsing the list
CORE_BUILD := build/compiled/models/_core.json

$(CORE_BUILD): $(VENV)/.installed setup.py $(CORE_SOURCES)
	CRYPTOTRACE_COMPILE=1 CRYPTOTRACE_CORE=interpreted $(PY) setup.py -q build_ext --build-lib build/compiled --build-temp build/temp

install: $(VENV)/.installed $(if $(filter compiled,$(CORE)),$(CORE_BUILD))

# Re-pin constraints.txt (Python 3.11, what CI and the image run) to the newest versions pyproject.toml
# allows; then run the tests, retrain, commit.
lock:
	rm -rf .lock-venv && python3.11 -m venv .lock-venv && .lock-venv/bin/pip install -q -e '.[dev]'
	.lock-venv/bin/pip freeze --exclude-editable > .lock-venv/frozen.txt
	{ sed -n '/^#/p' constraints.txt; sed 's/$$/ ; python_version == "3.11"/' .lock-venv/frozen.txt; } > constraints.new
	mv constraints.new constraints.txt && rm -rf .lock-venv

# Train the ensemble on synthetic labelled data once (again when the code's model inputs changed);
# the worker verifies and loads it.
model: install
	$(VENV)/bin/cryptotrace train --if-missing

# Embedded broker + worker + synthetic feed; alerts printed live. DEMO_SECONDS=N stops after N s.
demo: model
	$(VENV)/bin/cryptotrace demo $(if $(DEMO_SECONDS),--seconds $(DEMO_SECONDS))

worker: install
	$(VENV)/bin/cryptotrace worker

# System packages some tests need: Debian's headless Chromium and its chromedriver (the dashboard test
# drives a real browser) and redis-server (the Redis fault tests start throwaway servers). Installed with
# apt-get when missing and this is root on Debian/Ubuntu (as CI); elsewhere the message says what to install.
system-deps:
	@if ! { command -v chromium && command -v chromedriver && command -v redis-server; } >/dev/null; then \
	  if command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver redis-server; \
	  else \
	    echo "make test needs chromium, chromedriver and redis-server (Debian: apt-get install chromium chromium-driver redis-server)" >&2; \
	    exit 1; \
	  fi; \
	fi

test: install system-deps
	$(PY) -m pytest -q -rxX --durations=20

test-unit: install
	$(PY) -m pytest -q -m "not integration"

test-integration: install system-deps
	$(PY) -m pytest -q -m integration

lint: install
	$(VENV)/bin/ruff check app agents models tests benchmarks
	$(VENV)/bin/mypy app agents models

# Known-vulnerability audit of the installed dependencies (needs the PyPI JSON API or api.osv.dev;
# the development machine reaches neither, so it is not part of `make test`).
audit: install
	$(PY) -m pip install -q pip-audit
	$(VENV)/bin/pip-audit --progress-spinner off

clean:
	rm -rf $(VENV) build cryptotrace-data artifacts .pytest_cache .hypothesis
