# amoiq-chat. `make run` serves the app, `make test` runs the suite; both build .venv first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: run test bench migrate clean browser

$(STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[embedded,test]'
	touch $(STAMP)

## Serve on http://127.0.0.1:5000 (embedded PostgreSQL and Redis unless DATABASE_URL/REDIS_URL are set).
run: $(STAMP)
	$(BIN)/amoiq-chat serve

## Debian's Chromium and its driver for the browser tests: installed with apt-get when missing (as root),
## otherwise a message saying how.
browser:
	@if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "installing Debian's chromium and chromium-driver for the browser tests"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	    chromium chromium-driver fonts-dejavu-core >/dev/null; \
	else \
	  echo "The browser tests need Debian's Chromium: run 'sudo apt-get install chromium chromium-driver'" \
	    "(or 'make test' as root, which installs them), then 'make test' again." >&2; exit 1; \
	fi

## Run the whole test suite (the browser tests included).
test: $(STAMP) browser
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
