# Helm chart, images and dev loop. See docs/chart.md.
#
#   make chart-lint       helm lint charts/humanizer (default values and each toggle set)
#   make chart-test       tests/chart (helm template + schema + security) and tests/promtool (alerts)
#   make chart-crd-sync   copy manifests/crd/humanizejobs.yaml into charts/humanizer/crds/
#   make promtool         go install promtool into $(HUMANIZER_CACHE)/promtool/<version>/bin
#   make kind-up | kind-load | e2e-kind   local kind cluster (skipped with a reason without docker/kind)
#
# helm is the cluster tier's: $(HUMANIZER_CACHE)/helm/<HELM_VERSION>/bin/helm, built by tools/k8s/build.sh.

HUMANIZER_CACHE ?= $(HOME)/.cache/humanizer
UV ?= uv
CHART_DIR := charts/humanizer
CHART_CRD := $(CHART_DIR)/crds/humanizejobs.yaml
CHART_CRD_SOURCE := manifests/crd/humanizejobs.yaml
CHART_HELM_VERSION := $(shell sed -n 's/^HELM_VERSION=//p' tools/k8s/versions.env)
HELM ?= $(HUMANIZER_CACHE)/helm/$(CHART_HELM_VERSION)/bin/helm
export HELM

# promtool from the Prometheus module (v0.316.0 = Prometheus v3.16.0; its go.mod asks for go 1.26.7).
PROMTOOL_VERSION ?= v0.316.0
PROMTOOL ?= $(HUMANIZER_CACHE)/promtool/$(PROMTOOL_VERSION)/bin/promtool
export PROMTOOL

.PHONY: chart-lint chart-test chart-crd-sync promtool promtool-test helm-bin kind-up kind-load e2e-kind

$(HUMANIZER_CACHE)/helm/$(CHART_HELM_VERSION)/bin/helm:
	HUMANIZER_CACHE="$(HUMANIZER_CACHE)" tools/k8s/build.sh helm

helm-bin: $(HELM)

$(PROMTOOL):
	@mkdir -p "$(HUMANIZER_CACHE)/promtool"
	@tmp="$$(mktemp -d "$(HUMANIZER_CACHE)/promtool/.build.XXXXXX")" && \
	echo "promtool $(PROMTOOL_VERSION): go install (cold: several minutes)" >&2 && \
	CGO_ENABLED=0 GOTOOLCHAIN=local GOBIN="$$tmp/bin" GOFLAGS="-trimpath $(PROMTOOL_GOFLAGS)" \
		go install -ldflags "-s -w" github.com/prometheus/prometheus/cmd/promtool@$(PROMTOOL_VERSION) && \
	rm -rf "$(dir $(PROMTOOL))" && mkdir -p "$(dir $(PROMTOOL))" && \
	mv "$$tmp/bin/promtool" "$(PROMTOOL)" && rm -rf "$$tmp"

promtool: $(PROMTOOL) ## install promtool (Prometheus rule checks/unit tests) into the cache
