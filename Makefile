# Two commands do all the set-up on a fresh machine:
#   make study   install, generate the embedded datasets, run every study of the book, build it
#   make test    install, then the whole test suite (unit, physics, end-to-end, pytest --nbval)
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
STUDIES ?= book/default book/spectral book/trikha
WORKERS ?= 2
# generated datasets and graph caches (the embedded dataset is generated here on first use)
export MSL_DATA_DIR ?= $(CURDIR)/data

.PHONY: install study test book fixtures notebooks
install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# torch first and alone, so that the CPU build on local disk (where present) is the one taken
	$(BIN)/python -m pip install --quiet "torch==2.13.0"
	$(BIN)/python -m pip install --quiet -e .
	touch $(STAMP)

study: install
	for s in $(STUDIES); do $(BIN)/msl study $$s --workers $(WORKERS) || exit 1; done
	$(BIN)/jupyter-book build . --path-output book

book: install
	$(BIN)/jupyter-book build . --path-output book

test: install
	$(BIN)/python -m pytest --nbval --nbval-sanitize-with tests/nbval_sanitize.cfg -p no:cacheprovider

# Maintainers: refresh the committed CI-study records and the notebooks' stored outputs (which
# `pytest --nbval` compares against a fresh execution) after changing msl or the notebooks.
FIXTURES ?= tests/fixtures/study tests/fixtures/spectral tests/fixtures/trikha
fixtures: install
	for f in $(FIXTURES); do rm -rf $$f/records $$f/runs $$f/checkpoints && \
	  $(BIN)/msl sweep $$f --workers $(WORKERS) && rm -rf $$f/runs $$f/checkpoints || exit 1; done

notebooks: install
	cd notebooks && for nb in train analysis data published spectral trikha; do \
	  ../$(BIN)/jupytext --to ipynb $$nb.py -q && \
	  ../$(BIN)/papermill $$nb.ipynb $$nb.ipynb -k python3 --cwd . --no-progress-bar || exit 1; done
