# The two commands a newcomer needs: `make run` and `make test`.
# Both bootstrap .venv on first use (only python3.11 and make are required).
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint typecheck unit unit-pure venv native pure clean bench chaos

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

venv: $(STAMP)

# The engine compiled to C extensions with mypyc (skipped with a warning when
# there is no C compiler: the engine then runs as pure Python). Rebuilt
# whenever an engine source changes; `make pure` removes the build.
NATIVE := build/native.stamp
$(NATIVE): $(STAMP) $(wildcard clob/*.py) scripts/build_native.py
	$(BIN)/python scripts/build_native.py build
	@mkdir -p build && touch $@

native: $(NATIVE)

pure: $(STAMP)
	$(BIN)/python scripts/build_native.py clean
	rm -f $(NATIVE)

## Start the whole local cluster (every market's replica group + a gateway on ws://127.0.0.1:8700/).
run: $(NATIVE)
	$(BIN)/clob up

## Lint, type-check and run the whole test suite.
test: $(STAMP) lint typecheck unit unit-pure

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(NATIVE)
	$(BIN)/pytest

# The engine's own tests again on its sources, so the pure-Python fallback
# (no C compiler) stays exactly as correct as the compiled build.
unit-pure: $(NATIVE)
	CLOB_PURE=1 $(BIN)/pytest -q -p no:cacheprovider tests/test_engine_*.py tests/test_replay.py \
		tests/test_snapshot_engine.py tests/test_book_side.py tests/test_native_build.py

bench: $(NATIVE)
	$(BIN)/clob bench engine

chaos: $(NATIVE)
	$(BIN)/clob chaos --duration 10m

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache build clob/*.so
