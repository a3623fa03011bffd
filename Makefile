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

.PHONY: env demo test test-all lint benchmark

env: $(VENV_DIR)/.complete
	ln -sfn $(VENV_DIR) $(VENV)
	# Editable install of this clone (cheap; the cached env may come from another clone).
	$(VENV)/bin/pip install --quiet --no-deps --no-build-isolation -e .

# The first build downloads about 3 GB and takes about 6 GB on disk (torch's CUDA libraries are
# most of it); pip's own progress bars show each download.
$(VENV_DIR)/.complete:
	rm -rf $(VENV_DIR)
	@echo "Building the environment in $(VENV_DIR) (about 6 GB, several minutes, once per set of pins)"
	$(PYTHON) -m venv $(VENV_DIR)
	$(VENV_DIR)/bin/pip install --progress-bar on --upgrade pip setuptools wheel
	$(VENV_DIR)/bin/pip install --progress-bar on -e ".[test]"
	touch $@

# The rules run `python -m flowguide`: the environment's python must come first on PATH.
# With N GPUs visible to torch (GPUS=N overrides), `--resources gpu=N` runs at most N GPU jobs at
# a time, each on the GPU it claims; without a GPU every job runs on the CPU and no cap is set
# (gpu=0 would refuse the GPU-capable rules).
demo: env
	gpus="$${GPUS:-$$($(VENV)/bin/python -c 'import torch; print(torch.cuda.device_count())')}" && \
	if [ "$$gpus" -gt 0 ]; then resources="--resources gpu=$$gpus"; else resources=""; fi && \
	echo "make demo: $$gpus GPU(s) $$resources" && \
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(VENV)/bin/snakemake --cores $(CORES) $$resources

# The SynthDive benchmark (configs/benchmark.yaml): one DAG per data seed, each in its own
# results folder (results/benchmark/d<seed>); a generated overlay config sets the folder, the
# synth seed and the training seed (train.seeds: [<data seed>]), so each seed unit differs in
# both. The pooled report (every data x training seed a bootstrap unit) goes to
# results/benchmark/report and prints the measured time per stage (Snakemake's benchmark files).
DATA_SEEDS ?= 0 1 2
BENCH ?= results/benchmark
benchmark: env
	set -e; for d in $(DATA_SEEDS); do \
	  mkdir -p $(BENCH); \
	  printf 'results: $(BENCH)/d%s\nsynth:\n  seed: %s\ntrain:\n  seeds: [%s]\n' $$d $$d $$d > $(BENCH)/d$$d.yaml; \
	  PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(VENV)/bin/snakemake --cores $(CORES) \
	    --configfile configs/benchmark.yaml $(BENCH)/d$$d.yaml; \
	done
	first=$$(echo $(DATA_SEEDS) | cut -d' ' -f1); \
	rest=$$(for d in $(DATA_SEEDS); do [ $$d = $$first ] || printf '$(BENCH)/d%s ' $$d; done); \
	$(VENV)/bin/flowguide report --results $(BENCH)/d$$first --out $(BENCH)/report --pool $$rest

test: env
	$(VENV)/bin/pytest -q

test-all: env
	$(VENV)/bin/pytest -q --runslow

lint: env
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/snakemake --lint
	$(VENV)/bin/snakefmt --check Snakefile workflow
