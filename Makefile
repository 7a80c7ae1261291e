# Set-up and the two entry points of the README. Everything installs into .venv.
# torch is installed first as the local CPU build (torch==2.13.0), so no dependency can
# pull a CUDA build; the package's own torch range is satisfied by it.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip
PIPFLAGS ?= --quiet --disable-pip-version-check

.PHONY: demo test test-all bench lint clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.base: pyproject.toml | $(BIN)/python
	$(PIP) install $(PIPFLAGS) torch==2.13.0
	$(PIP) install $(PIPFLAGS) -e .
	touch $@

$(VENV)/.dev: pyproject.toml $(VENV)/.base
	$(PIP) install $(PIPFLAGS) -e '.[dev]'
	touch $@

demo: $(VENV)/.base
	$(BIN)/edgerl demo

test: $(VENV)/.dev
	$(BIN)/python -m pytest -m "not slow" -q

test-all: $(VENV)/.dev
	$(BIN)/python -m pytest -q

bench: $(VENV)/.dev
	$(BIN)/python -m pip install $(PIPFLAGS) -e '.[bench]'
	$(BIN)/python benchmarks/run_all.py

lint: $(VENV)/.dev
	$(BIN)/ruff check src tests benchmarks

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache
