# The two commands: `make demo` runs the main job, `make test` runs the tests.
# Both create .venv when it is missing and install what they need.
PYTHON ?= python3
VENV ?= .venv
# torch is pinned: an unpinned torch pulls a 5 GB CUDA build. Override: make test TORCH=torch==2.4.1
TORCH ?= torch==2.13.0
EXTRAS ?= all,dev
BIN := $(VENV)/bin
# Reinstall when the project metadata or the set of modules changes (the strict editable
# install links files one by one, so a new module needs a reinstall; see README).
STAMP := $(VENV)/.installed
SOURCES := pyproject.toml Makefile $(shell find fsm adapters specs -type d -not -name __pycache__)

.PHONY: install test lint typecheck pytest pb-venv cf-venv bs-venv demo docs docs-check dist bench gpu-check clean

install: $(STAMP)

$(STAMP): $(SOURCES)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip setuptools
	$(BIN)/python -m pip install -q "$(TORCH)"
	$(BIN)/python -m pip install -q -e ".[$(EXTRAS)]" "$(TORCH)" --config-settings editable_mode=strict
	touch $@

lint: $(STAMP)
	$(BIN)/ruff check fsm adapters specs tests docs/examples
	$(BIN)/ruff format --check fsm adapters specs tests docs/examples

# The installed packages, then the tests (with their harness modules, benchmarks and the docs
# example they import: mypy_path in pyproject.toml) and the docs' examples, all under
# pyproject's strict settings.
typecheck: $(STAMP)
	$(BIN)/mypy -p regulator.fsm -p regulator.adapters -p regulator.specs
	$(BIN)/mypy tests docs/examples

# python-binance in its own environment: it installs a top-level `binance` package, as
# binance-connector (in .venv) does. Its tests (tests/binance/test_exchange_clients.py) skip,
# saying why, only when this environment cannot be built (no package index reachable).
PB_VENV ?= .venv-pb
PB_STAMP := $(PB_VENV)/.installed

pb-venv: $(PB_STAMP)

$(PB_STAMP):
	rm -rf $(PB_VENV)
	( $(PYTHON) -m venv $(PB_VENV) && \
	  $(PB_VENV)/bin/python -m pip install -q "python-binance>=1.0.20,<2" && touch $@ ) || \
	  echo "python-binance's environment could not be built: its tests will skip"

# cryptofeed in its own environment too: it pins its own aiohttp, websockets and uvloop.
CF_VENV ?= .venv-cf
CF_STAMP := $(CF_VENV)/.installed

cf-venv: $(CF_STAMP)

$(CF_STAMP):
	rm -rf $(CF_VENV)
	( $(PYTHON) -m venv $(CF_VENV) && \
	  $(CF_VENV)/bin/python -m pip install -q "cryptofeed>=2.4,<3" && touch $@ ) || \
	  echo "cryptofeed's environment could not be built: its tests will skip"

# binance-sdk-spot (Binance's own SDK: pydantic, aiohttp) in its own environment too: a peer of
# the end-to-end bench only (tests/benchmarks/bench_e2e.py), which shows it as not installed
# when this environment cannot be built.
BS_VENV ?= .venv-bs
BS_STAMP := $(BS_VENV)/.installed

bs-venv: $(BS_STAMP)

$(BS_STAMP):
	rm -rf $(BS_VENV)
	( $(PYTHON) -m venv $(BS_VENV) && \
	  $(BS_VENV)/bin/python -m pip install -q "binance-sdk-spot>=13,<14" && touch $@ ) || \
	  echo "binance-sdk-spot's environment could not be built: the bench shows it as missing"

pytest: $(STAMP) pb-venv cf-venv
	$(BIN)/pytest

test: lint typecheck pytest

demo: $(STAMP)
	$(BIN)/regulator demo

# Benchmarks (not tests): print tables and write docs/performance.md. BENCH_QUICK=1 shrinks them.
# The end-to-end section runs the peers from their own environments (pb-, cf-, bs-venv).
bench: $(STAMP) pb-venv cf-venv bs-venv
	PYTHONPATH=tests $(BIN)/python tests/benchmarks/run.py

# The scaler on a CUDA device against the CPU reference (fused, foreach, capturable, for-loop;
# 10,000 fp16 steps; syncs per step; one table). Needs a CUDA build of torch:
# make gpu-check TORCH=torch==2.13.0 (from the CUDA index); on a CPU it runs the CPU half.
gpu-check: $(STAMP)
	$(BIN)/python tests/gpu/gpu_check.py

# The documentation site (mkdocs-material, --strict); pages drawn from the code are regenerated
# first. `make test` fails when they are stale.
docs: $(STAMP)
	$(BIN)/regulator docs generate
	$(BIN)/mkdocs build --strict

# The docs site and the report opened in headless Chromium (from the system packages: apt-get
# install chromium graphviz); screenshots go to build/screenshots/, outside the repository.
docs-check: docs
	DOCS_CHECK_SCREENSHOTS=$(CURDIR)/build/screenshots $(BIN)/pytest -q \
		tests/test_site.py tests/demo/test_demo.py
	@echo "screenshots: build/screenshots/"

# The sdist and the wheel, in dist/: `pip install dist/regulator-*.whl` installs the package
# without the repository. Built with the venv's setuptools (no isolated build env: offline).
dist: $(STAMP)
	rm -rf dist
	$(BIN)/python -m build --sdist --wheel --no-isolation --outdir dist .

clean:
	rm -rf $(VENV) $(PB_VENV) $(CF_VENV) $(BS_VENV) build dist *.egg-info .mypy_cache .ruff_cache .pytest_cache .hypothesis
