# The few verbs people use: `make bench`, `make test`, `make lint`, `make build`.
# Each sets up what it needs on a fresh machine: a virtualenv with maturin, pytest and the
# libclang wheel (bindgen needs libclang; the wheel needs no root), then a release build.
#
# Releasing (RELEASING.md), none of it part of `make test`:
#   make wheels        manylinux2014 (glibc 2.17) wheels for every CPython 3.9+ found (pyenv
#                      or PATH; PYTHONS="/path/python3.X ..." to choose), via maturin --zig, and
#                      the sdist, into dist/ (release/build.py)
#   make check-wheels  the sdist's contents; each wheel's tag, size, `auditwheel show` and
#                      libraries; then per interpreter a fresh venv with no Rust and no compiler
#                      on PATH installs the wheel (timed) and runs a fast subset of the tests
#                      against it, from a temporary copy: all but test_cpython_asyncio.py and
#                      test_net_real_servers.py (release/check_wheels.py)
#   make check-sdist   pip without Rust gets one short message; pip on an interpreter with no
#                      wheel builds the sdist (a full build, minutes) (release/check_sdist.py)

PYTHON ?= python3
VENV := .venv
VPY := $(VENV)/bin/python
STAMP := $(VENV)/.deps-stamp
RELEASE_STAMP := $(VENV)/.release-stamp
CLANG_DIR = $(shell $(VPY) -c "import clang, os; print(os.path.join(os.path.dirname(clang.__file__), 'native'))")
PY_LIBDIR = $(shell $(VPY) -c "import sysconfig; print(sysconfig.get_config_var('LIBDIR'))")
export LIBCLANG_PATH = $(CLANG_DIR)
export BINDGEN_EXTRA_CLANG_ARGS = -I$(shell gcc -print-file-name=include)
export PYO3_PYTHON = $(abspath $(VPY))
export VIRTUAL_ENV = $(abspath $(VENV))
export PATH := $(abspath $(VENV))/bin:$(PATH)

.PHONY: venv build test test-rust test-python test-pythons test-uvloop-suite bench lint wheels check-wheels check-sdist

$(STAMP): requirements-dev.txt
	test -x $(VPY) || $(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install -q --upgrade pip
	$(VPY) -m pip install -q -r requirements-dev.txt
	touch $(STAMP)

venv: $(STAMP)

build: $(STAMP)
	$(VENV)/bin/maturin develop --release -q

test-rust: $(STAMP)
	LD_LIBRARY_PATH=$(PY_LIBDIR) cargo test --workspace -q

test-python: build
	$(VPY) -m pytest -q

test: test-rust test-python test-pythons

# The other supported Pythons (3.11 is the main venv's): the project's tests on the oldest and
# newest (3.9, 3.13; on 3.13 that includes CPython's test_asyncio selection), and CPython's
# selection on 3.12. Each gets its own virtualenv (.venv-3.X); the extensions share one cargo
# target dir and the `ci` profile (release without LTO), so only the first build compiles the
# dependencies (~1 min) and each later one ~20 s. Interpreters come from pyenv, else PATH
# (python3.X); one that is not installed is reported and skipped (REQUIRE_PYTHONS=1 makes that
# a failure). Part of `make test`: about 6 minutes when all three are there.
TEST_PYTHONS ?= 3.9:all 3.12:cpython 3.13:all
PYENV_ROOT ?= $(HOME)/.pyenv
REQUIRE_PYTHONS ?= 0

test-pythons: $(STAMP)
	@set -e; failed=""; missing=""; for spec in $(TEST_PYTHONS); do \
	  v=$${spec%%:*}; what=$${spec#*:}; venv=$(CURDIR)/.venv-$$v; \
	  py=$$(ls -d $(PYENV_ROOT)/versions/$$v.*/bin/python 2>/dev/null | tail -n 1); \
	  test -n "$$py" || py=$$(command -v python$$v || true); \
	  if test -z "$$py" || ! $$py -c "" 2>/dev/null; then \
	    echo "== Python $$v: not installed here, SKIPPED"; missing="$$missing $$v"; continue; fi; \
	  echo "== Python $$v ($$py): $$what"; \
	  test -x $$venv/bin/python || $$py -m venv $$venv; \
	  $$venv/bin/python -m pip install -q --upgrade pip; \
	  $$venv/bin/python -m pip install -q -r requirements-dev.txt; \
	  VIRTUAL_ENV=$$venv PYO3_PYTHON=$$venv/bin/python PATH=$$venv/bin:$$PATH \
	    CARGO_TARGET_DIR=$(CURDIR)/target/others $$venv/bin/maturin develop --profile ci -q; \
	  if [ "$$what" = all ]; then tests=; else tests=tests/test_cpython_asyncio.py; fi; \
	  $$venv/bin/python -m pytest -q -p no:cacheprovider $$tests || failed="$$failed $$v"; \
	done; \
	test -z "$$missing" || echo "Pythons not tested (not installed):$$missing"; \
	test -z "$$failed" || { echo "failed on Python$$failed"; exit 1; }; \
	test -z "$$missing" || test "$(REQUIRE_PYTHONS)" = 0 || exit 1

# uvloop's own test suite run against our loop (opt-in, not part of `make test`, ~5 min):
# its sdist (the tests are not in the wheel) is downloaded into a git-ignored folder.
UVLOOP_SUITE_VERSION := 0.23.0
UVLOOP_SUITE_DIR := .uvloop-suite/uvloop-$(UVLOOP_SUITE_VERSION)

$(UVLOOP_SUITE_DIR)/tests:
	mkdir -p .uvloop-suite
	$(VPY) -m pip download -q --no-binary :all: --no-deps -d .uvloop-suite uvloop==$(UVLOOP_SUITE_VERSION)
	tar -xzf .uvloop-suite/uvloop-$(UVLOOP_SUITE_VERSION).tar.gz -C .uvloop-suite

test-uvloop-suite: build $(UVLOOP_SUITE_DIR)/tests
	$(VPY) -m pip install -q -r tests/uvloop_suite/requirements.txt
	UVLOOP_SUITE_DIR=$(abspath $(UVLOOP_SUITE_DIR))/tests $(VPY) -m pytest -q -p no:cacheprovider tests/uvloop_suite/uvloop_suite.py -s

bench: build
	$(VPY) -m monitored_ioloop.bench --quick

lint: $(STAMP)
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings
	$(VENV)/bin/ruff check python tests build_backend examples release benches
	$(VENV)/bin/mypy --strict python/monitored_ioloop benches

$(RELEASE_STAMP): $(STAMP) requirements-release.txt
	$(VPY) -m pip install -q -r requirements-release.txt
	touch $(RELEASE_STAMP)

wheels: $(RELEASE_STAMP)
	$(VPY) release/build.py

check-wheels: $(RELEASE_STAMP)
	$(VPY) release/check_wheels.py

check-sdist: $(RELEASE_STAMP)
	$(VPY) release/check_sdist.py
