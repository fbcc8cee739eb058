# zeke: `make run` (set-up plus the demo pipeline) and `make test` are all a new machine needs.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat setup.cfg pyproject.toml | sha1sum | cut -c1-12)
NODE_STAMP := tests/node/node_modules/.installed

.PHONY: install node browser test lint run worker beat api bench chaos clean screenshots

install: $(STAMP)

$(STAMP): setup.cfg pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	rm -f $(VENV)/.installed-* && touch $@

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

test: install node browser lint
	$(PY) -m pytest -q -m "not slow" tests

# The README's dashboard screenshots, taken by the browser tests.
screenshots: install browser
	ZEKE_SCREENSHOTS=docs/img $(PY) -m pytest -q tests/app/test_dashboard_browser.py

run: install
	$(PY) -m zeke.cli run

worker: install
	$(VENV)/bin/celery -A zeke worker -l info

beat: install
	$(VENV)/bin/celery -A zeke beat -l info

api: install
	$(PY) -m zeke.cli api

bench: install node
	$(PY) -m bench
	$(PY) -m bench.budget
	$(PY) -m bench.trace
	$(PY) -m bench.floor
	$(PY) -m bench.roundtrip
	$(PY) -m bench.scale

chaos: install
	$(PY) -m pytest -q -m slow tests

clean:
	rm -rf $(VENV) tests/node/node_modules
