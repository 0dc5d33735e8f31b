# The two commands: `make up` runs the mesh on this machine, `make test` proves it works.
# Both install what they need first: uv itself (into .tools/, from PyPI with this machine's
# Python), then every workspace member with every extra and the dev tools, from uv.lock.

PYTHON ?= python3
UV_VERSION := 0.13.9
UV := .tools/bin/uv
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.synced
# The real twilio Node library, which the sandbox's tests drive it with (npm registry, locked).
NODE_STAMP := tools/sandbox/node/node_modules/.installed
MEMBERS := $(wildcard libs/*/pyproject.toml services/*/pyproject.toml)

export UV_PYTHON := $(PYTHON)
export UV_PYTHON_DOWNLOADS := never
export UV_LINK_MODE := copy

.PHONY: up test lint typecheck protos protos-check buflint pytest lock bench clean

up: $(STAMP)
	$(BIN)/wamesh dev up

test: lint typecheck buflint protos-check pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

buflint: $(STAMP)
	$(BIN)/buf lint

# The suite under coverage (branch, the packages); the report fails below the floor in
# pyproject.toml's [tool.coverage.report].
pytest: $(STAMP) $(NODE_STAMP)
	$(BIN)/python -m coverage run -m pytest
	$(BIN)/python -m coverage report

protos: $(STAMP)
	$(BIN)/python tools/protos.py

protos-check: $(STAMP)
	$(BIN)/python tools/protos.py --check

# After changing a dependency in any pyproject.toml: refresh uv.lock and commit it.
lock: $(UV)
	$(UV) lock

$(UV):
	$(PYTHON) -m venv .tools
	.tools/bin/python -m pip install --quiet uv==$(UV_VERSION)

$(STAMP): $(UV) uv.lock pyproject.toml $(MEMBERS)
	$(UV) sync --locked --all-packages --all-extras --quiet
	touch $(STAMP)

$(NODE_STAMP): tools/sandbox/node/package.json tools/sandbox/node/package-lock.json
	npm ci --prefix tools/sandbox/node --no-audit --no-fund --loglevel=error
	touch $(NODE_STAMP)

clean:
	rm -rf $(VENV) .tools .wamesh .mypy_cache .ruff_cache tools/sandbox/node/node_modules
