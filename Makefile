# The few verbs people use: `make bench`, `make test`, `make lint`, `make build`.
# Each sets up what it needs on a fresh machine: a virtualenv with maturin, pytest and the
# libclang wheel (bindgen needs libclang; the wheel needs no root), then a release build.

PYTHON ?= python3
VENV := .venv
VPY := $(VENV)/bin/python
STAMP := $(VENV)/.deps-stamp
CLANG_DIR = $(shell $(VPY) -c "import clang, os; print(os.path.join(os.path.dirname(clang.__file__), 'native'))")
PY_LIBDIR = $(shell $(VPY) -c "import sysconfig; print(sysconfig.get_config_var('LIBDIR'))")
export LIBCLANG_PATH = $(CLANG_DIR)
export BINDGEN_EXTRA_CLANG_ARGS = -I$(shell gcc -print-file-name=include)
export PYO3_PYTHON = $(abspath $(VPY))
export VIRTUAL_ENV = $(abspath $(VENV))
export PATH := $(abspath $(VENV))/bin:$(PATH)

.PHONY: venv build test test-rust test-python bench lint

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

test: test-rust test-python

bench: build
	$(VPY) -m monitored_ioloop.bench --quick

lint: $(STAMP)
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings
	$(VENV)/bin/ruff check python tests build_backend examples
	$(VENV)/bin/mypy --strict python/monitored_ioloop
