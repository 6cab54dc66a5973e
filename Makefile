# Two commands do all the set-up (see README.md):
#   make book   -- create the environment if needed, build the HTML book with every chapter executed
#   make test   -- create the environment if needed, run every test (unit, notebooks, sync, strict build)
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python

# Offline sample data: use ../shared/data when it exists and nothing else is set.
export ZARR_BOOK_DATA_MIRROR ?= $(if $(wildcard ../shared/data/hoa_heart.zarr),$(abspath ../shared/data))
STAMP := $(VENV)/.installed

.PHONY: book test env clean notebooks

# Python 3.12: `python3.12` on PATH, or one that pyenv installed.
PY312 := $(shell for p in python3.12 $$(pyenv root 2>/dev/null)/versions/3.12*/bin/python; do \
	"$$p" -c 'import sys; assert sys.version_info[:2] == (3, 12)' 2>/dev/null && { echo "$$p"; break; }; done)

env: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	@test -n "$(PY312)" || { echo "Python 3.12 was not found: install it (e.g. 'pyenv install 3.12') and re-run." >&2; exit 1; }
	@$(PY) -c 'import sys; assert sys.version_info[:2] == (3, 12)' 2>/dev/null || { rm -rf $(VENV); $(PY312) -m venv $(VENV); }
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e ".[book,test]"
	@touch $(STAMP)

book: $(STAMP)
	$(VENV)/bin/jupyter-book build . -W -n --keep-going
	@echo "The book is at: file://$(CURDIR)/_build/html/index.html"

test: $(STAMP)
	$(PY) -m pytest

# Regenerate every chapter's .ipynb from its .md (deterministic cell ids).
notebooks: $(STAMP)
	$(VENV)/bin/jupytext --to ipynb --update chapters/*.md

clean:
	rm -rf _build
