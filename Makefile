# Two commands do all the set-up on a fresh machine:
#   make study   install, generate the embedded dataset, run the default study, build the book
#   make test    install, then the whole test suite (unit, physics, end-to-end, pytest --nbval)
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
STUDY ?= book/default
WORKERS ?= 2

.PHONY: install study test book clean-study
install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# torch first and alone, so that the CPU build on local disk (where present) is the one taken
	$(BIN)/python -m pip install --quiet "torch==2.13.0"
	$(BIN)/python -m pip install --quiet -e .
	touch $(STAMP)

study: install
	$(BIN)/msl study $(STUDY) --workers $(WORKERS)
	$(BIN)/jupyter-book build . --path-output book

book: install
	$(BIN)/jupyter-book build . --path-output book

test: install
	$(BIN)/python -m pytest --nbval-lax -p no:cacheprovider
