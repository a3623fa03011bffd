# Two entry points for a fresh machine (see README):
#   make demo   creates the environment and runs the whole default DAG (SynthDive, weight-free backends)
#   make test   creates the environment (if needed) and runs the test suite
#
# The environment is cached outside the clone, keyed by a hash of pyproject.toml (where every
# dependency is pinned), and linked as .venv. A changed pin builds a new one.
PYTHON ?= python3
PINS_HASH := $(shell grep -E "==" pyproject.toml | sha256sum | cut -c1-16)
CACHE_DIR ?= $(HOME)/.cache/flowguide
VENV_DIR := $(CACHE_DIR)/venv-$(PINS_HASH)
VENV := .venv
CORES ?= all

.PHONY: env demo test test-all lint

env: $(VENV_DIR)/.complete
	ln -sfn $(VENV_DIR) $(VENV)
	# Editable install of this clone (cheap; the cached env may come from another clone).
	$(VENV)/bin/pip install --quiet --no-deps --no-build-isolation -e .

$(VENV_DIR)/.complete:
	rm -rf $(VENV_DIR)
	$(PYTHON) -m venv $(VENV_DIR)
	$(VENV_DIR)/bin/pip install --quiet --upgrade pip setuptools wheel
	$(VENV_DIR)/bin/pip install --quiet -e ".[test]"
	touch $@

# The rules run `python -m flowguide`: the environment's python must come first on PATH.
demo: env
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(VENV)/bin/snakemake --cores $(CORES)

test: env
	$(VENV)/bin/pytest -q

test-all: env
	$(VENV)/bin/pytest -q --runslow

lint: env
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/snakemake --lint
	$(VENV)/bin/snakefmt --check Snakefile workflow
