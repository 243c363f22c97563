# The README's commands. `make dev` serves the local API; `make test` passes every test.
SHELL := /bin/bash
.DEFAULT_GOAL := help

export UV_PYTHON_DOWNLOADS := never
export UV_LINK_MODE := copy
export SAM_CLI_TELEMETRY := 0
PY312 = $(shell scripts/python312.sh)
UV := .tools/uv/bin/uv
UV_VERSION := 0.13.8
SAM_VERSION := 1.170.0
VENV := .venv
ASSETS := layers/core/iris_exec/assets
ASSET_SOURCES := $(wildcard sandbox/src/*.ts) $(wildcard sandbox/python/*.py) sandbox/build.mjs \
  $(wildcard console/src/*.ts) console/index.html console/app.css console/build.mjs \
  $(wildcard console/docs/*)
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: help setup dev test test-fast bench lint typecheck assets system-packages test-packages sam-tools clean \
  layer-requirements layer-requirements-check

help:
	@echo "make dev    - set up, then serve the local API on 127.0.0.1:$${IRIS_PORT:-8000}"
	@echo "make test   - set up, then run every check and test"
	@echo "make test-fast - the unit and service tests alone (no jails, no servers; seconds)"
	@echo "make bench  - set up, then run the benchmarks and print their figures"
	@echo "make setup  - install everything the project needs (idempotent)"

setup: system-packages $(VENV)/.synced node_modules/.installed $(ASSETS)/.built

# Debian packages the local sandboxes need (bubblewrap; util-linux gives setpriv and mount).
system-packages:
	@command -v bwrap >/dev/null && command -v setpriv >/dev/null || { \
	  echo "installing bubblewrap (the local sandbox)"; \
	  $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq bubblewrap util-linux >/dev/null; }

# What only the tests need: PostgreSQL (the Supabase adapter's tests start their own server)
# and Debian's Chromium (the console's browser tests; Playwright downloads no browser).
test-packages:
	@ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 && command -v psql >/dev/null || { \
	  echo "installing postgresql (for the tool store's tests)"; \
	  $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq postgresql >/dev/null; }
	@test -x /usr/bin/chromium || { \
	  echo "installing chromium (for the console's browser tests)"; \
	  $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq chromium >/dev/null; }

$(UV):
	@py="$(PY312)"; test -n "$$py" || exit 1; \
	"$$py" -m venv .tools/uv && .tools/uv/bin/pip install -q --disable-pip-version-check uv==$(UV_VERSION)

$(VENV)/.synced: pyproject.toml uv.lock | $(UV)
	$(UV) sync --frozen --python "$(PY312)" --all-extras
	@touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	@touch $@

$(ASSETS)/.built: $(ASSET_SOURCES) node_modules/.installed
	node sandbox/build.mjs $(ASSETS)
	node console/build.mjs $(ASSETS)
	@# The jails' Python reads these .pyc (its mount is read-only): no compiling per start.
	@if [ -x /usr/bin/python3 ]; then /usr/bin/python3 -m compileall -q $(ASSETS)/python; fi
	@touch $@

assets: $(ASSETS)/.built

dev: setup
	$(VENV)/bin/iris-exec serve

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports --no-cache --no-logo

typecheck: setup
	$(VENV)/bin/mypy
	$(VENV)/bin/mypy examples/client.py
	node_modules/.bin/tsc -p sandbox/tsconfig.json
	node_modules/.bin/tsc -p clients/typescript/tsconfig.json
	node_modules/.bin/tsc -p console/tsconfig.json

.tools/sam/bin/sam: | $(UV)
	$(UV) venv -q --python "$(PY312)" .tools/sam
	$(UV) pip install -q --python .tools/sam/bin/python aws-sam-cli==$(SAM_VERSION)

sam-tools: .tools/sam/bin/sam

test: setup test-packages sam-tools lint typecheck
	PATH="$(CURDIR)/.tools/sam/bin:$$PATH" $(VENV)/bin/pytest -n 2 --dist loadfile

# The developer's loop: services on in-memory SQLite and fake providers, the HTTP edge
# in-process, the layer contracts. No jail, no server, no DynamoDB Local (docs/testing.md).
test-fast: setup
	$(VENV)/bin/pytest -n 0 -q -m "not slow and not integration and not jail" tests/unit

bench: setup
	$(VENV)/bin/python -m bench

clean:
	rm -rf .venv .tools node_modules $(ASSETS) clients/typescript/dist examples/dist examples/node_modules .iris .aws-sam .mypy_cache .ruff_cache .pytest_cache

# The layer's pinned dependencies, exported from the lock (boto3 comes with the runtime).
LAYER_EXPORT = $(UV) export --frozen --no-dev --no-hashes --no-emit-project --extra aws \
  --extra e2b --extra postgres --no-emit-package boto3 --no-emit-package botocore \
  --no-emit-package s3transfer
layer-requirements: | $(UV)
	$(LAYER_EXPORT) -o layers/core/requirements.txt

# Fails when layers/core/requirements.txt no longer matches uv.lock.
layer-requirements-check: | $(UV)
	@diff <(grep -v '^#' layers/core/requirements.txt) <($(LAYER_EXPORT) --quiet | grep -v '^#') \
	  || { echo "layers/core/requirements.txt is stale: run make layer-requirements" >&2; exit 1; }
