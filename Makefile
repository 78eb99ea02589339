# make run: set up and serve on http://127.0.0.1:8000.  make test: set up and run every test.
# make worker: a Celery worker with beat for queue mode (needs REDIS_URL).
# make test-postgres: the tests again on PostgreSQL (DATABASE_URL; bin/setup-postgres makes one).
SHELL := /bin/bash
VENV := .venv
# The first Python 3.12+ found (pyenv honours .python-version for python3).
PYTHON ?= $(shell for p in python3.13 python3.12 python3; do \
	command -v $$p >/dev/null 2>&1 && $$p -c 'import sys; sys.exit(sys.version_info < (3, 12))' \
	2>/dev/null && { echo $$p; break; }; done)

.PHONY: run test test-postgres worker lint format check-python clean
.DEFAULT_GOAL := run

check-python:
	@test -n "$(PYTHON)" || { echo "Python 3.12 or newer is needed (python3.13/python3.12/python3)"; exit 1; }

$(VENV)/bin/python: | check-python
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q --upgrade pip

$(VENV)/.runtime: requirements.txt | $(VENV)/bin/python
	$(VENV)/bin/pip install -q -r requirements.txt
	touch $@

$(VENV)/.dev: requirements.txt requirements-dev.txt $(VENV)/.runtime
	$(VENV)/bin/pip install -q -r requirements-dev.txt
	touch $@

run: $(VENV)/.runtime
	$(VENV)/bin/python bin/run-local

test: $(VENV)/.dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/python bin/with-redis $(VENV)/bin/pytest $(PYTEST_ARGS)

# Every test on PostgreSQL: pytest-django makes its test database there, and the tests that
# start the app make one per module on the same server.
POSTGRES_URL ?= postgres://emailservice:emailservice@127.0.0.1:5432/emailservice
test-postgres: $(VENV)/.dev
	DATABASE_URL=$(POSTGRES_URL) $(VENV)/bin/python bin/with-redis $(VENV)/bin/pytest $(PYTEST_ARGS)

# Queue mode's worker with the sweep's beat schedule, against REDIS_URL/DATABASE_URL (.env).
# In production run beat once (its own process) and as many workers as needed. Its schedule is
# kept in memory: the only entry is the sweep every SWEEP_INTERVAL_SECONDS, and the file-backed
# default (shelve, SQLite on Python 3.13) can fail under load and take beat down.
worker: $(VENV)/.runtime
	$(VENV)/bin/celery -A emailservice worker --beat --loglevel INFO \
		--scheduler celery.beat:Scheduler

lint: $(VENV)/.dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(VENV)/.dev
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

clean:
	rm -rf $(VENV) staticfiles .pytest_cache

# make bench: throughput, latency, failover, queue, memory and webhook-ingestion figures as ratios
# against baselines measured in the same run (bench/README.md). make bench-soak: RSS over 50,000
# sends.
.PHONY: bench bench-soak
bench: $(VENV)/.dev
	timeout --signal=TERM 1200 $(VENV)/bin/python -m bench.run $(BENCH_ARGS)

bench-soak: $(VENV)/.dev
	timeout --signal=TERM 1800 $(VENV)/bin/python -m bench.run --soak $(BENCH_ARGS)
