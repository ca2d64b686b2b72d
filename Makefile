# One virtual environment in .venv; every target installs what it needs first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEMO := build/demo

.PHONY: setup demo test test-fast lint format bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $@

# The main job on the embedded default: synthetic MVTec AD tree -> dataset -> checks -> stats.
demo: setup
	$(BIN)/mvtec-ref synth --out $(DEMO)/mvtec_synth
	$(BIN)/mvtec-ref build --source mvtec_ad --root $(DEMO)/mvtec_synth --out $(DEMO)/dataset
	$(BIN)/mvtec-ref validate $(DEMO)/dataset --deep
	$(BIN)/mvtec-ref stats $(DEMO)/dataset

test: setup
	$(BIN)/python -m pytest

test-fast: setup
	$(BIN)/python -m pytest -m "not slow"

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: setup
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: setup
	$(BIN)/python -m benchmarks.bench_build

clean:
	rm -rf build .cache .pytest_cache .ruff_cache
