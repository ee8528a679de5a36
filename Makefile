# imgdedup: `make run` serves on the embedded defaults, `make test` runs the whole suite.
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
# Where a CPU build of torch comes from on a machine that has none on disk, e.g.
#   make run TORCH_INDEX=https://download.pytorch.org/whl/cpu
TORCH_INDEX ?=

.PHONY: venv run test lint bench bench-quick bench-padded corpus test-services clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	@# torch first and pinned: anything that depends on torch must find this CPU build already installed.
	$(PY) -m pip install -q torch==2.13.0 $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(PY) -m pip install -q -e '.[test,bench]'
	touch $(STAMP)

venv: $(STAMP)

run: venv
	$(PY) -m app serve

test-services:
	bash scripts/ensure-test-services.sh

test: venv test-services
	$(PY) -m pytest -q -n auto --maxprocesses=4

# ruff (lint and format), mypy (strict on domain, vision, check, ports), the import contracts of the layers
lint: venv
	$(VENV)/bin/ruff check app tests testkit bench scripts
	$(VENV)/bin/ruff format --check app tests testkit bench scripts
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

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
