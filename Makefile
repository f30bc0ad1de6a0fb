# Two commands do all the set-up on a fresh machine:
#   make study   install, generate the embedded datasets, run every study of the book, build it
#   make test    install, then the whole test suite (unit, physics, end-to-end, pytest --nbval)
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
STUDIES ?= book/default book/chgnet book/spectral book/trikha
WORKERS ?= 2
# generated datasets and graph caches (the embedded dataset is generated here on first use)
export MSL_DATA_DIR ?= $(CURDIR)/data

# pinned installer, and torch (installed first and alone; the lock pins it without a local label)
PIP_PIN := pip==26.3
TORCH_PIN := torch==2.13.0

.PHONY: install lock study test book fixtures notebooks
install: $(STAMP)

# Installs exactly requirements.lock, resolving nothing: torch first and alone (so that the CPU
# build on local disk, where present, is the one taken; on a CUDA machine it brings torch's own
# exact-pinned CUDA libraries), then every locked package with --no-deps, then msl itself;
# `pip check` fails the install loudly if the lock is inconsistent.
$(STAMP): pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet "$(PIP_PIN)"
	$(BIN)/python -m pip install --quiet "$(TORCH_PIN)"
	$(BIN)/python -m pip install --quiet --no-deps -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	$(BIN)/python -m pip check
	touch $(STAMP)

# Maintainers: re-pin requirements.lock after changing pyproject.toml's dependencies, and commit
# the new lock in the same commit. Resolves from pyproject.toml in a throwaway venv (torch first
# and alone, then the project with its optional extras, so that `make install` installs them
# too), then freezes every installed package but pip and msl.
EXTRAS := chgnet
lock:
	@set -euo pipefail; tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	$(PYTHON) -m venv "$$tmp/venv"; py="$$tmp/venv/bin/python"; \
	"$$py" -m pip install --quiet "$(PIP_PIN)"; \
	"$$py" -m pip install --quiet "$(TORCH_PIN)"; \
	"$$py" -m pip install --quiet -e ".[$(EXTRAS)]"; \
	"$$py" -m pip check; \
	plat=$$("$$py" -c 'import platform as p, sys; print(f"{p.python_implementation()} {sys.version_info[0]}.{sys.version_info[1]} on {p.system()} {p.machine()}")'); \
	{ echo "# Every package of msl's environment, direct and transitive, pinned exactly; for $$plat."; \
	  echo "# Produced by \`make lock\` from pyproject.toml: in a throwaway venv, $(PIP_PIN), then"; \
	  echo "# \`pip install $(TORCH_PIN)\` alone, then \`pip install -e .[$(EXTRAS)]\`, then"; \
	  echo "# \`pip freeze --all --exclude-editable\` less pip (pinned in the Makefile) and msl, with"; \
	  echo "# torch's local label (+cpu) dropped so that a GPU machine gets PyPI's build."; \
	  echo "# Refresh: change pyproject.toml, run \`make lock\`, commit this file in the same commit."; \
	  echo "# \`make install\` installs it with --no-deps: nothing else is resolved."; \
	  "$$py" -m pip freeze --all --exclude-editable \
	    | grep -viE '^(pip|msl)[=@ ]' | sed -E 's/^(torch==[^+]+)\+.*$$/\1/'; \
	} > requirements.lock.tmp; \
	mv requirements.lock.tmp requirements.lock; \
	echo "requirements.lock: $$(grep -vc '^#' requirements.lock) packages"

# Re-creates the committed results (book/<study>/records, data.ipynb, analysis.ipynb); after a
# re-run, `git diff --stat` shows what changed. Then builds and checks the book.
study: install
	for s in $(STUDIES); do $(BIN)/msl study $$s --workers $(WORKERS) || exit 1; done
	$(MAKE) book

# The book from the committed results: trains nothing; then every page is checked (no error
# output, every local image and internal link resolves, formulas rendered offline).
book: install
	$(BIN)/jupyter-book build . --path-output book
	$(BIN)/python -m msl.book_check book/_build/html

test: install
	$(BIN)/python -m pytest --nbval --nbval-sanitize-with tests/nbval_sanitize.cfg -p no:cacheprovider

# Maintainers: refresh the committed CI-study records and the notebooks' stored outputs (which
# `pytest --nbval` compares against a fresh execution) after changing msl or the notebooks.
FIXTURES ?= tests/fixtures/study tests/fixtures/chgnet tests/fixtures/spectral tests/fixtures/trikha
fixtures: install
	for f in $(FIXTURES); do rm -rf $$f/records $$f/runs $$f/checkpoints && \
	  $(BIN)/msl sweep $$f --workers $(WORKERS) && rm -rf $$f/runs $$f/checkpoints || exit 1; done

# OMP_NUM_THREADS=2 as conftest.py sets it for nbval, so that the train notebook's stored output
# does not depend on the machine's load (msl.train.auto_threads)
notebooks: install
	cd notebooks && export OMP_NUM_THREADS=2 && for nb in train analysis data chgnet published spectral trikha; do \
	  ../$(BIN)/jupytext --to ipynb $$nb.py -q && \
	  ../$(BIN)/papermill $$nb.ipynb $$nb.ipynb -k python3 --cwd . --no-progress-bar || exit 1; done
