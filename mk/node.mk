# Node test tier: the cluster tier's control plane plus one real node (containerd, runc, kubelet,
# kube-proxy, bridge CNI, CoreDNS, local PersistentVolumes) running the project's own image.
# See docs/node-tier.md.
#
#   make image          build the project's image with podman (docker where an engine runs), cached by
#                       content; IMAGE_REGISTRY / IMAGE_TAG name it (default humanizer:<version>)
#   make node-tools     Debian packages, kubelet/kube-proxy/crictl/CoreDNS, Prometheus and the Prometheus
#                       Operator, and the tier's images
#   make node-up        start a detached cluster with a real node; prints export KUBECONFIG=...
#   make node-status    pids and memory of what node-up started
#   make node-down      stop everything node-up started and restore the host
#   make test-node      pytest tests/node -m node (starts and tears down its own node)
#
# Needs root. HUMANIZER_SKIP_NODE_TIER=1 skips the tier (and `make test` says so in its last line).

NODE_DIR ?= .run/node
NODE_PY = $(UV) run --frozen python tools/node/node.py
NODE_DEB := containerd runc containernetworking-plugins iptables iproute2 podman buildah fuse-overlayfs uidmap \
	debootstrap libc6-dev gcc
IMAGE_REGISTRY ?=
IMAGE_TAG ?=
export IMAGE_REGISTRY IMAGE_TAG

.PHONY: image node-packages node-tools node-up node-down node-status test-node

image: ## build the project's image (podman/buildah here; a local Debian base where no registry answers)
	tools/image/build.sh app

node-packages:
	@if [ "$$(id -u)" != 0 ]; then echo "node tier: needs root (containerd, kubelet, iptables)" >&2; exit 1; fi
	@bash -c 'source tools/image/env.sh && apt_install $(NODE_DEB)' || \
		{ echo "node tier: could not install the Debian packages: $(NODE_DEB)" >&2; exit 1; }

node-tools: node-packages cluster-tools ## packages, kubelet/kube-proxy/crictl/CoreDNS, and the tier's images
	HUMANIZER_CACHE="$(HUMANIZER_CACHE)" tools/k8s/build.sh node monitoring
	tools/image/build.sh app redis pause coredns prometheus prometheus-config-reloader redis-exporter

node-up: node-tools $(VENV_STAMP) ## start a cluster with one real node; prints export KUBECONFIG=...
	HUMANIZER_CACHE="$(HUMANIZER_CACHE)" $(NODE_PY) up --dir "$(NODE_DIR)"

node-status: ## what node-up started, with memory
	$(NODE_PY) status --dir "$(NODE_DIR)"

node-down: ## stop what node-up started and restore the host (sysctls, iptables, interfaces, mounts)
	$(NODE_PY) down --dir "$(NODE_DIR)"

ifeq ($(HUMANIZER_SKIP_NODE_TIER),1)
test-node:
	@echo "node tier: SKIPPED (HUMANIZER_SKIP_NODE_TIER=1)"
else
test-node: node-tools $(VENV_STAMP) ## the chart on a real node with the project's image (needs root)
	HUMANIZER_CACHE="$(HUMANIZER_CACHE)" $(UV) run --frozen pytest tests/node -m node $(PYTEST_ARGS)
endif

.PHONY: dashboards-png
dashboards-png: node-tools $(VENV_STAMP) ## the README's dashboard pictures, from a real Prometheus on the node tier
	HUMANIZER_CACHE="$(HUMANIZER_CACHE)" HUMANIZER_DASHBOARD_PNG_DIR="$(CURDIR)/docs/img" \
		$(UV) run --frozen pytest tests/node/test_monitoring.py -m node -k every_panel -s $(PYTEST_ARGS)
