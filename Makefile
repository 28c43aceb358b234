# The two commands: `make run` serves chatweb on http://127.0.0.1:8000, `make test` runs every test.
# Dependencies come from uv.lock (every package pinned and hashed), installed by uv into .venv; uv itself is
# bootstrapped into .uv/ with this machine's python3 when it is not on PATH.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
UV_VERSION := 0.13.9
UV ?= .uv/bin/uv
HOST ?= 127.0.0.1
PORT ?= 8000
DEV_UPSTREAM_PORT ?= 8001

# uv uses this machine's Python (never a downloaded one) and the project's .venv.
export UV_PYTHON := $(PYTHON)
export UV_PYTHON_DOWNLOADS := never
export UV_PROJECT_ENVIRONMENT := $(VENV)
# `--locked`: the install fails if pyproject.toml and uv.lock disagree (run `uv lock` after editing).
SYNC := $(UV) sync --locked

.PHONY: run test lint types audit bench browser-deps nginx-deps clean

.uv/bin/uv:
	$(PYTHON) -m venv .uv
	.uv/bin/python -m pip install -q uv==$(UV_VERSION)

# What `make run` needs: the runtime dependencies and the development upstream's server.
$(VENV)/.installed: pyproject.toml uv.lock | $(UV)
	$(SYNC) --inexact --no-default-groups --group devserver
	touch $@

# Everything the tests, lint and the type checker need (a superset of the above).
$(VENV)/.installed-dev: pyproject.toml uv.lock | $(UV)
	$(SYNC) --group dev
	touch $@ $(VENV)/.installed

$(VENV)/.installed-bench: $(VENV)/.installed-dev
	$(SYNC) --inexact --group dev --group bench
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

# Debian's nginx for the scale-out test (tests/test_scaleout.py: two processes behind it, one killed mid-burst).
nginx-deps:
	@command -v nginx >/dev/null || test -x /usr/sbin/nginx || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq nginx; }

# Style and the import rules between packages (the contracts in pyproject.toml).
lint: $(VENV)/.installed-dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports --no-cache

types: $(VENV)/.installed-dev
	$(VENV)/bin/mypy

# Known vulnerabilities in the locked packages fail the run; packages the service cannot answer for are
# reported loudly, and fail it only with AUDIT_STRICT=1 (scripts/audit.py, docs/security.md).
audit: $(VENV)/.installed-dev
	$(UV) export --frozen --all-groups --no-emit-project --format requirements-txt --quiet > $(VENV)/locked-requirements.txt
	$(PY) scripts/audit.py $(VENV)/locked-requirements.txt

# The tests' OpenID provider (npm's oidc-provider, pinned in tests/oidc/package-lock.json) runs on Node.js
# (Debian's, installed here when the machine has none).
tests/oidc/node_modules/.installed: tests/oidc/package.json tests/oidc/package-lock.json
	@command -v npm >/dev/null || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq nodejs npm; }
	cd tests/oidc && npm ci --no-audit --no-fund --silent
	touch $@

test: $(VENV)/.installed-dev browser-deps nginx-deps tests/oidc/node_modules/.installed lint types audit
	$(PY) -m pytest $(PYTEST_ARGS)

bench: $(VENV)/.installed-bench
	$(PY) -m bench

clean:
	rm -rf $(VENV) .uv var .pytest_cache .ruff_cache .mypy_cache .import_linter_cache .hypothesis build *.egg-info
