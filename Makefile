# ps-integrations: the two commands are `make demo` and `make test` (see README.md).
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
KEEP ?= 0
# The calendar guard runs the date-sensitive tests again with every process's clock this far ahead.
CALENDAR_OFFSET ?= +455d

.PHONY: prerequisites venv demo demo-stop test test-distributed lint typecheck unit constraints sandbox bench chaos chaos-ci clean

venv: $(STAMP)

REQUIREMENTS := requirements.txt requirements-sandbox.txt requirements-dev.txt

# The development set (product + sandbox + tests and checks), pinned by the one constraints file.
$(STAMP): $(REQUIREMENTS) constraints.txt
	@command -v $(PYTHON) >/dev/null || { echo "$(PYTHON) is required: install Python 3.11 (or set PYTHON=/path/to/python3.11)" >&2; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements-dev.txt -c constraints.txt
	$(BIN)/pip install --quiet --no-deps -e .
	touch $(STAMP)

# Re-resolve the development set (which includes the runtime and sandbox sets) from scratch and freeze
# the result as the project's one constraints file.
constraints:
	rm -rf .venv-constraints
	$(PYTHON) -m venv .venv-constraints
	.venv-constraints/bin/pip install --quiet --upgrade pip
	.venv-constraints/bin/pip install --quiet -r requirements-dev.txt
	.venv-constraints/bin/pip freeze --exclude-editable | sort > constraints.txt
	rm -rf .venv-constraints

# The product on CeleryExecutor with PostgreSQL and Redis on this machine (see scripts/distributed.py).
test-distributed: venv
	scripts/prerequisites.sh postgresql redis-server
	scripts/with_postgres.sh $(BIN)/python scripts/distributed.py

lint: venv
	$(BIN)/ruff check plugins sandbox dags tests scripts bench
	$(BIN)/ruff format --check plugins sandbox dags tests scripts bench

typecheck: venv
	$(BIN)/mypy

# Unit + integration tests. PostgreSQL runs as a throwaway cluster for the state-store tests. Then the
# calendar guard: the date-sensitive tests (marker `calendar`) once more with every clock moved by
# CALENDAR_OFFSET (Debian's faketime), so a test or product path reading the machine's date fails here.
test: prerequisites lint typecheck
	scripts/with_postgres.sh $(BIN)/python -m pytest -m "not chaos_sequence" $(PYTEST_ARGS)
	@echo "calendar guard: date-sensitive tests with every clock moved $(CALENDAR_OFFSET)"
	faketime -f '$(CALENDAR_OFFSET)' $(BIN)/python -m pytest -q -m calendar $(CALENDAR_PYTEST_ARGS)

# Debian packages the tests need (installed when missing and root; see scripts/prerequisites.sh).
prerequisites:
	scripts/prerequisites.sh postgresql chromium chromium-driver faketime redis-server

demo: venv
	$(BIN)/python scripts/demo.py $(if $(filter 1 yes true,$(KEEP)),--keep,)

demo-stop:
	@if [ -f .demo/pids ]; then for pid in $$(cat .demo/pids); do kill -TERM -- -$$pid 2>/dev/null || true; done; rm -f .demo/pids; echo stopped; fi

sandbox: venv
	$(BIN)/python -m sandbox serve

# Every DAG under seeded random faults and SIGKILLs, exactly-once invariants checked (scripts/chaos/).
# SEED replays a run (printed by every run and with every failure); DAG=a,b narrows it; ONLY=n one sequence
# (narrowed runs skip the kill minimum). RUN_BOUND=s: seconds before a DAG run counts as hung (killed, its
# stacks dumped into its log, the sequence failed); default 6x the step's reference run, at least 120.
CHAOS_SEQUENCES ?= 50
CHAOS_MIN_KILLS ?= 20
chaos: venv
	$(BIN)/python -m scripts.chaos --sequences $(CHAOS_SEQUENCES) $(if $(DAG)$(ONLY),,--min-kills $(CHAOS_MIN_KILLS)) \
		$(if $(SEED),--seed $(SEED),) $(if $(DAG),--dag $(DAG),) $(if $(ONLY),--only $(ONLY),) \
		$(if $(RUN_BOUND),--run-bound $(RUN_BOUND),)

# The short form for CI: the harness's own real-sequence test (a broken build caught, a hang named), then
# one sequence per DAG (under 5 minutes), a new seed per commit: its date (printed).
CHAOS_CI_PER_DAG ?= 1
chaos-ci: venv
	$(BIN)/python -m pytest -q -m chaos_sequence tests/chaos
	$(BIN)/python -m scripts.chaos --ci --per-dag $(CHAOS_CI_PER_DAG) $(if $(SEED),--seed $(SEED),) $(if $(DAG),--dag $(DAG),) \
		$(if $(RUN_BOUND),--run-bound $(RUN_BOUND),)

bench: venv
	@for b in bench/bench_*.py; do [ -e "$$b" ] && $(BIN)/python "$$b"; done; true

clean:
	rm -rf .demo .chaos .pytest_cache .mypy_cache .ruff_cache exports
