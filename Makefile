# Everything the project needs is set up from here: a pinned uv, the locked
# environment, Debian packages for the tests. `make help` lists the targets.

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
MAKEFLAGS += --no-print-directory

ifndef PYTHON
PYTHON := $(shell scripts/find-python)
endif
UV_VERSION := 0.13.8
TOOLS := .tools
UV := $(TOOLS)/bin/uv
VENV := .venv
PY := $(VENV)/bin/python
GUNICORN := $(VENV)/bin/gunicorn -c python:django_k8s_runtime.gunicorn config.asgi:application

# `make run` is production-like, with what a laptop needs: plain http on
# localhost, readable logs, a local secret key, SQLite unless DATABASE_URL is set.
RUN_ENV := DJANGO_SECRET_KEY="$${DJANGO_SECRET_KEY:-$$(cat .secret_key)}" \
	DJANGO_ALLOWED_HOSTS="$${DJANGO_ALLOWED_HOSTS:-localhost,127.0.0.1,[::1]}" \
	DJANGO_HTTPS="$${DJANGO_HTTPS:-false}" \
	LOG_FORMAT="$${LOG_FORMAT:-text}"

.PHONY: help
help: ## List the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-16s %s\n", $$1, $$2}'

$(UV):
	@test -n "$(PYTHON)" || { echo "Python 3.12 is required; see the message above." >&2; exit 1; }
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/python -m pip install --quiet --disable-pip-version-check "uv==$(UV_VERSION)"

# The runtime (runtime/) is installed editable; the two files it puts at the top of
# site-packages (WEB_CONCURRENCY's check) are copies, reinstalled when they change.
$(VENV)/.synced: pyproject.toml uv.lock runtime/pyproject.toml runtime/src/django_k8s_runtime.pth runtime/src/_django_k8s_runtime_preflight.py | $(UV)
	$(UV) sync --frozen --inexact --python $(PYTHON) --group dev --reinstall-package django-k8s-runtime
	@touch $@

.PHONY: venv
venv: $(VENV)/.synced ## Create .venv from uv.lock

.secret_key:
	@umask 077 && $(PYTHON) -c 'import secrets; print(secrets.token_urlsafe(50))' > $@
	@echo "Generated a local secret key in .secret_key (git-ignored; never used by the image)."

.PHONY: run
run: venv .secret_key ## Migrate, collect static files and serve on :8000 (Gunicorn + Uvicorn workers)
	@export $(RUN_ENV); \
	$(PY) manage.py migrate --noinput; \
	$(PY) manage.py collectstatic --noinput -v0; \
	exec $(GUNICORN)

.PHONY: system-packages
system-packages: ## Install the Debian packages tests use (PostgreSQL, Chromium, HAProxy, wrk, podman...)
	scripts/install-system-packages

# The published schemas the manifest tests check custom resources against (Gateway
# API's, KEDA's), from the npm registry, as tests/project/deploy/schemas/ locks them.
SCHEMAS := tests/project/deploy/schemas

$(SCHEMAS)/node_modules/.package-lock.json: $(SCHEMAS)/package.json $(SCHEMAS)/package-lock.json
	npm ci --prefix $(SCHEMAS) --no-audit --no-fund --loglevel=error
	@touch $@

.PHONY: node-packages
node-packages: ## Install the npm packages the manifest tests use (Gateway API's and KEDA's schemas)
	@if command -v npm >/dev/null; then $(MAKE) -s $(SCHEMAS)/node_modules/.package-lock.json; \
	else echo "npm is missing: the schema tests will skip (make system-packages installs it)"; fi

.PHONY: lint
lint: venv ## ruff check and format check; mypy --strict on the runtime
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

.PHONY: format
format: venv ## Format and fix with ruff
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

# .venv is this cell of the Django series × Python matrix (pyproject.toml's default
# group, on $(PYTHON)); `make test` runs the whole suite there and the series tests
# in every other cell.
VENV_CELL := 5.2/3.12

.PHONY: test
test: venv node-packages ## Lint, the whole test suite (the image tests included), then every other Django series × Python
	@scripts/install-system-packages || echo "(tests that need these packages will skip)"
	$(MAKE) lint
	$(PY) -m pytest $(PYTEST_ARGS)
	$(PY) scripts/test-series --except $(VENV_CELL) -- $(PYTEST_ARGS)

.PHONY: test-series
test-series: venv ## The quick tier, the handler's and the adoption tests on each Django series × Python, in .venvs/
	$(PY) scripts/test-series -- $(PYTEST_ARGS)

.PHONY: test-fast
test-fast: venv node-packages ## The quick tests only (in-process ASGI tier, units, a few short servers): about a minute
	$(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

.PHONY: docs
docs: venv ## Regenerate the variables reference (docs/configuration.md, runtime/README.md) from the declarations
	$(PY) scripts/update-readme

.PHONY: bench
bench: venv ## Benchmark against the alternatives (HTTP, WebSockets, hostile clients; about 22 minutes) into docs/
	@scripts/install-system-packages
	$(UV) sync --frozen --python $(PYTHON) --group dev --group bench
	$(PY) -m bench

.PHONY: image
image: ## Build the container image (docker, or podman/buildah where there is no Docker engine)
	scripts/image build

.PHONY: image-test
image-test: venv ## Only the image tests: build the real Dockerfile, run it, check it from outside
	@scripts/install-system-packages
	$(PY) -m pytest tests/project/image $(PYTEST_ARGS)

.PHONY: clean
clean: ## Remove the environments and generated files
	rm -rf $(VENV) .venvs $(TOOLS) staticfiles build .pytest_cache .ruff_cache $(SCHEMAS)/node_modules
