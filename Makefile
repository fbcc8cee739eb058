# zeke: `make run` (set-up plus the demo pipeline) and `make test` are all a new machine needs.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat setup.cfg pyproject.toml | sha1sum | cut -c1-12)
NODE_STAMP := tests/node/node_modules/.installed

.PHONY: install node browser test unit lint run worker beat api bench chaos clean screenshots

# make test's parallel pytest processes (pytest-xdist; each has its own database and workers).
# Whole files go to one process (--dist loadfile), so a module's workers and schema are made once.
TEST_WORKERS ?= 4

install: $(STAMP)

# One progress line a step; pip's own output goes to $(VENV)/install.log (its end is shown on failure).
$(STAMP): setup.cfg pyproject.toml
	@test -x $(PY) || { \
	  $(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null || \
	    { echo "zeke: needs Python 3.11 or newer; '$(PYTHON)' is $$($(PYTHON) --version 2>&1) (make PYTHON=python3.12 ...)" >&2; exit 1; }; \
	  echo "zeke: creating $(VENV) with $$($(PYTHON) --version)"; \
	  $(PYTHON) -m venv $(VENV); }
	@echo "zeke: installing Python packages into $(VENV) (first run: about a minute; log: $(VENV)/install.log)"
	@{ $(PY) -m pip install --upgrade pip && $(PY) -m pip install -e '.[dev]'; } >$(VENV)/install.log 2>&1 || \
	  { tail -n 25 $(VENV)/install.log >&2; echo "zeke: pip failed; its whole output: $(VENV)/install.log" >&2; exit 1; }
	@rm -f $(VENV)/.installed-* && touch $@
	@echo "zeke: installed; the zeke command is $(VENV)/bin/zeke"

node: $(NODE_STAMP)

$(NODE_STAMP): tests/node/package.json
	cd tests/node && npm install --no-audit --no-fund --silent
	touch $@

# Debian's Chromium for the dashboard's browser tests (Playwright drives it; it downloads no browser).
browser:
	@test -x /usr/bin/chromium || command -v chromium >/dev/null || \
	  { [ "$$(id -u)" = 0 ] && apt-get update -q >/dev/null && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null; } || \
	  { echo "make browser: install Debian's chromium (apt-get install chromium) as root" >&2; exit 1; }

lint: install
	$(PY) -m ruff check .

# Every tier but the slow tests (tests/README.md). pytest exits 5 when it collected nothing: a failure.
test: install node browser lint
	$(PY) -m pytest -q -m "not slow" -n $(TEST_WORKERS) --dist loadfile tests

# The unit tier alone: seconds, no database.
unit: install
	env -u DATABASE_PRIMARY_URL $(PY) -m pytest -q tests/unit

# The README's dashboard screenshots, taken by the browser tests.
screenshots: install browser
	ZEKE_SCREENSHOTS=docs/img $(PY) -m pytest -q tests/app/zeke/dashboard/test_views_browser.py

run: install
	@$(PY) -m zeke.cli run

worker: install
	$(VENV)/bin/celery -A zeke worker -l info

beat: install
	$(VENV)/bin/celery -A zeke beat -l info

api: install
	$(PY) -m zeke.cli api

# Every figure of BENCHMARKS.md (30-40 minutes; BENCH_QUICK=1 for a one-minute smoke run that writes nothing).
bench: install node
	$(PY) -m bench

# The slow tests: the chaos tier (kills, restarts, exhaustion) and the wheel install; one at a time.
chaos: install node
	$(PY) -m pytest -q -m slow tests

clean:
	rm -rf $(VENV) tests/node/node_modules
