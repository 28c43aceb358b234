# The two commands (CONTRACTS §1): `make run` serves chatweb on http://127.0.0.1:8000, `make test` runs every test.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
HOST ?= 127.0.0.1
PORT ?= 8000
DEV_UPSTREAM_PORT ?= 8001

.PHONY: run test lint audit bench browser-deps clean

$(VENV)/.installed: requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed requirements-dev.txt
	$(PY) -m pip install -q -r requirements-dev.txt
	touch $@

run: $(VENV)/.installed
	$(PY) manage.py migrate --noinput -v 0
	$(PY) manage.py bootstrap --dev-upstream-url http://127.0.0.1:$(DEV_UPSTREAM_PORT)/v1
	@echo "Development upstream on http://127.0.0.1:$(DEV_UPSTREAM_PORT)/v1, chatweb on http://$(HOST):$(PORT)/"
	@set -e; $(PY) manage.py devupstream --host 127.0.0.1 --port $(DEV_UPSTREAM_PORT) & UPSTREAM=$$!; \
	trap 'kill $$UPSTREAM 2>/dev/null' EXIT INT TERM; \
	$(VENV)/bin/daphne -b $(HOST) -p $(PORT) chatweb.asgi:application

# Debian's Chromium for the browser tests (never a downloaded browser build).
browser-deps:
	@test -x /usr/bin/chromium || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium; }

lint: $(VENV)/.installed-dev
	$(VENV)/bin/ruff check .

# Known vulnerabilities in the installed packages fail the run; packages the service cannot answer for are
# reported loudly, and fail it only with AUDIT_STRICT=1 (scripts/audit.py, docs/security.md).
audit: $(VENV)/.installed-dev
	$(PY) scripts/audit.py

test: $(VENV)/.installed-dev browser-deps lint audit
	$(PY) -m pytest $(PYTEST_ARGS)

bench: $(VENV)/.installed-dev
	$(PY) -m bench

clean:
	rm -rf $(VENV) var .pytest_cache .ruff_cache .hypothesis
