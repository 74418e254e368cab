# Insights: `make run` starts the whole service on embedded defaults; `make test` runs every test.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
STAMP := $(VENV)/.installed
DEV_STAMP := $(VENV)/.installed-dev
SERVER_PACKAGES := postgresql redis-server openssh-server openssh-client

.PHONY: help install install-dev install-servers bench-tools browser migrate seed run test lint format bench clean

help:
	@echo "make run     - install, migrate, seed demo data, start web + worker + beat"
	@echo "make test    - install test dependencies and run the test suite"
	@echo "make lint    - ruff + mypy"
	@echo "make bench   - performance figures (BENCH_ROWS=5000000 by default)"

$(PY):
	$(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)

# `pip install -e .` puts the `insights` command (insights_cli/) in $(BIN).
$(STAMP): requirements.txt pyproject.toml | $(PY)
	$(BIN)/pip install -q -r requirements.txt
	$(BIN)/pip install -q -e . --no-deps
	touch $@

$(DEV_STAMP): requirements.txt requirements-dev.txt pyproject.toml | $(PY)
	$(BIN)/pip install -q -r requirements-dev.txt
	$(BIN)/pip install -q -e . --no-deps
	touch $(STAMP) $@

install: $(STAMP)

install-dev: $(DEV_STAMP)

# Real servers the integration tests start on free ports (PostgreSQL, Redis, OpenSSH).
install-servers:
	@missing=""; for p in $(SERVER_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi

migrate: install
	@mkdir -p "$${INSIGHTS_VAR_DIR:-var}"
	$(PY) manage.py migrate --noinput

seed: migrate
	$(PY) manage.py seed_demo --customers 3 --sessions 2000 --seed 1

run: migrate
	$(PY) -m insights.devserver

test: install-dev install-servers bench-tools browser
	$(BIN)/pytest

lint: install-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy .

format: install-dev
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# Debian's chromium, driven by Playwright in the console's browser tests (never `playwright install`).
browser:
	@test -x /usr/bin/chromium || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium)

# wrk drives the status-polling benchmark.
bench-tools:
	@command -v wrk >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk)

bench: install-dev install-servers bench-tools
	$(PY) -m bench

clean:
	rm -rf $(VENV) var
