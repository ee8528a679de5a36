# imgdedup: `make run` serves on the embedded defaults, `make test` runs the whole suite.
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
UV := $(VENV)/bin/uv
STAMP := $(VENV)/.installed-stamp
LOCK := requirements.lock
UV_VERSION := 0.9.30
# Where a CPU build of torch comes from on a machine that has none on disk, e.g.
#   make run TORCH_INDEX=https://download.pytorch.org/whl/cpu
TORCH_INDEX ?=

.PHONY: venv run test lint lock bench bench-quick bench-padded corpus test-services clean

# Everything from the lock, by its hashes. torch is the one package the lock leaves out: its CPU build lies on
# disk on these machines (pip looks there) or comes from TORCH_INDEX; PyPI's own is a multi-GB CUDA build.
$(STAMP): $(LOCK) pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --no-deps --no-compile torch==2.13.0 $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(PY) -m pip install -q --no-deps --no-compile uv==$(UV_VERSION)
	$(UV) pip install -q --python $(PY) --no-deps --require-hashes --compile-bytecode -r $(LOCK)
	$(UV) pip install -q --python $(PY) --no-deps --no-build-isolation -e .
	touch $(STAMP)

venv: $(STAMP)

run: venv
	$(PY) -m app serve

test-services:
	bash scripts/ensure-test-services.sh

# One worker per core and as many again: the suite's served processes and drills wait as much as they compute.
# The longest tests are collected first (tests/conftest.py) and handed out one by one as workers come free
# (--maxschedchunk 1: by default xdist hands each worker a quarter of its share at once, in order, and the first
# worker got every one of the longest tests); the fifteen slowest are listed at the end. The project's own bytecode
# is written first: where PYTHONDONTWRITEBYTECODE is set, every process the suite starts (each served process,
# worker and drill restart) would otherwise compile the app's modules again, 0.4 s of CPU each.
test: venv test-services
	$(PY) -m compileall -q -j 0 app testkit tests migrations
	$(PY) -m pytest -q -n 4 --dist load --maxschedchunk 1 --durations=15

# ruff (lint and format), mypy (strict on domain, vision, check, ports), the import contracts of the layers.
# mypy's cache lives beside pip's and uv's: it is keyed by the files' contents, so every clone may share it.
MYPY_CACHE_DIR ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/imgdedup/mypy
export MYPY_CACHE_DIR
lint: venv
	$(VENV)/bin/ruff check app tests testkit bench scripts migrations
	$(VENV)/bin/ruff format --check app tests testkit bench scripts migrations
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

# After a change to pyproject.toml's dependencies: resolve them again into the lock (Linux x86-64, Python 3.11).
lock: venv
	$(UV) pip compile pyproject.toml --extra test --extra bench --generate-hashes --python-version 3.11 \
		--python-platform x86_64-manylinux_2_28 --no-emit-package torch \
		$(if $(wildcard /opt/wheels),--find-links /opt/wheels) -o $(LOCK)

# dev and extra side by side, then the dev queries against an index padded with 1k, 5k and all ~20k pictures
bench: bench-quick bench-padded

bench-quick: venv
	$(PY) -m bench.run

bench-padded: venv
	$(PY) -m bench.padded

# The benchmark corpus alone: copied from ../shared/bench when it is there, else rebuilt from its packages.
corpus: venv
	$(PY) -m bench.fetch_corpus

clean:
	rm -rf $(VENV) data .cache
