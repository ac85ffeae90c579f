# zero-downtime-pipeline: every target creates .venv when it is missing.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: venv test lint demo clean lock

# Every package comes from the hash-pinned locks in requirements/ (pip refuses a file whose
# sha256 is not in the lock, and --only-binary keeps sdists, whose build dependencies would
# be unpinned, out): first the installers (tools.txt: pip, uv), then the engine with its dev
# and test extras (dev.txt), then the project itself, editable, without resolving anything.
# The locks are written by `make lock`; tests/unit/test_supply_chain.py fails when they lose
# their hashes or drift from pyproject.toml.
LOCKS := requirements/tools.txt requirements/dev.txt
PIP_LOCKED := $(PY) -m pip install -q --require-hashes --only-binary=:all:

venv: $(STAMP)

# The apps' ops kit (apps/ops-kit) goes in as a normal install, not editable: the local runtime
# runs an app confined to the venv's site-packages and its own unpacked wheel, and an editable
# install would point into the checkout. Its dependencies are the engine's (in dev.txt).
OPS_KIT := apps/ops-kit/pyproject.toml $(wildcard apps/ops-kit/src/ops_kit/*)

$(STAMP): pyproject.toml $(LOCKS) $(OPS_KIT)
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP_LOCKED) -r requirements/tools.txt
	$(PIP_LOCKED) -r requirements/dev.txt
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	$(PY) -m pip install -q --no-deps --no-build-isolation ./apps/ops-kit
	@touch $(STAMP)

# Rewrites the locks from pyproject.toml (and requirements/*.in) with uv, as pinned in
# tools.txt: the versions already locked are kept unless pyproject.toml no longer allows them;
# `make lock LOCK_ARGS=--upgrade` moves everything to the newest versions the index serves.
# One resolution for every platform (--universal), with the hashes of every published file of
# each pinned version; engine.txt and build.txt are constrained to dev.txt's versions, so the
# image runs what CI tested.
LOCK_COMPILE = $(VENV)/bin/uv pip compile --quiet --universal --python-version 3.11 \
	--generate-hashes --custom-compile-command "make lock" $(LOCK_ARGS)

lock: $(STAMP)
	$(LOCK_COMPILE) pyproject.toml --extra dev -o requirements/dev.txt
	$(LOCK_COMPILE) pyproject.toml -c requirements/dev.txt -o requirements/engine.txt
	$(LOCK_COMPILE) requirements/build.in -c requirements/dev.txt -o requirements/build.txt
	$(LOCK_COMPILE) requirements/tools.in -o requirements/tools.txt

# Test modules run side by side on TEST_WORKERS processes (pytest-xdist), each module whole on
# one worker: one more than the cores, since most modules spend their time waiting on servers
# and deployments (a fresh-clone run on two cores used about one of them on average).
# `make test TEST_WORKERS=0` runs them one after another. Modules marked `alone` (the demo,
# which loads every core on purpose, and the fault matrix's subset) run afterwards, by
# themselves: the busy machine they are judged on is the one they make.
TEST_WORKERS ?= $(shell echo $$(( $$(nproc 2>/dev/null || echo 1) + 1 )))

# --no-loadscope-reorder: modules are handed out in collection order, the longest first
# (tests/conftest.py); pytest-xdist would otherwise reorder them by their number of tests and
# hand out last the single-test module that runs longest (tests/e2e/test_to_production.py).
test: $(STAMP)
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder -m "not alone"
	$(PY) -m pytest -q -m alone

# ruff, mypy and the layer contracts of docs/architecture.md (import-linter, pyproject.toml).
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy zdp workflows activities workers
	$(VENV)/bin/lint-imports

demo: $(STAMP)
	$(VENV)/bin/zdp demo

clean:
	rm -rf $(VENV) .zdp .zdp-demo .pytest_cache .mypy_cache .ruff_cache
