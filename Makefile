# Two commands do all the set-up (see README.md):
#   make book   -- create the environment if needed, build the HTML book with every chapter executed
#   make test   -- create the environment if needed, run every test (unit, chapters, Colab-like check)
SHELL := /bin/bash
# The Python the environment is made with: 3.12 (default) or 3.13, e.g. `make test PYTHON=3.13`.
PYTHON ?= 3.12
VENV := $(if $(filter 3.12,$(PYTHON)),.venv,.venv-$(PYTHON))
PY := $(VENV)/bin/python
UV_VERSION := 0.13.9
UV := .tools/bin/uv
# uv never downloads a Python of its own: it uses the one found below.
export UV_PYTHON_DOWNLOADS := never
export UV_PROJECT_ENVIRONMENT := $(VENV)

# Offline sample data: use ../shared/data when it exists and nothing else is set.
export ZARR_BOOK_DATA_MIRROR ?= $(if $(wildcard ../shared/data/hoa_heart.zarr),$(abspath ../shared/data))
STAMP := $(VENV)/.installed

.PHONY: book test env lab clean notebooks colab-check

# The interpreter: `python$(PYTHON)` on PATH, or one that pyenv installed.
BASE_PY := $(shell for p in python$(PYTHON) $$(pyenv root 2>/dev/null)/versions/$(PYTHON)*/bin/python; do \
	"$$p" -c 'import sys; assert "%d.%d" % sys.version_info[:2] == "$(PYTHON)"' 2>/dev/null && { echo "$$p"; break; }; done)

env: $(STAMP)

$(UV):
	@test -n "$(BASE_PY)" || { echo "Python $(PYTHON) was not found: install it (e.g. 'pyenv install $(PYTHON)', or 'apt install python$(PYTHON)-venv') and re-run." >&2; exit 1; }
	$(BASE_PY) -m venv .tools && .tools/bin/pip install --quiet uv==$(UV_VERSION)

# Exactly the versions in uv.lock (every package of the tree), all extras.
$(STAMP): pyproject.toml uv.lock | $(UV)
	@test -n "$(BASE_PY)" || { echo "Python $(PYTHON) was not found: install it (e.g. 'pyenv install $(PYTHON)') and re-run." >&2; exit 1; }
	$(UV) sync --frozen --all-extras --compile-bytecode --python "$(BASE_PY)" --quiet
	@touch $(STAMP)

book: $(STAMP)
	$(PY) -m data_helpers.build
	@echo "The book is at: file://$(CURDIR)/_build/html/index.html"

test: $(STAMP)
	$(PY) -m pytest

# Every chapter's notebook run as in Colab: Python 3.13, Colab's preinstalled versions,
# numpy/matplotlib/Pillow imported first, each chapter's own install cell (see tests/colab_like.py).
colab-check: $(STAMP)
	$(PY) tests/colab_like.py

# JupyterLab on the chapters, with the book's environment as the kernel.
lab: $(STAMP)
	$(VENV)/bin/jupyter lab chapters/

# Regenerate every chapter's .ipynb from its .md (deterministic cell ids).
notebooks: $(STAMP)
	$(PY) -m data_helpers.notebooks

clean:
	rm -rf _build
