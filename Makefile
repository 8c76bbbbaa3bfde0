# opslib: the README's two commands are `make demo` and `make test`.
SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -c
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PROJECT ?= shop
# make demo: the demo's own sample data (application queries, tenant logins, sample vulnerability
# reports) and a live, bounded k6 run (10 VUs, 20 s) against the demo on 127.0.0.1.
DEMO_PARAMS ?= -p demo_data true -p run_k6 true
export VENV

.PHONY: help venv engine host-tools stack demo test test-latest lint typecheck unit lab report clean-outputs demo-down

help:
	@echo "make demo   - set up everything (venv, Docker engine, demo stack + data) and run every runbook"
	@echo "make test   - ruff, mypy, unit + integration tests against the demo stack, nbval on notebooks"
	@echo "make lab    - open the runbooks in JupyterLab"
	@echo "make stack  - only build/start the demo stack and load its data"

# The virtualenv is rebuilt only when pyproject.toml, the lock or the C log scanner changes. Every
# package comes from requirements.txt (pinned, hash-checked; refresh it with scripts/lock.sh);
# opslib itself is installed editable on top without resolving anything again, and its build hook
# (hatch_build.py) compiles opslib/logs/_logscan.c when a C compiler is there.
$(BIN)/.installed: pyproject.toml requirements.txt hatch_build.py opslib/logs/_logscan.c
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --require-hashes -r requirements.txt 2>&1 | { grep -v '^WARNING: Location' || true; }
	$(BIN)/python -m pip install -q --no-deps --no-build-isolation -e . 2>&1 | { grep -v '^WARNING: Location' || true; }
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 >/dev/null
	$(BIN)/python -c 'from opslib.logs import _native; print(_native.describe())'
	@touch $@

venv: $(BIN)/.installed

engine: venv
	scripts/docker-engine.sh

# Host tools the runbooks call (logrotate, a C compiler for the log scanner); `make test` adds
# chromium. Installs only what is missing, and says what it installs.
host-tools:
	scripts/host-tools.sh runbooks

stack: engine host-tools
	$(BIN)/python scripts/demo_stack.py up

demo: stack
	@status=0; $(BIN)/opslib run --all --project $(PROJECT) $(DEMO_PARAMS) || status=$$?; \
	  $(BIN)/opslib report >/dev/null || true; \
	  echo; echo "Reports: the report.html paths above; every run: $(CURDIR)/outputs/index.html"; \
	  if [ $$status -eq 2 ]; then echo "(some checks failed: that is the demo stack's planted findings; read the reports)"; status=0; fi; \
	  exit $$status

lint: venv
	$(BIN)/ruff check opslib tests benchmarks scripts hatch_build.py

typecheck: venv
	$(BIN)/mypy

unit: venv
	$(BIN)/pytest tests/unit -q

# Without an engine the Docker tests skip on a laptop; with CI=true they fail instead.
test: venv
	@if scripts/docker-engine.sh; then \
	  $(BIN)/python scripts/demo_stack.py up; \
	elif [ "$${CI:-}" = "true" ]; then exit 1; \
	else echo "(no Docker engine: Docker tests will skip)"; fi
	@scripts/host-tools.sh test || [ "$${CI:-}" != "true" ]
	$(MAKE) --no-print-directory lint typecheck
	$(BIN)/pytest tests --nbval-lax notebooks -p no:cacheprovider

# The newest versions pyproject allows (not the lock), in a throwaway venv: the unit tests show a
# breaking release of a dependency before a user gets it. Upgrade the lock once this passes.
LATEST_VENV ?= $(or $(TMPDIR),/tmp)/opslib-latest-venv
test-latest:
	rm -rf $(LATEST_VENV)
	$(PYTHON) -m venv $(LATEST_VENV)
	$(LATEST_VENV)/bin/python -m pip install -q --upgrade pip 2>&1 | { grep -v '^WARNING: Location' || true; }
	$(LATEST_VENV)/bin/python -m pip install -q --upgrade --upgrade-strategy eager -e '.[dev]' 2>&1 | { grep -v '^WARNING: Location' || true; }
	@$(LATEST_VENV)/bin/python -m pip list --format=freeze 2>/dev/null | grep -iE '^(polars|pandas|numpy|pyarrow|docker|papermill|nbclient|plotly)==' | tr '\n' ' '; echo
	$(LATEST_VENV)/bin/python -m pytest tests/unit -q -p no:cacheprovider

lab: venv
	$(BIN)/jupyter lab notebooks/

report: venv
	$(BIN)/opslib report

demo-down:
	docker compose -p $(PROJECT) -f demo/compose.yaml down -v

clean-outputs:
	find outputs -mindepth 1 ! -name .gitkeep -exec rm -rf {} +
