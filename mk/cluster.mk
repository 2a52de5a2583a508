# Cluster test tier: a real Kubernetes control plane (etcd, kube-apiserver, kube-controller-manager,
# kube-scheduler, kwok fake nodes) as local processes on loopback. See docs/cluster-tier.md.
#
#   make cluster-tools   build/cache the binaries (cold: ~20-30 min; warm: a no-op)
#   make cluster-up      start a detached control plane; prints `export KUBECONFIG=...`
#   make cluster-status  pids and memory of the running control plane
#   make cluster-down    stop every process and remove the state directory
#   make test-cluster    pytest tests/cluster -m cluster (starts its own control plane, or reuses
#                        the one in $KUBECONFIG)
#
# Variables: HUMANIZER_CACHE (binary cache root, default ~/.cache/humanizer), CLUSTER_DIR (state dir
# of cluster-up, default .run/cluster), CLUSTER_NODES (fake nodes, default 1), UV.
# For other targets: CLUSTER_KUBECTL, CLUSTER_HELM, CLUSTER_K8S_BIN point into the cache.

UV ?= uv
HUMANIZER_CACHE ?= $(HOME)/.cache/humanizer
CLUSTER_DIR ?= .run/cluster
CLUSTER_NODES ?= 1

CLUSTER_VERSIONS := $(shell sed -n 's/^\([A-Z_]*_VERSION\)=\(.*\)$$/\1=\2/p' tools/k8s/versions.env)
CLUSTER_K8S_VERSION := $(patsubst KUBERNETES_VERSION=%,%,$(filter KUBERNETES_VERSION=%,$(CLUSTER_VERSIONS)))
CLUSTER_HELM_VERSION := $(patsubst HELM_VERSION=%,%,$(filter HELM_VERSION=%,$(CLUSTER_VERSIONS)))
CLUSTER_K8S_BIN := $(HUMANIZER_CACHE)/k8s/$(CLUSTER_K8S_VERSION)/bin
CLUSTER_KUBECTL := $(CLUSTER_K8S_BIN)/kubectl
CLUSTER_HELM := $(HUMANIZER_CACHE)/helm/$(CLUSTER_HELM_VERSION)/bin/helm
CLUSTER_PY = $(UV) run --frozen python tools/cluster/controlplane.py

.PHONY: cluster-tools cluster-up cluster-down cluster-status test-cluster

cluster-tools: ## build/cache etcd, kube-apiserver & co, kubectl, kwok, helm (cold ~20 min, then a no-op)
	HUMANIZER_CACHE="$(HUMANIZER_CACHE)" tools/k8s/build.sh

cluster-up: cluster-tools $(VENV_STAMP) ## start a local control plane + kwok nodes; prints export KUBECONFIG=...
	HUMANIZER_CACHE="$(HUMANIZER_CACHE)" $(CLUSTER_PY) up --dir "$(CLUSTER_DIR)" --nodes $(CLUSTER_NODES)

cluster-status: ## pids and memory of the control plane started by cluster-up
	$(CLUSTER_PY) status --dir "$(CLUSTER_DIR)"

cluster-down: ## stop the control plane started by cluster-up and remove its state
	$(CLUSTER_PY) down --dir "$(CLUSTER_DIR)"

test-cluster: cluster-tools $(VENV_STAMP) ## real kube-apiserver/etcd/controllers + kwok on loopback
	HUMANIZER_CACHE="$(HUMANIZER_CACHE)" $(UV) run --frozen pytest tests/cluster -m cluster $(PYTEST_ARGS)
