# gtom's two set-up commands: `make demo` and `make test`. Both make their own virtualenv.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test lint format synchro clean bench

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

## Run gtom against an embedded server with sample changes (no MongoDB needed).
demo: $(VENV)/.installed
	$(BIN)/gtom demo

## Lint, type-check, check the generated sync face, then run the whole test suite.
test: lint
	$(BIN)/python -m pytest -n 2 --dist loadfile

lint: $(VENV)/.installed
	$(BIN)/python -m ruff check .
	$(BIN)/python -m ruff format --check .
	$(BIN)/python -m mypy
	$(BIN)/python tools/synchro.py --check

## Regenerate src/gtom/_sync and tests/_sync from their asyncio sources.
synchro: $(VENV)/.installed
	$(BIN)/python tools/synchro.py

format: $(VENV)/.installed
	$(BIN)/python -m ruff format .
	$(BIN)/python -m ruff check --fix .

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis

## Benchmarks: gtom against the raw-driver ceiling, gtm, Debezium and mongo-connector, in one
## run (builds the Rust server and the peers once; see bench/run.py). Writes bench/results/.
bench: $(VENV)/.installed
	$(BIN)/python bench/run.py
