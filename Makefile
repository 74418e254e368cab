# Insights: `make run` starts the whole service on embedded defaults; `make test` runs every test.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
STAMP := $(VENV)/.installed
DEV_STAMP := $(VENV)/.installed-dev
SERVER_PACKAGES := postgresql redis-server openssh-server openssh-client

.PHONY: help install install-dev install-servers spark-server jdk bench-tools browser migrate seed run test lint format bench clean

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

# The Spark Connect server the Spark engine's tests start: the full pyspark (it ships Spark's jars), in a directory
# of its own (it and requirements.txt's thin pyspark-client both provide the `pyspark` module), the same version.
SPARK_VERSION := 4.2.0
SPARK_SERVER := var/spark-server
spark-server: jdk | $(PY)
	@test -f $(SPARK_SERVER)/pyspark-$(SPARK_VERSION).dist-info/METADATA || \
	  $(BIN)/pip install -q --target $(SPARK_SERVER) pyspark==$(SPARK_VERSION)

# Spark's JVM: Debian's OpenJDK 17.
jdk:
	@command -v java >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends openjdk-17-jre-headless)

migrate: install
	@mkdir -p "$${INSIGHTS_VAR_DIR:-var}"
	$(PY) manage.py migrate --noinput

seed: migrate
	$(PY) manage.py seed_demo --customers 3 --sessions 3000 --seed 1

run: migrate
	$(PY) -m insights.devserver

test: install-dev install-servers spark-server bench-tools browser
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
