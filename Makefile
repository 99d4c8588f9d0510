# amoiq-chat. `make run` serves the app, `make test` runs the suite; both build .venv first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: run test bench migrate clean

$(STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[embedded,test]'
	touch $(STAMP)

## Serve on http://127.0.0.1:5000 (embedded PostgreSQL and Redis unless DATABASE_URL/REDIS_URL are set).
run: $(STAMP)
	$(BIN)/amoiq-chat serve

## Run the whole test suite.
test: $(STAMP)
	$(BIN)/python -m pytest -q

## Apply database migrations only.
migrate: $(STAMP)
	$(BIN)/amoiq-chat migrate

BENCH_STAMP := $(VENV)/.bench-stamp

$(BENCH_STAMP): $(STAMP) setup.cfg
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[embedded,test,bench]'
	touch $(BENCH_STAMP)

## Run the benchmark suite (reports figures; never fails on them). BENCH_ARGS="--quick" for a short run.
bench: $(BENCH_STAMP)
	$(BIN)/python -m bench $(BENCH_ARGS)

clean:
	rm -rf $(VENV) var build src/*.egg-info
