# The two commands: `make up` runs the mesh on this machine, `make test` proves it works.
# Both create .venv and install the project (with its dev extra) when needed.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: up test lint typecheck protos protos-check buflint pytest bench clean

up: $(STAMP)
	$(BIN)/wamesh dev up

test: lint typecheck buflint pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

buflint: $(STAMP)
	$(BIN)/buf lint

pytest: $(STAMP)
	$(BIN)/python -m pytest

protos: $(STAMP)
	$(BIN)/python tools/protos.py

protos-check: $(STAMP)
	$(BIN)/python tools/protos.py --check

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

clean:
	rm -rf $(VENV) .wamesh .mypy_cache .ruff_cache
