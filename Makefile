# The two commands a newcomer needs: `make run` and `make test`.
# Both bootstrap .venv on first use (only python3.11 and make are required).
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint typecheck unit venv clean bench chaos

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

venv: $(STAMP)

## Start the whole local cluster (every market's replica group + a gateway on ws://127.0.0.1:8700/).
run: $(STAMP)
	$(BIN)/clob up

## Lint, type-check and run the whole test suite.
test: $(STAMP) lint typecheck unit

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest

bench: $(STAMP)
	$(BIN)/clob bench engine

chaos: $(STAMP)
	$(BIN)/clob chaos --duration 10m

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
