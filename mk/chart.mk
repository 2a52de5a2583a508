# Helm chart, images and dev loop. See docs/chart.md.
#
#   make chart-lint       helm lint --strict charts/humanizer (defaults and the main toggles)
#   make chart-test       tests/chart (helm template: kinds, security, labels, RBAC, schema, CRD drift)
#                         and tests/promtool (promtool check/test rules, dashboard queries parse);
#                         a prerequisite of `make test-cluster`, so `make test` runs it
#   make chart-crd-sync   copy manifests/crd/humanizejobs.yaml into charts/humanizer/crds/
#   make promtool         go install promtool into $(HUMANIZER_CACHE)/promtool/<version>/bin
#   make kind-up | kind-load | e2e-kind   local kind cluster with the real image; each prints why and
#                         exits 0 where Docker or kind is missing (not part of `make test`)
#
# helm is the cluster tier's: $(HUMANIZER_CACHE)/helm/<HELM_VERSION>/bin/helm, built by tools/k8s/build.sh
# (the same file as CLUSTER_HELM in mk/cluster.mk). Override with HELM=/path/to/helm.

HUMANIZER_CACHE ?= $(HOME)/.cache/humanizer
UV ?= uv
CHART_DIR := charts/humanizer
CHART_CRD := $(CHART_DIR)/crds/humanizejobs.yaml
CHART_CRD_SOURCE := manifests/crd/humanizejobs.yaml
CHART_HELM_VERSION := $(shell sed -n 's/^HELM_VERSION=//p' tools/k8s/versions.env)
CHART_HELM_CACHED := $(HUMANIZER_CACHE)/helm/$(CHART_HELM_VERSION)/bin/helm
HELM ?= $(CHART_HELM_CACHED)

# promtool from the Prometheus module: v0.316.0 is Prometheus v3.16.0 (its go.mod asks for go 1.26.7).
# Keep in step with tests/promtool/test_rules.py.
PROMTOOL_VERSION ?= v0.316.0
PROMTOOL ?= $(HUMANIZER_CACHE)/promtool/$(PROMTOOL_VERSION)/bin/promtool

KIND ?= kind
KIND_CLUSTER ?= humanizer
KIND_IMAGE_REPO ?= humanizer
KIND_IMAGE_TAG ?= dev
KIND_IMAGE := $(KIND_IMAGE_REPO):$(KIND_IMAGE_TAG)

.PHONY: chart-lint chart-test chart-crd-sync promtool helm-bin kind-up kind-load e2e-kind

$(CHART_HELM_CACHED):
	HUMANIZER_CACHE="$(HUMANIZER_CACHE)" tools/k8s/build.sh helm

helm-bin: $(HELM)

$(HUMANIZER_CACHE)/promtool/$(PROMTOOL_VERSION)/bin/promtool:
	@mkdir -p "$(HUMANIZER_CACHE)/promtool"
	@tmp="$$(mktemp -d "$(HUMANIZER_CACHE)/promtool/.build.XXXXXX")" && \
	echo "promtool $(PROMTOOL_VERSION): go install (cold: ~7 min on 2 cores)" >&2 && \
	CGO_ENABLED=0 GOTOOLCHAIN=local GOBIN="$$tmp/bin" GOFLAGS="-trimpath $(PROMTOOL_GOFLAGS)" \
		go install -ldflags "-s -w" github.com/prometheus/prometheus/cmd/promtool@$(PROMTOOL_VERSION) && \
	rm -rf "$(dir $@)" && mkdir -p "$(dir $@)" && mv "$$tmp/bin/promtool" "$@" && rm -rf "$$tmp"

promtool: $(PROMTOOL) ## install promtool (checks and unit-tests the alert rules) into the cache

chart-lint: $(HELM) ## helm lint --strict the chart with its defaults and main toggles
	$(HELM) lint --strict $(CHART_DIR)
	$(HELM) lint --strict $(CHART_DIR) --set monitoring.serviceMonitor.enabled=true \
		--set monitoring.podMonitor.enabled=true --set monitoring.prometheusRule.enabled=true \
		--set monitoring.dashboards.enabled=true --set flower.enabled=true
	$(HELM) lint --strict $(CHART_DIR) --set redis.enabled=false --set externalRedis.url=redis://r:6379/0 \
		--set operator.watch.clusterWide=true

chart-test: $(HELM) $(PROMTOOL) $(VENV_STAMP) ## chart template tests + promtool rule tests
	HELM="$(HELM)" PROMTOOL="$(PROMTOOL)" $(UV) run --frozen pytest tests/chart tests/promtool $(PYTEST_ARGS)

chart-crd-sync: ## copy the CRD from manifests/crd/ into the chart (the drift test compares them)
	@test -f $(CHART_CRD_SOURCE) || { echo "$(CHART_CRD_SOURCE) does not exist yet" >&2; exit 1; }
	cp $(CHART_CRD_SOURCE) $(CHART_CRD)

# `make test-cluster` (and so `make test`) runs the chart tests first.
test-cluster: chart-test

# ---- kind (optional; needs a Docker engine and kind) ------------------------------------------------
define kind_guard
	@if ! command -v docker >/dev/null 2>&1 || ! docker info >/dev/null 2>&1; then \
		echo "$@: skipped: no Docker engine here (docker info fails)"; exit 0; fi; \
	if ! command -v $(KIND) >/dev/null 2>&1; then echo "$@: skipped: kind is not installed"; exit 0; fi; \
	$(1)
endef

kind-up: ## create the kind cluster $(KIND_CLUSTER) (skipped with a reason without Docker/kind)
	$(call kind_guard, \
	  $(KIND) get clusters 2>/dev/null | grep -qx "$(KIND_CLUSTER)" || \
	  $(KIND) create cluster --name "$(KIND_CLUSTER)" --wait 180s)

kind-load: ## build the image and load it into the kind cluster (skipped without Docker/kind)
	$(call kind_guard, \
	  docker build -t "$(KIND_IMAGE)" . && $(KIND) load docker-image "$(KIND_IMAGE)" --name "$(KIND_CLUSTER)")

e2e-kind: ## kind cluster + image + tests/e2e (the node tier's scenarios; skipped with a reason without Docker/kind)
	$(call kind_guard, \
	  $(MAKE) --no-print-directory kind-up kind-load && \
	  KUBECONFIG="$${KUBECONFIG:-$$HOME/.kube/config}" HUMANIZER_E2E_CONTEXT="kind-$(KIND_CLUSTER)" \
	    HUMANIZER_E2E_IMAGE="$(KIND_IMAGE)" HELM="$(HELM)" $(UV) run --frozen pytest tests/e2e -m e2e $(PYTEST_ARGS))
