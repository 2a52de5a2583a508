"""charts/humanizer: helm lint, helm template with defaults and toggles, security, labels, RBAC, schema.

Marked ``cluster``: it needs the helm binary that the cluster tier builds (tools/k8s/build.sh); it runs
through ``make chart-test`` (a prerequisite of ``make test-cluster``) and fails, never skips, without helm.
Validation against the real API server (server-side dry-run of the rendered objects) belongs to
tests/cluster; here objects are checked structurally and values against values.schema.json.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from humanizer.api.settings import ApiSettings
from humanizer.config import Settings
from humanizer.worker import heartbeat
from humanizer_operator.settings import OperatorSettings

from .conftest import CHART, NAMESPACE, RELEASE, Helm, Objects, by_kind, one, pod_specs
from .pods import container_files_and_env

pytestmark = pytest.mark.cluster

Render = Callable[..., Objects]
FULL = f"{RELEASE}-humanizer"
OUR_IMAGE = "humanizer:"

TOGGLES: dict[str, dict[str, Any]] = {
    "defaults": {},
    "monitoring": {"monitoring": {"serviceMonitor": {"enabled": True}, "podMonitor": {"enabled": True},
                                  "prometheusRule": {"enabled": True}, "dashboards": {"enabled": True}}},
    "external-redis": {"redis": {"enabled": False}, "externalRedis": {"url": "redis://:pw@redis.example:6379/0"}},
    "external-redis-secret": {"redis": {"enabled": False}, "externalRedis": {"existingSecret": "my-redis"}},
    "external-redis-ha": {"redis": {"enabled": False}, "externalRedis": {
        "username": "humanizer",
        "sentinel": {"hosts": ["sentinel-0.redis:26379", "sentinel-1.redis:26379", "sentinel-2.redis"],
                     "masterName": "prod", "db": 2, "passwordSecret": {"name": "redis-auth", "key": "primary"},
                     "sentinelPasswordSecret": {"name": "redis-auth", "key": "sentinel"}},
        "tls": {"enabled": True, "caConfigMap": "redis-ca", "caKey": "bundle.pem", "clientCertSecret": "redis-client"},
    }},
    "flower": {"flower": {"enabled": True}},
    "no-networkpolicy": {"networkPolicy": {"enabled": False}},
    "openai": {"provider": {"name": "openai", "openai": {"existingSecret": "openai", "model": "gpt-4.1-mini"}}},
    "cluster-wide": {"operator": {"watch": {"clusterWide": True}}},
    "prefork-ingress": {"worker": {"pool": "prefork", "concurrency": 4},
                        "api": {"ingress": {"enabled": True, "className": "nginx"}}},
    "no-operator": {"operator": {"enabled": False}},
    "no-persistence": {"redis": {"persistence": {"enabled": False}, "metrics": {"enabled": False}}},
    "fallback": {"provider": {"name": "openai", "openai": {"existingSecret": "openai"}, "fallback": {
        "targets": [
            {"name": "backup", "model": "gpt-4.1-nano", "apiKeySecret": {"name": "backup-key", "key": "api-key"},
             "rpm": 500, "priceIn": 0.1, "priceOut": 0.4},
            {"name": "local_vllm", "baseUrl": "http://vllm.llm.svc:8000/v1", "model": "llama", "timeoutSeconds": 20},
        ],
        "alsoOn": ["auth"], "retriesPerTarget": 2, "breaker": {"failures": 3, "cooldownSeconds": 10}}}},
}
# Flower behind Sentinel, with TLS, an ACL user and a key prefix of its own
TOGGLES["flower-ha"] = {**TOGGLES["external-redis-ha"], **TOGGLES["flower"], "config": {"keyPrefix": "blue"}}
APP_LABELS = ("name", "instance", "version", "component", "managed-by", "part-of")


def containers(spec: dict[str, Any]) -> list[dict[str, Any]]:
    return [*spec.get("initContainers", []), *spec["containers"]]


def env_of(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container.get("env", [])}


# ---- lint and kinds ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("toggle", ["defaults", "monitoring", "external-redis", "external-redis-ha", "flower",
                                    "flower-ha", "cluster-wide"])
def test_helm_lint(helm: Helm, toggle: str) -> None:
    args = ["lint", "--strict", str(CHART), "--namespace", NAMESPACE]
    for key, value in _flat(TOGGLES[toggle]).items():
        args += ["--set-json", f"{key}={json.dumps(value)}"]
    res = helm(*args)
    assert "0 chart(s) failed" in res.stdout


def _flat(values: dict[str, Any]) -> dict[str, Any]:
    from .conftest import flatten

    return flatten(values)


def test_default_kinds(render: Render) -> None:
    kinds = sorted(o["kind"] for o in render())
    assert kinds == sorted([
        "ClusterRole", "ClusterRole", "ClusterRoleBinding", "ConfigMap", "CustomResourceDefinition",
        "Deployment", "Deployment", "Deployment", "NetworkPolicy", "NetworkPolicy", "NetworkPolicy",
        "NetworkPolicy", "PodDisruptionBudget", "PodDisruptionBudget", "PodDisruptionBudget",
        "PodDisruptionBudget", "Role", "RoleBinding", "RoleBinding",
        "Secret", "Secret", "Service", "Service", "Service", "ServiceAccount", "StatefulSet",
    ])
    names = {(o["kind"], o["metadata"]["name"]) for o in render()}
    assert {("Deployment", f"{FULL}-api"), ("Deployment", f"{FULL}-worker"), ("Deployment", f"{FULL}-operator"),
            ("StatefulSet", f"{FULL}-redis"), ("Service", f"{FULL}-redis-headless"),
            ("Secret", f"{FULL}-redis"), ("Secret", f"{FULL}-api-tokens")} <= names


def test_objects_are_namespaced_in_the_release_namespace(render: Render) -> None:
    cluster_scoped = {"ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition"}
    for o in render(TOGGLES["monitoring"]):
        if o["kind"] in cluster_scoped:
            assert "namespace" not in o["metadata"], o["metadata"]["name"]
        else:
            assert o["metadata"]["namespace"] == NAMESPACE, f"{o['kind']}/{o['metadata']['name']}"


# ---- Pod Security "restricted" ----------------------------------------------------------------------------
@pytest.mark.parametrize("toggle", list(TOGGLES))
def test_every_pod_is_restricted(render: Render, toggle: str) -> None:
    specs = list(pod_specs(render(TOGGLES[toggle])))
    assert specs
    for where, spec in specs:
        psc = spec["securityContext"]
        assert psc["runAsNonRoot"] is True, where
        assert psc["seccompProfile"]["type"] == "RuntimeDefault", where
        expected_uid = 999 if where.startswith("StatefulSet/") else 10001
        assert psc["runAsUser"] == expected_uid, where
        assert not spec.get("hostNetwork") and not spec.get("hostPID") and not spec.get("hostIPC"), where
        assert all("hostPath" not in v for v in spec.get("volumes", [])), where
        tmp_volumes = {v["name"] for v in spec.get("volumes", []) if "emptyDir" in v}
        for c in containers(spec):
            sc = c["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False, f"{where}/{c['name']}"
            assert sc["readOnlyRootFilesystem"] is True, f"{where}/{c['name']}"
            assert sc["capabilities"]["drop"] == ["ALL"], f"{where}/{c['name']}"
            assert not sc.get("capabilities", {}).get("add"), f"{where}/{c['name']}"
            assert not sc.get("privileged"), f"{where}/{c['name']}"
            assert sc.get("runAsNonRoot", True) is True
            if c["name"] != "metrics":  # redis_exporter is a static binary that writes nothing
                tmp = [m for m in c.get("volumeMounts", []) if m["mountPath"] == "/tmp"]
                assert tmp and tmp[0]["name"] in tmp_volumes, f"{where}/{c['name']}: no emptyDir on /tmp"
            assert c["image"].count(":") == 1 and not c["image"].endswith(":latest"), c["image"]


def test_service_account_tokens_only_for_the_operator(render: Render) -> None:
    for where, spec in pod_specs(render(TOGGLES["flower"])):
        if "operator" in where:
            assert spec["automountServiceAccountToken"] is True
            assert spec["serviceAccountName"] == f"{FULL}-operator"
        else:
            assert spec["automountServiceAccountToken"] is False, where


# ---- labels and selectors ---------------------------------------------------------------------------------
@pytest.mark.parametrize("toggle", ["defaults", "monitoring", "flower"])
def test_labels_and_selectors(render: Render, toggle: str) -> None:
    objects = render(TOGGLES[toggle])
    pods: list[dict[str, str]] = []
    for o in objects:
        if o["kind"] == "CustomResourceDefinition":
            continue
        labels = o["metadata"]["labels"]
        for key in APP_LABELS:
            assert labels.get(f"app.kubernetes.io/{key}"), f"{o['kind']}/{o['metadata']['name']}: no {key} label"
        assert labels["app.kubernetes.io/instance"] == RELEASE
        assert labels["app.kubernetes.io/part-of"] == "humanizer"
        assert labels["app.kubernetes.io/managed-by"] == "Helm"
        if o["kind"] in ("Deployment", "StatefulSet"):
            selector = o["spec"]["selector"]["matchLabels"]
            assert set(selector) == {"app.kubernetes.io/name", "app.kubernetes.io/instance",
                                     "app.kubernetes.io/component"}, o["metadata"]["name"]
            template_labels = o["spec"]["template"]["metadata"]["labels"]
            assert selector.items() <= template_labels.items()
            assert template_labels["app.kubernetes.io/component"] == labels["app.kubernetes.io/component"]
            pods.append(template_labels)
    for o in by_kind(objects, "Service") + by_kind(objects, "PodDisruptionBudget"):
        selector = o["spec"]["selector"] if o["kind"] == "Service" else o["spec"]["selector"]["matchLabels"]
        assert set(selector) == {"app.kubernetes.io/name", "app.kubernetes.io/instance", "app.kubernetes.io/component"}
        assert sum(selector.items() <= p.items() for p in pods) == 1, f"{o['kind']}/{o['metadata']['name']}"


def test_components(render: Render) -> None:
    components = {o["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/component"]
                  for o in render(TOGGLES["flower"]) if o["kind"] in ("Deployment", "StatefulSet")}
    assert components == {"api", "worker", "operator", "redis", "flower"}


# ---- images ----------------------------------------------------------------------------------------------
def test_image_defaults_to_app_version(render: Render) -> None:
    app_version = yaml.safe_load((CHART / "Chart.yaml").read_text())["appVersion"]
    for where, spec in pod_specs(render()):
        for c in spec["containers"]:
            if c["name"] in ("api", "worker", "operator"):
                assert c["image"] == f"humanizer:{app_version}", where
                assert c["imagePullPolicy"] == "IfNotPresent"
    objects = render({"image": {"repository": "ghcr.io/x/humanizer", "tag": "1.2.3"}, "imagePullSecrets": ["reg"]})
    api = one(objects, "Deployment", f"{FULL}-api")["spec"]["template"]["spec"]
    assert api["containers"][0]["image"] == "ghcr.io/x/humanizer:1.2.3"
    assert api["imagePullSecrets"] == [{"name": "reg"}]


def images(objects: Objects) -> dict[str, str]:
    return {c["name"]: c["image"] for _, spec in pod_specs(objects) for c in containers(spec)}


DEFAULT_IMAGES = {"api": "humanizer:0.1.0", "worker": "humanizer:0.1.0", "operator": "humanizer:0.1.0",
                  "redis": "redis:7.4.2", "metrics": "oliver006/redis_exporter:v1.67.0", "flower": "mher/flower:2.0.1"}


def test_image_registry_applies_to_every_image(render: Render) -> None:
    assert images(render(TOGGLES["flower"])) == DEFAULT_IMAGES  # no registry: the images as before
    mirror = "mirror.example:5000/hub"
    objects = render({**TOGGLES["flower"], "global": {"imageRegistry": mirror}})
    assert images(objects) == {name: f"{mirror}/{image}" for name, image in DEFAULT_IMAGES.items()}
    # per image, and global.imageRegistry wins over it (as in Bitnami's charts)
    objects = render({"image": {"registry": "registry.example/team"}, "redis": {"image": {"registry": "r.example"}}})
    assert images(objects)["worker"] == "registry.example/team/humanizer:0.1.0"
    assert images(objects)["redis"] == "r.example/redis:7.4.2"
    assert images(objects)["metrics"] == DEFAULT_IMAGES["metrics"]
    objects = render({"global": {"imageRegistry": "g.example"}, "image": {"registry": "registry.example/team"}})
    assert images(objects)["api"] == "g.example/humanizer:0.1.0"


# ---- settings ----------------------------------------------------------------------------------------------
def settings_env_names() -> set[str]:
    names: set[str] = set()
    for field in Settings.model_fields.values():
        alias = field.validation_alias
        names.update(c for c in getattr(alias, "choices", []) if isinstance(c, str) and c.isupper())
    names.update(f"HUMANIZER_API_{n.upper()}" for n in ApiSettings.model_fields)
    return names


def operator_env_names() -> set[str]:
    return {c for field in OperatorSettings.model_fields.values()
            for c in getattr(field.validation_alias, "choices", []) if isinstance(c, str) and c.isupper()}


# Read by humanizer.metrics and humanizer.worker.heartbeat (os.environ), by Python/prometheus_client, or set
# for kopf/the operator.
KNOWN_EXTRA_ENV = {"HOME", "POD_NAMESPACE", "PROMETHEUS_MULTIPROC_DIR", "MONITORING_PROMETHEUS_PORT",
                   heartbeat.FILE_ENV, heartbeat.INTERVAL_ENV}


@pytest.mark.parametrize("toggle", ["defaults", "openai", "external-redis", "external-redis-ha", "prefork-ingress",
                                    "fallback"])
def test_env_names_are_settings(render: Render, toggle: str) -> None:
    known = settings_env_names()
    assert {"OPENAI_MODEL", "CELERY_WORKER_CONCURRENCY", "REDIS_HOST", "HUMANIZER_API_TOKENS_FILE"} <= known
    objects = render(TOGGLES[toggle])
    config = one(objects, "ConfigMap", f"{FULL}-config")["data"]
    assert set(config) <= known, f"ConfigMap keys that no setting reads: {set(config) - known}"
    for where, spec in pod_specs(objects):
        for c in spec["containers"]:
            if not c["image"].startswith(OUR_IMAGE):
                continue
            allowed = known | KNOWN_EXTRA_ENV | (operator_env_names() if "operator" in where else set())
            names = {n for n in env_of(c) if not n.startswith(FALLBACK_KEY_ENV)}  # named by the targets' JSON
            assert names <= allowed, f"{where}: unknown env {names - allowed}"
            assert c["envFrom"] == [{"configMapRef": {"name": f"{FULL}-config"}}]


def test_configmap_values(render: Render) -> None:
    config = one(render(TOGGLES["openai"]), "ConfigMap", f"{FULL}-config")["data"]
    assert config["HUMANIZER_PROVIDER"] == "openai"
    assert config["OPENAI_MODEL"] == "gpt-4.1-mini"
    assert config["CELERY_WORKER_CONCURRENCY"] == "8"
    assert config["HUMANIZER_WORKER_CALLS"] == "64" and config["HUMANIZER_BATCH_SIZE"] == "16"
    assert config["CELERY_WORKER_POOL"] == "threads"
    assert config["CELERY_TASK_TIME_LIMIT"] == "300"
    assert config["HUMANIZER_MAX_DOCUMENT_BYTES"] == "2000000"
    assert "OPENAI_BASE_URL" not in config
    # What the pods get validates as Settings.
    Settings.model_validate(config)


FALLBACK_KEY_ENV = "HUMANIZER_TARGET_KEY_"


def test_fallback_targets(render: Render) -> None:
    """provider.fallback renders HUMANIZER_FALLBACK_TARGETS that the settings accept, with each key by the
    name of a variable that every Humanizer pod gets from the Secret named in the values (never inline)."""
    objects = render(TOGGLES["fallback"])
    config = one(objects, "ConfigMap", f"{FULL}-config")["data"]
    settings = Settings.model_validate(config)
    assert [(t.name, t.model, t.api_key_env, t.base_url) for t in settings.fallback_targets] == [
        ("backup", "gpt-4.1-nano", "HUMANIZER_TARGET_KEY_BACKUP", None),
        ("local_vllm", "llama", None, "http://vllm.llm.svc:8000/v1"),
    ]
    backup = settings.fallback_targets[0]
    assert (backup.rpm, backup.price_in, backup.price_out, settings.fallback_targets[1].timeout) == (500, 0.1, 0.4, 20)
    assert (settings.fallback_also_on_kinds, settings.retries_per_target) == (("auth",), 2)
    assert (settings.breaker_failures, settings.breaker_cooldown_seconds) == (3, 10)
    assert "api-key" not in config["HUMANIZER_FALLBACK_TARGETS"] and "backup-key" not in json.dumps(config)
    for where, spec in pod_specs(objects):
        for c in spec["containers"]:
            if c["image"].startswith(OUR_IMAGE):
                assert env_of(c)["HUMANIZER_TARGET_KEY_BACKUP"]["valueFrom"]["secretKeyRef"] == {
                    "name": "backup-key", "key": "api-key"}, where
                assert not [n for n in env_of(c) if n.startswith(FALLBACK_KEY_ENV) and n.endswith("VLLM")], where
    # without targets: nothing about them in the ConfigMap
    config = one(render(), "ConfigMap", f"{FULL}-config")["data"]
    assert "HUMANIZER_FALLBACK_TARGETS" not in config and "HUMANIZER_FALLBACK_ALSO_ON" not in config
    assert Settings.model_validate(config).fallback_targets == []


def test_provider_key_from_secret(render: Render) -> None:
    objects = render({"provider": {"name": "openai", "openai": {"apiKey": "sk-test"}}})
    secret = one(objects, "Secret", f"{FULL}-provider")
    assert secret["data"]["openai-api-key"]
    worker = one(objects, "Deployment", f"{FULL}-worker")["spec"]["template"]["spec"]["containers"][0]
    assert env_of(worker)["OPENAI_API_KEY"]["valueFrom"]["secretKeyRef"] == {
        "name": f"{FULL}-provider", "key": "openai-api-key"}
    objects = render(TOGGLES["openai"])
    assert not [s for s in by_kind(objects, "Secret") if s["metadata"]["name"].endswith("-provider")]
    worker = one(objects, "Deployment", f"{FULL}-worker")["spec"]["template"]["spec"]["containers"][0]
    assert env_of(worker)["OPENAI_API_KEY"]["valueFrom"]["secretKeyRef"]["name"] == "openai"
    # offline: no key at all
    worker = one(render(), "Deployment", f"{FULL}-worker")["spec"]["template"]["spec"]["containers"][0]
    assert "OPENAI_API_KEY" not in env_of(worker)


# ---- Redis -----------------------------------------------------------------------------------------------
def test_redis_statefulset(render: Render) -> None:
    sts = one(render(), "StatefulSet", f"{FULL}-redis")
    assert sts["spec"]["serviceName"] == f"{FULL}-redis-headless"
    spec = sts["spec"]["template"]["spec"]
    redis = spec["containers"][0]
    assert redis["image"].startswith("redis:")
    args = redis["args"]
    pairs = dict(zip(args[::2], args[1::2], strict=False))
    assert pairs["--appendonly"] == "yes"
    assert pairs["--appendfsync"] == "everysec"
    assert pairs["--maxmemory-policy"] == "noeviction"
    assert pairs["--dir"] == "/data"
    assert pairs["--requirepass"] == "$(REDIS_PASSWORD)"
    assert env_of(redis)["REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": f"{FULL}-redis",
                                                                            "key": "redis-password"}
    assert spec["securityContext"]["fsGroup"] == 999
    assert sts["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"] == "8Gi"
    headless = one(render(), "Service", f"{FULL}-redis-headless")
    assert headless["spec"]["clusterIP"] == "None"
    # Clients reach it by host/port and the password from the same Secret.
    for name in ("api", "worker", "operator"):
        c = one(render(), "Deployment", f"{FULL}-{name}")["spec"]["template"]["spec"]["containers"][0]
        env = env_of(c)
        assert env["REDIS_HOST"]["value"] == f"{FULL}-redis"
        assert env["REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == f"{FULL}-redis"
        assert "REDIS_URL" not in env


def redis_args(objects: Objects) -> dict[str, str]:
    args = one(objects, "StatefulSet", f"{FULL}-redis")["spec"]["template"]["spec"]["containers"][0]["args"]
    return dict(zip(args[::2], args[1::2], strict=False))


@pytest.mark.parametrize(("redis", "maxmemory"), [
    ({}, str(int(0.8 * 1024**3))),  # default: 80% of the 1Gi limit, in bytes
    ({"resources": {"limits": {"memory": "512Mi"}}}, str(int(0.8 * 512 * 1024**2))),
    ({"resources": {"limits": {"memory": "2G"}}, "maxmemoryPercent": 75}, "1500000000"),
    ({"resources": {"limits": {"memory": 1024**3}}}, str(int(0.8 * 1024**3))),  # a plain number of bytes
    ({"maxmemory": "auto", "resources": {"limits": {"memory": "1.5Gi"}}}, str(int(0.8 * 1.5 * 1024**3))),
    ({"maxmemory": "300mb"}, "300mb"),  # explicit wins
    ({"maxmemory": "0"}, "0"),
    ({"resources": {"limits": {"memory": None}}}, "0"),  # no limit to derive it from
])
def test_redis_maxmemory_follows_the_memory_limit(render: Render, redis: dict[str, Any], maxmemory: str) -> None:
    assert redis_args(render({"redis": redis}))["--maxmemory"] == maxmemory


def test_redis_maxmemory_of_an_unreadable_limit_fails(helm: Helm) -> None:
    res = helm.template({"redis": {"resources": {"limits": {"memory": "lots"}}}}, check=False)
    assert res.returncode != 0 and "cannot read the memory quantity" in res.stderr


def test_redis_existing_secret(render: Render) -> None:
    objects = render({"redis": {"auth": {"existingSecret": "mine", "existingSecretKey": "pw"}}})
    assert not [s for s in by_kind(objects, "Secret") if s["metadata"]["name"] == f"{FULL}-redis"]
    c = one(objects, "Deployment", f"{FULL}-worker")["spec"]["template"]["spec"]["containers"][0]
    assert env_of(c)["REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": "mine", "key": "pw"}


def pod_annotations(objects: Objects) -> dict[str, dict[str, str]]:
    return {o["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/component"]:
            o["spec"]["template"]["metadata"].get("annotations") or {}
            for o in objects if o["kind"] in ("Deployment", "StatefulSet")}


def test_redis_password_given(render: Render) -> None:
    import base64

    objects = render({"redis": {"auth": {"password": "s3cret/with:odd@chars"}}})
    data = one(objects, "Secret", f"{FULL}-redis")["data"]
    assert base64.b64decode(data["redis-password"]).decode() == "s3cret/with:odd@chars"
    # existingSecret wins: no Secret of ours
    objects = render({"redis": {"auth": {"password": "x" * 12, "existingSecret": "mine"}}})
    assert not [s for s in by_kind(objects, "Secret") if s["metadata"]["name"] == f"{FULL}-redis"]


def test_pods_roll_when_a_chart_managed_secret_changes(helm: Helm) -> None:
    def annotations(values: dict[str, Any]) -> dict[str, dict[str, str]]:
        out = helm.template(values).stdout  # not the cached render: generated values differ per render
        return pod_annotations([d for d in yaml.safe_load_all(out) if d])

    given = {"redis": {"auth": {"password": "first-password"}}, "api": {"auth": {"tokens": ["t" * 24]}},
             "flower": {"enabled": True, "auth": {"password": "flower-pw"}}}
    before = annotations(given)
    assert set(before) == {"api", "worker", "operator", "redis", "flower"}
    assert all("checksum/secrets" in a for a in before.values()), before
    assert annotations(given) == before  # explicit values: the same render every time (GitOps-stable)
    new_password = annotations({**given, "redis": {"auth": {"password": "second-password"}}})
    for component in ("api", "worker", "operator", "redis", "flower"):  # every user of the password rolls
        assert new_password[component]["checksum/secrets"] != before[component]["checksum/secrets"], component
    new_token = annotations({**given, "api": {"auth": {"tokens": ["u" * 24]}}})
    assert {c for c in before if new_token[c] != before[c]} == {"api"}
    # generated values: helm template cannot read them back, so each render differs (docs/chart.md, Secrets)
    assert annotations({})["worker"]["checksum/secrets"] != annotations({})["worker"]["checksum/secrets"]


@pytest.mark.parametrize(("toggle", "secret", "key"), [
    ("external-redis", f"{FULL}-external-redis", "redis-url"),
    ("external-redis-secret", "my-redis", "redis-url"),
])
def test_external_redis(render: Render, toggle: str, secret: str, key: str) -> None:
    objects = render(TOGGLES[toggle])
    assert not by_kind(objects, "StatefulSet")
    assert all("redis" not in o["metadata"]["name"] or o["kind"] == "Secret" for o in objects
               if o["kind"] in ("Service", "NetworkPolicy"))
    for name in ("api", "worker", "operator"):
        c = one(objects, "Deployment", f"{FULL}-{name}")["spec"]["template"]["spec"]["containers"][0]
        env = env_of(c)
        assert env["REDIS_URL"]["valueFrom"]["secretKeyRef"] == {"name": secret, "key": key}
        assert "REDIS_HOST" not in env and "REDIS_PASSWORD" not in env
    created = {s["metadata"]["name"] for s in by_kind(objects, "Secret")}
    assert (secret in created) == (toggle == "external-redis")


def test_external_redis_sentinel_and_tls(render: Render) -> None:
    """externalRedis.sentinel/tls/username reach every Redis client (API, workers, operator) as settings that
    validate and point Celery at the Sentinels over TLS; the CA and the client certificate are mounted
    read-only where the settings look for them."""
    from humanizer.broker import celery_config
    from humanizer.redis_client import celery_sentinel_options

    objects = render(TOGGLES["external-redis-ha"])
    config = one(objects, "ConfigMap", f"{FULL}-config")["data"]
    assert config["REDIS_SENTINELS"] == "sentinel-0.redis:26379,sentinel-1.redis:26379,sentinel-2.redis"
    assert (config["REDIS_SENTINEL_MASTER"], config["REDIS_DB"], config["REDIS_USERNAME"]) == ("prod", "2", "humanizer")
    assert config["REDIS_TLS"] == "true" and config["REDIS_TLS_CHECK_HOSTNAME"] == "true"
    assert config["REDIS_TLS_CA_FILE"] == "/etc/humanizer/redis-tls/ca/bundle.pem"
    assert not [s for s in by_kind(objects, "Secret") if "external-redis" in s["metadata"]["name"]]
    for name in ("api", "worker", "operator"):
        spec = one(objects, "Deployment", f"{FULL}-{name}")["spec"]["template"]["spec"]
        env = env_of(spec["containers"][0])
        assert "REDIS_URL" not in env and "REDIS_HOST" not in env
        assert env["REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": "redis-auth", "key": "primary"}
        assert env["REDIS_SENTINEL_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": "redis-auth", "key": "sentinel"}
        mounts = {m["name"]: m for m in spec["containers"][0]["volumeMounts"]}
        volumes = {v["name"]: v for v in spec["volumes"]}
        assert mounts["redis-tls-ca"]["readOnly"] and mounts["redis-tls-client"]["readOnly"]
        ca = volumes["redis-tls-ca"]["configMap"]
        assert ca["name"] == "redis-ca" and ca["items"] == [{"key": "bundle.pem", "path": "bundle.pem"}]
        assert mounts["redis-tls-ca"]["mountPath"] + "/bundle.pem" == config["REDIS_TLS_CA_FILE"]
        client = volumes["redis-tls-client"]["secret"]
        assert client["secretName"] == "redis-client"
        assert {i["path"] for i in client["items"]} == {"tls.crt", "tls.key"}
        assert config["REDIS_TLS_CERT_FILE"] == mounts["redis-tls-client"]["mountPath"] + "/tls.crt"
        assert config["REDIS_TLS_KEY_FILE"] == mounts["redis-tls-client"]["mountPath"] + "/tls.key"
    # what the pods get: settings that go through the Sentinels, with TLS, as the ACL user
    s = Settings.model_validate({**config, "REDIS_PASSWORD": "pw", "REDIS_SENTINEL_PASSWORD": "spw"})
    assert s.sentinel_mode and s.redis_tls_enabled
    assert s.sentinel_hosts == [("sentinel-0.redis", 26379), ("sentinel-1.redis", 26379), ("sentinel-2.redis", 26379)]
    conf = celery_config(s)
    assert str(conf["broker_url"]).startswith("sentinel://humanizer:pw@sentinel-0.redis:26379/2;")
    assert conf["broker_use_ssl"]["ssl_ca_certs"] == config["REDIS_TLS_CA_FILE"]  # type: ignore[index]
    assert celery_sentinel_options(s)["master_name"] == "prod"
    # a CA from a Secret instead; TLS without a CA bundle (the system's CAs) mounts nothing
    secret_ca = render({"redis": {"enabled": False}, "externalRedis": {
        "url": "rediss://r.example:6380/0", "tls": {"enabled": True, "caSecret": "ca-secret"}}})
    spec = one(secret_ca, "Deployment", f"{FULL}-worker")["spec"]["template"]["spec"]
    assert {v["name"]: v for v in spec["volumes"]}["redis-tls-ca"]["secret"]["secretName"] == "ca-secret"
    assert "redis-tls-client" not in {v["name"] for v in spec["volumes"]}
    no_ca = render({"redis": {"enabled": False},
                    "externalRedis": {"url": "rediss://r:6380/0", "tls": {"enabled": True}}})
    spec = one(no_ca, "Deployment", f"{FULL}-api")["spec"]["template"]["spec"]
    assert not [v for v in spec["volumes"] if v["name"].startswith("redis-tls")]
    assert "REDIS_TLS_CA_FILE" not in one(no_ca, "ConfigMap", f"{FULL}-config")["data"]
    # --reuse-values from a release without these values: as before, a URL
    old = render({**TOGGLES["external-redis"], "externalRedis": {
        "url": "redis://:pw@redis.example:6379/0", "sentinel": None, "tls": None, "username": None}})
    assert "REDIS_SENTINELS" not in one(old, "ConfigMap", f"{FULL}-config")["data"]
    assert "<nil>" not in json.dumps(old)


# ---- API ------------------------------------------------------------------------------------------------
def test_api_deployment(render: Render) -> None:
    objects = render()
    dep = one(objects, "Deployment", f"{FULL}-api")
    spec = dep["spec"]["template"]["spec"]
    c = spec["containers"][0]
    assert c["command"] == ["humanizer", "api"]
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    env = env_of(c)
    assert env["HUMANIZER_API_HOST"]["value"] == "0.0.0.0"
    tokens_file = env["HUMANIZER_API_TOKENS_FILE"]["value"]
    mount = next(m for m in c["volumeMounts"] if tokens_file.startswith(m["mountPath"] + "/"))
    volume = next(v for v in spec["volumes"] if v["name"] == mount["name"])
    assert volume["secret"]["secretName"] == f"{FULL}-api-tokens"
    assert volume["secret"]["items"] == [{"key": "tokens", "path": tokens_file.rsplit("/", 1)[1]}]
    secret = one(objects, "Secret", f"{FULL}-api-tokens")
    assert len(secret["data"]["tokens"]) > 40
    svc = one(objects, "Service", f"{FULL}-api")
    assert svc["spec"]["ports"] == [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}]
    assert not by_kind(objects, "Ingress")


def test_api_tokens_given_or_existing(render: Render) -> None:
    objects = render({"api": {"auth": {"tokens": ["a" * 20, "b" * 20]}}})
    import base64

    data = one(objects, "Secret", f"{FULL}-api-tokens")["data"]["tokens"]
    assert base64.b64decode(data).decode() == "a" * 20 + "\n" + "b" * 20
    objects = render({"api": {"auth": {"existingSecret": "tok", "existingSecretKey": "list"}}})
    assert not [s for s in by_kind(objects, "Secret") if "api-tokens" in s["metadata"]["name"]]
    spec = one(objects, "Deployment", f"{FULL}-api")["spec"]["template"]["spec"]
    volume = next(v for v in spec["volumes"] if "secret" in v)
    assert volume["secret"]["secretName"] == "tok" and volume["secret"]["items"][0]["key"] == "list"


def test_api_ingress(render: Render) -> None:
    ingress = by_kind(render(TOGGLES["prefork-ingress"]), "Ingress")
    assert len(ingress) == 1
    spec = ingress[0]["spec"]
    assert spec["ingressClassName"] == "nginx"
    backend = spec["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend == {"name": f"{FULL}-api", "port": {"name": "http"}}


# ---- workers -------------------------------------------------------------------------------------------
def test_worker_deployment(render: Render) -> None:
    dep = one(render(), "Deployment", f"{FULL}-worker")
    spec = dep["spec"]["template"]["spec"]
    c = spec["containers"][0]
    assert c["command"] == ["humanizer", "worker"]
    assert c["args"] == ["--queues=control,humanize"]  # control first: merges never wait behind chunks
    assert spec["terminationGracePeriodSeconds"] == 330
    assert c["ports"] == [{"name": "metrics", "containerPort": 9808}]
    assert env_of(c)["MONITORING_PROMETHEUS_PORT"]["value"] == "9808"
    assert "PROMETHEUS_MULTIPROC_DIR" not in env_of(c)
    # The operator's autoscaler owns the replicas.
    assert "replicas" not in dep["spec"]
    dep = one(render(TOGGLES["no-operator"]), "Deployment", f"{FULL}-worker")
    assert dep["spec"]["replicas"] == 2


def test_worker_probes_check_the_heartbeat(render: Render, tmp_path: Path) -> None:
    c = one(render(), "Deployment", f"{FULL}-worker")["spec"]["template"]["spec"]["containers"][0]
    path = env_of(c)[heartbeat.FILE_ENV]["value"]
    assert path.startswith("/tmp/")  # the emptyDir: the root filesystem is read-only
    assert env_of(c)[heartbeat.INTERVAL_ENV]["value"] == "10"
    command = ["python", "-m", "humanizer.worker.heartbeat", path, "60"]
    for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert c[kind]["exec"]["command"] == command, kind
    assert c["startupProbe"]["periodSeconds"] * c["startupProbe"]["failureThreshold"] == 300
    assert c["livenessProbe"]["periodSeconds"] == 20 and c["livenessProbe"]["failureThreshold"] == 3
    # the command works as written against the module (a file of ours in place of the pod's)
    beat = tmp_path / "hb"
    beat.touch()
    run = [sys.executable, *command[1:3], str(beat), command[4]]
    assert subprocess.run(run, capture_output=True, timeout=30).returncode == 0
    old = time.time() - 61
    os.utime(beat, (old, old))
    assert subprocess.run(run, capture_output=True, timeout=30).returncode == 1
    # solo: a task runs on the consumer loop, so the heartbeat may be as old as the hard time limit + 30
    c = one(render({"worker": {"pool": "solo"}}), "Deployment", f"{FULL}-worker")["spec"]["template"]["spec"][
        "containers"][0]
    assert c["livenessProbe"]["exec"]["command"][-1] == "330"


def test_probes_of_operator_flower_and_exporter(render: Render) -> None:
    objects = render(TOGGLES["flower"])
    c = one(objects, "Deployment", f"{FULL}-operator")["spec"]["template"]["spec"]["containers"][0]
    assert c["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    flower = one(objects, "Deployment", f"{FULL}-flower")["spec"]["template"]["spec"]["containers"][0]
    assert flower["livenessProbe"]["tcpSocket"] == {"port": "http"}
    sts = one(objects, "StatefulSet", f"{FULL}-redis")["spec"]["template"]["spec"]
    exporter = next(c for c in sts["containers"] if c["name"] == "metrics")
    assert exporter["livenessProbe"]["httpGet"] == {"path": "/health", "port": "metrics"}
    for where, spec in pod_specs(objects):
        for c in spec["containers"]:
            assert c.get("livenessProbe"), f"{where}/{c['name']}: no liveness probe"
            if c["name"] != "metrics":
                assert c.get("readinessProbe"), f"{where}/{c['name']}: no readiness probe"


def test_worker_grace_follows_the_time_limit(render: Render, helm: Helm) -> None:
    values = {"config": {"celery": {"taskTimeLimit": 600, "taskSoftTimeLimit": 540}}}
    spec = one(render(values), "Deployment", f"{FULL}-worker")["spec"]["template"]["spec"]
    assert spec["terminationGracePeriodSeconds"] == 630
    spec = one(render({"worker": {"terminationGracePeriodSeconds": 900}}), "Deployment",
               f"{FULL}-worker")["spec"]["template"]["spec"]
    assert spec["terminationGracePeriodSeconds"] == 900
    res = helm.template({"worker": {"terminationGracePeriodSeconds": 60}}, check=False)
    assert res.returncode != 0 and "terminationGracePeriodSeconds" in res.stderr


def test_worker_prefork_gets_a_multiprocess_dir(render: Render) -> None:
    spec = one(render(TOGGLES["prefork-ingress"]), "Deployment", f"{FULL}-worker")["spec"]["template"]["spec"]
    c = spec["containers"][0]
    path = env_of(c)["PROMETHEUS_MULTIPROC_DIR"]["value"]
    mount = next(m for m in c["volumeMounts"] if m["mountPath"] == path)
    assert next(v for v in spec["volumes"] if v["name"] == mount["name"])["emptyDir"] == {}


# ---- operator -----------------------------------------------------------------------------------------
def test_operator_deployment(render: Render) -> None:
    c = one(render(), "Deployment", f"{FULL}-operator")["spec"]["template"]["spec"]["containers"][0]
    assert c["command"][:2] == ["kopf", "run"] or c["command"] == ["humanizer-operator"]
    assert "--liveness=http://0.0.0.0:8080/healthz" in c["args"]
    assert f"--namespace={NAMESPACE}" in c["args"] and "--standalone" in c["args"]
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    env = env_of(c)
    assert env["HUMANIZER_WORKER_DEPLOYMENT"]["value"] == f"{FULL}-worker"
    assert {k: env[k]["value"] for k in env if k.startswith("HUMANIZER_AUTOSCALE_")} == {
        "HUMANIZER_AUTOSCALE_ENABLED": "true",
        "HUMANIZER_AUTOSCALE_MIN_REPLICAS": "1",
        "HUMANIZER_AUTOSCALE_MAX_REPLICAS": "10",
        "HUMANIZER_AUTOSCALE_TARGET_PER_WORKER": "64",
        "HUMANIZER_AUTOSCALE_SCALE_DOWN_STABILIZATION_SECONDS": "300",
        "HUMANIZER_AUTOSCALE_SCALE_TO_ZERO": "false",
        "HUMANIZER_AUTOSCALE_INTERVAL_SECONDS": "1",
        "HUMANIZER_AUTOSCALE_QUEUES": "control,humanize",
    }
    c = one(render(TOGGLES["cluster-wide"]), "Deployment", f"{FULL}-operator")["spec"]["template"]["spec"][
        "containers"][0]
    assert "--all-namespaces" in c["args"] and "--standalone" in c["args"]
    assert not [a for a in c["args"] if a.startswith(("--namespace", "--peering"))]


def rules_of(objects: Objects) -> dict[str, list[dict[str, Any]]]:
    return {f"{o['kind']}/{o['metadata']['name']}": o["rules"] for o in objects if o["kind"] in ("Role", "ClusterRole")}


def grants(rules: list[dict[str, Any]], group: str, resource: str) -> set[str]:
    return {v for r in rules if group in r["apiGroups"] and resource in r["resources"] for v in r["verbs"]}


def test_operator_rbac_namespaced(render: Render) -> None:
    objects = render({"operator": {"watch": {"namespaces": ["team-a"]}}})
    rules = rules_of(objects)
    # exactly what the operator calls: kopf (list/watch, patch of objects and of /status, Events) and
    # humanizer_operator.k8s (reads, owned ConfigMaps created or replaced, deletes, the worker scale)
    jobs = rules[f"ClusterRole/{FULL}-operator-jobs"]
    assert grants(jobs, "humanizer.dev", "humanizejobs") == {"get", "list", "watch", "patch", "delete"}
    assert grants(jobs, "humanizer.dev", "humanizejobs/status") == {"patch"}
    assert grants(jobs, "", "events") == {"create"}
    assert not grants(jobs, "events.k8s.io", "events")
    assert not [r for r in jobs if "kopf.dev" in r["apiGroups"]]
    workers = rules[f"Role/{FULL}-operator-workers"]
    scale = [r for r in workers if "deployments/scale" in r["resources"]]
    assert scale[0]["resourceNames"] == [f"{FULL}-worker"] and set(scale[0]["verbs"]) == {"patch"}
    assert grants(workers, "apps", "deployments") == {"get"}
    # pod-deletion-cost on the worker pods before a scale-down (idle pods go first), namespaced
    assert grants(workers, "", "pods") == {"list", "patch"}
    assert grants(jobs, "humanizer.dev", "humanizejobs/finalizers") == {"update"}
    assert grants(jobs, "", "configmaps") == {"get", "create", "update"}
    cluster = rules[f"ClusterRole/{FULL}-operator-cluster"]
    assert grants(cluster, "apiextensions.k8s.io", "customresourcedefinitions") == {"list", "watch"}
    assert grants(cluster, "", "namespaces") == {"list", "watch"}  # kopf lists namespaces at start-up
    # Bound per watched namespace, never cluster-wide.
    bindings = {(b["metadata"]["namespace"], b["roleRef"]["name"]) for b in by_kind(objects, "RoleBinding")}
    assert bindings == {(NAMESPACE, f"{FULL}-operator-jobs"), ("team-a", f"{FULL}-operator-jobs"),
                        (NAMESPACE, f"{FULL}-operator-workers")}
    assert [b["roleRef"]["name"] for b in by_kind(objects, "ClusterRoleBinding")] == [f"{FULL}-operator-cluster"]
    for b in by_kind(objects, "RoleBinding") + by_kind(objects, "ClusterRoleBinding"):
        assert b["subjects"] == [{"kind": "ServiceAccount", "name": f"{FULL}-operator", "namespace": NAMESPACE}]
    # Nothing anywhere grants wildcards or secrets; pods only the worker Role (list + patch).
    for name, rs in rules.items():
        for r in rs:
            assert "*" not in r["verbs"] and "*" not in r["resources"] and "*" not in r["apiGroups"], name
            assert "secrets" not in r["resources"], name
            assert "pods" not in r["resources"] or name == f"Role/{FULL}-operator-workers", name


def test_operator_rbac_cluster_wide(render: Render) -> None:
    objects = render(TOGGLES["cluster-wide"])
    rules = rules_of(objects)
    cluster = rules[f"ClusterRole/{FULL}-operator-cluster"]
    assert grants(cluster, "", "namespaces") == {"list", "watch"}
    assert not [r for r in cluster if "kopf.dev" in r["apiGroups"]]  # --standalone: no peering objects
    bound = {b["roleRef"]["name"] for b in by_kind(objects, "ClusterRoleBinding")}
    assert bound == {f"{FULL}-operator-jobs", f"{FULL}-operator-cluster"}
    assert {b["roleRef"]["name"] for b in by_kind(objects, "RoleBinding")} == {f"{FULL}-operator-workers"}


def test_no_operator(render: Render) -> None:
    objects = render(TOGGLES["no-operator"])
    assert not [o for o in objects if "operator" in o["metadata"]["name"]]


# ---- CRD ----------------------------------------------------------------------------------------------
def test_crd_is_installed_from_crds_dir(render: Render, helm: Helm) -> None:
    crd = one(render(), "CustomResourceDefinition", "humanizejobs.humanizer.dev")
    assert crd["spec"]["group"] == "humanizer.dev"
    assert crd["spec"]["names"]["kind"] == "HumanizeJob"
    assert crd["spec"]["names"]["plural"] == "humanizejobs"
    assert crd["spec"]["scope"] == "Namespaced"
    version = next(v for v in crd["spec"]["versions"] if v["name"] == "v1alpha1")
    assert version["served"] and version["storage"] and "status" in version["subresources"]
    plain = [d for d in yaml.safe_load_all(helm.template().stdout) if d]
    assert not by_kind(plain, "CustomResourceDefinition"), "the CRD comes from crds/, not templates/"


# ---- Cluster Autoscaler ---------------------------------------------------------------------------------
SAFE_TO_EVICT = "cluster-autoscaler.kubernetes.io/safe-to-evict"


@pytest.mark.parametrize("toggle", ["flower", "no-persistence"])
def test_safe_to_evict_where_eviction_loses_nothing(render: Render, toggle: str, tmp_path: Path) -> None:
    """Every pod mounts an emptyDir (/tmp), which Cluster Autoscaler will not evict without the annotation."""
    objects = render(TOGGLES[toggle])
    for o in objects:
        if o["kind"] not in ("Deployment", "StatefulSet"):
            continue
        component = o["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/component"]
        annotations = o["spec"]["template"]["metadata"].get("annotations") or {}
        if component == "redis":  # its data: never marked evictable, with or without persistence
            assert SAFE_TO_EVICT not in annotations
        else:  # workers (warm shutdown + acks_late), API, operator, Flower
            assert annotations.get(SAFE_TO_EVICT) == "true", component
    # podAnnotations win over the chart's, without a duplicate key
    values = tmp_path / "values.yaml"  # a file: --set would split the annotation's dots
    values.write_text(yaml.safe_dump({"worker": {"podAnnotations": {SAFE_TO_EVICT: "false", "team": "text"}}}))
    objects = render(None, "-f", str(values))
    annotations = one(objects, "Deployment", f"{FULL}-worker")["spec"]["template"]["metadata"]["annotations"]
    assert annotations[SAFE_TO_EVICT] == "false" and annotations["team"] == "text"
    assert "checksum/config" in annotations


# ---- disruption budgets and network policies ---------------------------------------------------------
def test_pdbs(render: Render) -> None:
    pdbs = {p["metadata"]["name"]: p["spec"] for p in by_kind(render(), "PodDisruptionBudget")}
    assert set(pdbs) == {f"{FULL}-api", f"{FULL}-worker", f"{FULL}-redis", f"{FULL}-operator"}
    # maxUnavailable 1 everywhere: a single Redis or operator may be moved by a drain, never blocked forever
    assert all(p["maxUnavailable"] == 1 for p in pdbs.values())
    off = {"redis": {"pdb": {"enabled": False}}, "operator": {"pdb": {"enabled": False}}}
    assert {p["metadata"]["name"] for p in by_kind(render(off), "PodDisruptionBudget")} == {
        f"{FULL}-api", f"{FULL}-worker"}
    assert not [p for p in by_kind(render(TOGGLES["external-redis"]), "PodDisruptionBudget")
                if p["metadata"]["name"].endswith("-redis")]


def test_network_policies(render: Render) -> None:
    objects = render()
    policies = {p["metadata"]["name"]: p["spec"] for p in by_kind(objects, "NetworkPolicy")}
    assert set(policies) == {f"{FULL}-{c}" for c in ("redis", "api", "worker", "operator")}
    redis = policies[f"{FULL}-redis"]
    assert redis["policyTypes"] == ["Ingress"]
    peer = redis["ingress"][0]["from"][0]["podSelector"]
    assert peer["matchLabels"] == {"app.kubernetes.io/name": "humanizer", "app.kubernetes.io/instance": RELEASE}
    assert peer["matchExpressions"] == [{"key": "app.kubernetes.io/component", "operator": "In",
                                         "values": ["api", "worker", "operator"]}]
    assert redis["ingress"][0]["ports"] == [{"port": 6379, "protocol": "TCP"}]
    # metrics only from the monitoring namespace
    assert redis["ingress"][1]["from"][0]["namespaceSelector"]["matchLabels"] == {
        "kubernetes.io/metadata.name": "monitoring"}
    worker = policies[f"{FULL}-worker"]
    assert worker["ingress"] == [{"from": [{"namespaceSelector": {"matchLabels": {
        "kubernetes.io/metadata.name": "monitoring"}}}], "ports": [{"port": 9808, "protocol": "TCP"}]}]
    api = policies[f"{FULL}-api"]
    assert api["ingress"] == [{"ports": [{"port": 8000, "protocol": "TCP"}]}]  # open on its port
    flower_values = render(TOGGLES["flower"])
    redis = one(flower_values, "NetworkPolicy", f"{FULL}-redis")["spec"]
    assert "flower" in redis["ingress"][0]["from"][0]["podSelector"]["matchExpressions"][0]["values"]
    assert not by_kind(render(TOGGLES["no-networkpolicy"]), "NetworkPolicy")


def test_metrics_scrapers_are_a_value(render: Render) -> None:
    peers = [{"podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}}},
             {"namespaceSelector": {"matchLabels": {"team": "observability"}}}]
    objects = render({"networkPolicy": {"metricsFrom": peers,
                                        "apiIngressFrom": [{"podSelector": {"matchLabels": {"role": "client"}}}]}})
    policies = {p["metadata"]["name"]: p["spec"] for p in by_kind(objects, "NetworkPolicy")}
    for component, port in (("worker", 9808), ("operator", 9808)):
        assert policies[f"{FULL}-{component}"]["ingress"] == [
            {"from": peers, "ports": [{"port": port, "protocol": "TCP"}]}], component
    assert policies[f"{FULL}-redis"]["ingress"][1] == {"from": peers, "ports": [{"port": 9121, "protocol": "TCP"}]}
    assert policies[f"{FULL}-api"]["ingress"][0]["from"] == [{"podSelector": {"matchLabels": {"role": "client"}}},
                                                             *peers]
    assert "monitoring" not in json.dumps(policies)  # the list replaced the default, nothing merged into it
    # empty: no one scrapes (an empty `from` would admit everyone)
    policies = {p["metadata"]["name"]: p["spec"] for p in by_kind(render({"networkPolicy": {"metricsFrom": []}}),
                                                                   "NetworkPolicy")}
    assert policies[f"{FULL}-worker"]["ingress"] == [] and policies[f"{FULL}-operator"]["ingress"] == []
    assert [r["ports"][0]["port"] for r in policies[f"{FULL}-redis"]["ingress"]] == [6379]


# ---- Flower ----------------------------------------------------------------------------------------------
def test_flower(render: Render) -> None:
    assert not [o for o in render() if "flower" in o["metadata"]["name"]]
    objects = render(TOGGLES["flower"])
    dep = one(objects, "Deployment", f"{FULL}-flower")
    spec = dep["spec"]["template"]["spec"]
    c = spec["containers"][0]
    env = env_of(c)
    assert env["FLOWER_BASIC_AUTH"]["valueFrom"]["secretKeyRef"] == {"name": f"{FULL}-flower", "key": "basic-auth"}
    assert "CELERY_BROKER_URL" not in env and "--broker" not in " ".join(c["command"])  # no password in argv
    # the upstream image runs the chart's Celery app: files/humanizer_flower.py, mounted on PYTHONPATH
    assert c["command"] == ["celery", "-A", "humanizer_flower", "flower", "--port=5555"]
    assert c["envFrom"] == [{"configMapRef": {"name": f"{FULL}-config"}}]
    mount = next(m for m in c["volumeMounts"] if m["mountPath"] == env["PYTHONPATH"]["value"])
    assert mount["readOnly"]
    volume = next(v for v in spec["volumes"] if v["name"] == mount["name"])
    app = one(objects, "ConfigMap", volume["configMap"]["name"])["data"]
    assert app == {"humanizer_flower.py": FLOWER_APP.read_text().rstrip("\n")}
    assert "checksum/config" in dep["spec"]["template"]["metadata"]["annotations"]
    assert one(objects, "Secret", f"{FULL}-flower")["data"]["basic-auth"]
    assert one(objects, "Service", f"{FULL}-flower")["spec"]["ports"][0]["port"] == 5555


FLOWER_APP = CHART / "files" / "humanizer_flower.py"
# what `celery -A humanizer_flower` loads, printed: the broker settings Flower connects with
FLOWER_CONF = (
    "import json\nfrom celery.app.utils import find_app\napp = find_app('humanizer_flower')\n"
    "c = app.conf\nprint(json.dumps({'url': c.broker_url, 'options': c.broker_transport_options, "
    "'ssl': c.broker_use_ssl}))"
)


def flower_pod(objects: Objects, given: dict[tuple[str, str], str], root: Path) -> dict[str, str]:
    """Flower's container laid out under root (its volumes) and its environment, as the kubelet gives them."""
    spec = one(objects, "Deployment", f"{FULL}-flower")["spec"]["template"]["spec"]
    return container_files_and_env(objects, spec, spec["containers"][0], given, root)


def flower_conf(objects: Objects, given: dict[tuple[str, str], str], root: Path) -> dict[str, Any]:
    env = flower_pod(objects, given, root)
    res = subprocess.run([sys.executable, "-c", FLOWER_CONF], capture_output=True, text=True, timeout=60, cwd=root,
                         env={"PATH": os.environ["PATH"], **env})
    assert res.returncode == 0, res.stderr[-3000:]
    return json.loads(res.stdout)  # type: ignore[no-any-return]


def test_flower_broker_url_escapes_the_password(render: Render, tmp_path: Path) -> None:
    """The bundled Redis: the password from its Secret, percent-encoded into the URL, never in argv or a ConfigMap."""
    from kombu.utils.url import url_to_parts

    password = "p@ss/w:rd#%?&=+x"  # (the schema refuses spaces)
    objects = render({**TOGGLES["flower"], "redis": {"auth": {"password": password}}})
    conf = flower_conf(objects, {}, tmp_path)
    parts = url_to_parts(conf["url"])
    assert (parts.password, parts.hostname, parts.port, parts.path) == (password, f"{FULL}-redis", 6379, "0")
    assert conf["ssl"] is False and "global_keyprefix" not in conf["options"]  # the default prefix: none
    assert conf["options"]["visibility_timeout"] == 3600
    assert password not in json.dumps([o for o in objects if o["kind"] == "ConfigMap"])
    # external Redis by URL: the URL from its Secret as stored (percent-encoded by whoever wrote it)
    conf = flower_conf(render({**TOGGLES["flower"], **TOGGLES["external-redis"]}), {}, tmp_path / "url")
    assert conf["url"] == "redis://:pw@redis.example:6379/0"


def _same_redis_files(objects: Objects, component: str) -> tuple[list[Any], list[Any]]:
    spec = one(objects, "Deployment", f"{FULL}-{component}")["spec"]["template"]["spec"]
    return ([v for v in spec["volumes"] if v["name"].startswith("redis-tls")],
            [m for m in spec["containers"][0]["volumeMounts"] if m["name"].startswith("redis-tls")])


def test_flower_behind_sentinel_with_tls(render: Render, tmp_path: Path) -> None:
    """externalRedis.sentinel + tls + username + keyPrefix: Flower gets the workers' Redis variables, Secrets,
    CA bundle and client certificate, and its app connects through the Sentinels as the workers' Celery does."""
    from humanizer.broker import celery_config

    objects = render(TOGGLES["flower-ha"])
    flower = one(objects, "Deployment", f"{FULL}-flower")["spec"]["template"]["spec"]
    worker = one(objects, "Deployment", f"{FULL}-worker")["spec"]["template"]["spec"]
    f_env, w_env = env_of(flower["containers"][0]), env_of(worker["containers"][0])
    for name in ("REDIS_PASSWORD", "REDIS_SENTINEL_PASSWORD"):
        assert f_env[name] == w_env[name], name
    assert "REDIS_URL" not in f_env and flower["containers"][0]["envFrom"] == worker["containers"][0]["envFrom"]
    assert _same_redis_files(objects, "flower") == _same_redis_files(objects, "worker") != ([], [])
    given = {("redis-auth", "primary"): "p@ss/w:rd", ("redis-auth", "sentinel"): "s:p@ss",
             ("redis-ca", "bundle.pem"): "CA PEM", ("redis-client", "tls.crt"): "CRT", ("redis-client", "tls.key"): "K"}
    conf = flower_conf(objects, given, tmp_path)
    hosts = ["sentinel-0.redis:26379", "sentinel-1.redis:26379", "sentinel-2.redis:26379"]
    assert conf["url"] == ";".join(f"sentinel://humanizer:p%40ss%2Fw%3Ard@{h}/2" for h in hosts)
    options = conf["options"]
    assert (options["master_name"], options["global_keyprefix"]) == ("prod", "blue:")
    sentinel_kwargs = options["sentinel_kwargs"]
    assert sentinel_kwargs["password"] == "s:p@ss" and sentinel_kwargs["ssl"] is True
    assert Path(sentinel_kwargs["ssl_ca_certs"]).read_text() == "CA PEM"
    assert conf["ssl"]["ssl_ca_certs"].endswith("/etc/humanizer/redis-tls/ca/bundle.pem")
    assert Path(conf["ssl"]["ssl_certfile"]).read_text() == "CRT"
    assert Path(conf["ssl"]["ssl_keyfile"]).read_text() == "K"
    # the same broker settings as the workers' Celery, from the workers' own container
    w = container_files_and_env(objects, worker, worker["containers"][0], given, tmp_path)
    workers = json.loads(json.dumps(celery_config(Settings.model_validate(w)), default=str))
    assert (conf["url"], conf["options"], conf["ssl"]) == (
        workers["broker_url"], workers["broker_transport_options"], workers["broker_use_ssl"])


def test_flower_over_tls_with_a_url(render: Render, tmp_path: Path) -> None:
    """externalRedis.url + tls (a CA from a Secret) + username + keyPrefix: rediss:// as the ACL user, the CA
    bundle verified, the release's own kombu keys."""
    values = {**TOGGLES["flower"], "redis": {"enabled": False}, "config": {"keyPrefix": "green"},
              "externalRedis": {"url": "redis://:pw%2F1@redis.example:6380/1", "username": "app",
                                "tls": {"enabled": True, "caSecret": "redis-ca", "checkHostname": False}}}
    objects = render(values)
    flower = one(objects, "Deployment", f"{FULL}-flower")["spec"]["template"]["spec"]
    assert env_of(flower["containers"][0])["REDIS_URL"]["valueFrom"]["secretKeyRef"]["name"] == f"{FULL}-external-redis"
    assert _same_redis_files(objects, "flower") == _same_redis_files(objects, "worker")
    assert {v["name"] for v in flower["volumes"]} == {"tmp", "app", "redis-tls-ca"}
    conf = flower_conf(objects, {("redis-ca", "ca.crt"): "CA PEM"}, tmp_path)
    assert conf["url"] == "rediss://app:pw%2F1@redis.example:6380/1"
    assert conf["ssl"]["ssl_cert_reqs"] == 2 and conf["ssl"]["ssl_check_hostname"] is False  # ssl.CERT_REQUIRED
    assert Path(conf["ssl"]["ssl_ca_certs"]).read_text() == "CA PEM"
    assert conf["options"]["global_keyprefix"] == "green:" and "master_name" not in conf["options"]


# ---- monitoring ------------------------------------------------------------------------------------------
def test_monitoring_is_off_by_default(render: Render) -> None:
    kinds = {o["kind"] for o in render()}
    assert not kinds & {"ServiceMonitor", "PodMonitor", "PrometheusRule"}
    assert not [o for o in render() if "grafana_dashboard" in o["metadata"].get("labels", {})]


def test_monitoring_objects(render: Render) -> None:
    objects = render(TOGGLES["monitoring"])
    sm = one(objects, "ServiceMonitor", f"{FULL}-api")["spec"]
    assert sm["endpoints"][0]["port"] == "http" and sm["endpoints"][0]["path"] == "/metrics"
    assert sm["jobLabel"] == "app.kubernetes.io/component"
    pm = one(objects, "PodMonitor", FULL)["spec"]
    assert pm["jobLabel"] == "app.kubernetes.io/component"
    assert pm["selector"]["matchExpressions"][0]["values"] == ["worker", "operator", "redis"]
    assert pm["podMetricsEndpoints"][0]["port"] == "metrics"
    # every selected pod has a port named metrics
    for where, spec in pod_specs(objects):
        if any(x in where for x in ("worker", "operator", "redis")):
            assert any(p["name"] == "metrics" for c in spec["containers"] for p in c.get("ports", [])), where
    rule = one(objects, "PrometheusRule", FULL)
    assert rule["spec"] == yaml.safe_load((CHART / "files" / "alerts.yaml").read_text())
    dashboards = [o for o in objects if o["kind"] == "ConfigMap" and "dashboard" in o["metadata"]["name"]]
    assert len(dashboards) == 2
    for cm in dashboards:
        assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
        (key, text), = cm["data"].items()
        assert json.loads(text) == json.loads((CHART / "dashboards" / key.removeprefix("humanizer-")).read_text())


# ---- values.schema.json ----------------------------------------------------------------------------------
def test_values_yaml_satisfies_the_schema() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    jsonschema.validate(yaml.safe_load((CHART / "values.yaml").read_text()), schema)


BAD_VALUES = [
    ({"worker": {"replicas": -1}}, "worker.replicas"),
    ({"api": {"replicas": -2}}, "api.replicas"),
    ({"worker": {"pool": "gevent"}}, "worker.pool"),
    ({"worker": {"concurrency": 0}}, "worker.concurrency"),
    ({"worker": {"queues": []}}, "worker.queues"),
    ({"api": {"port": 70000}}, "api.port"),
    ({"provider": {"name": "anthropic"}}, "provider.name"),
    ({"provider": {"name": "openai"}}, "provider"),
    ({"redis": {"enabled": False}}, "externalRedis"),
    ({"redis": {"enabled": False}, "externalRedis": {"url": "http://nope"}}, "externalRedis"),
    ({"config": {"logFormat": "xml"}}, "config.logFormat"),
    ({"image": {"pullPolicy": "Sometimes"}}, "image.pullPolicy"),
    ({"image": {"registry": "https://registry.example"}}, "image.registry"),
    ({"global": {"imageRegistry": "registry.example/"}}, "imageRegistry"),
    ({"operator": {"autoscaler": {"minReplicas": 0}}}, "minReplicas"),
    ({"operator": {"autoscaler": {"maxReplicas": 0}}}, "maxReplicas"),
    ({"operator": {"autoscaler": {"minReplicas": 5, "maxReplicas": 2}}}, "minReplicas"),
    ({"api": {"auth": {"tokens": ["short"]}}}, "api.auth.tokens"),
    ({"api": {"ingress": {"enabled": True, "hosts": []}}}, "hosts"),
    ({"config": {"extraEnv": {"lower-case": "x"}}}, "lower-case"),
    ({"networkPolicy": {"metricsNamespace": "monitoring"}}, "metricsNamespace"),  # replaced by metricsFrom
    ({"networkPolicy": {"metricsFrom": [{}]}}, "metricsFrom"),
    ({"operator": {"peering": {"enabled": True}}}, "peering"),  # removed: one standalone operator
    ({"workers": {"replicas": 3}}, "workers"),  # a typo of a top-level key
    ({"config": {"celery": {"visibilityTimeout": 100}}}, "visibilityTimeout"),
    ({"config": {"celery": {"taskSoftTimeLimit": 400}}}, "taskSoftTimeLimit"),
    ({"worker": {"queues": ["control", "priority"]}}, "worker.queues"),  # a worker on it would stay idle
    ({"config": {"keyPrefix": "blue team"}}, "keyPrefix"),
    ({"redis": {"enabled": False}, "externalRedis": {"sentinel": {"hosts": ["bad host:1"]}}}, "hosts"),
    ({"redis": {"enabled": False}, "externalRedis": {"sentinel": {"hosts": []}}}, "externalRedis"),
    ({"externalRedis": {"sentinel": {"hosts": ["s0:26379"]}}}, "redis.enabled=false"),  # the built-in Redis is on
    ({"redis": {"enabled": False}, "externalRedis": {"url": "redis://r:6379/0", "tls": {
        "enabled": True, "caSecret": "a", "caConfigMap": "b"}}}, "caConfigMap"),
]


@pytest.mark.parametrize(("values", "mentions"), BAD_VALUES, ids=[m + "-" + str(i) for i, (_, m) in
                                                                   enumerate(BAD_VALUES)])
def test_bad_values_are_rejected(helm: Helm, values: dict[str, Any], mentions: str) -> None:
    res = helm.template(values, check=False)
    assert res.returncode != 0, f"accepted {values}"
    assert re.search(re.escape(mentions.split(".")[-1]), res.stderr), res.stderr


@pytest.mark.parametrize(("prefix", "queues", "expected"), [
    ("hz", ["control", "humanize"], "control,humanize"),  # the default: the names every install has
    ("blue", ["control", "humanize"], "blue.control,blue.humanize"),
    ("blue", ["humanize"], "blue.humanize"),
])
def test_queues_follow_the_key_prefix(render: Render, prefix: str, queues: list[str], expected: str) -> None:
    """Two releases on one Redis database: each one's workers and autoscaler use its own queues."""
    objects = render({"config": {"keyPrefix": prefix}, "worker": {"queues": queues}})
    worker = one(objects, "Deployment", f"{FULL}-worker")["spec"]["template"]["spec"]["containers"][0]
    assert worker["args"] == [f"--queues={expected}"]
    operator = one(objects, "Deployment", f"{FULL}-operator")["spec"]["template"]["spec"]["containers"][0]
    assert env_of(operator)["HUMANIZER_AUTOSCALE_QUEUES"]["value"] == expected
    config = one(objects, "ConfigMap", f"{FULL}-config")["data"]
    assert config["HUMANIZER_KEY_PREFIX"] == prefix
    # the chart's names are the ones the code derives from the same prefix (workers, submit path, autoscaler)
    settings = Settings(key_prefix=config["HUMANIZER_KEY_PREFIX"])
    assert ",".join(settings.resolve_queues(queues)) == expected
    assert settings.resolve_queues(expected) == expected.split(",")
    assert settings.broker_key_prefix == ("" if prefix == "hz" else f"{prefix}:")


def test_scale_to_zero_allows_zero_min(render: Render) -> None:
    objects = render({"operator": {"autoscaler": {"minReplicas": 0, "scaleToZero": True}}})
    c = one(objects, "Deployment", f"{FULL}-operator")["spec"]["template"]["spec"]["containers"][0]
    assert env_of(c)["HUMANIZER_AUTOSCALE_SCALE_TO_ZERO"]["value"] == "true"


def test_notes(helm: Helm, tmp_path: Path) -> None:
    """NOTES.txt renders (helm renders it only on install; here a copy goes through tpl into a ConfigMap)."""
    chart = tmp_path / "humanizer"
    shutil.copytree(CHART, chart)
    (chart / "files" / "notes.txt").write_text((CHART / "templates" / "NOTES.txt").read_text())
    (chart / "templates" / "notes-rendered.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: notes}\n"
        'data:\n  notes: {{ tpl (.Files.Get "files/notes.txt") . | quote }}\n')
    out = helm("template", RELEASE, str(chart), "--namespace", NAMESPACE,
               "--show-only", "templates/notes-rendered.yaml").stdout
    notes = yaml.safe_load(out)["data"]["notes"]
    assert f"port-forward svc/{FULL}-api" in notes
    assert f"get secret {FULL}-api-tokens" in notes
    assert "Provider: offline" in notes


def test_alert_for_durations_are_values(render: Render) -> None:
    """monitoring.prometheusRule.alertFor overrides one alert's `for`; the others keep files/alerts.yaml's."""
    def fors(values: dict) -> dict[str, str]:
        (rule,) = by_kind(render(values), "PrometheusRule")
        return {r["alert"]: r.get("for", "") for g in rule["spec"]["groups"] for r in g["rules"] if "alert" in r}

    default = fors({"monitoring": {"prometheusRule": {"enabled": True}}})
    tuned = fors({"monitoring": {"prometheusRule": {"enabled": True, "alertFor": {"HumanizerNoWorkers": "20s"}}}})
    assert default["HumanizerNoWorkers"] == "5m" and tuned["HumanizerNoWorkers"] == "20s"
    assert {k: v for k, v in tuned.items() if k != "HumanizerNoWorkers"} == {
        k: v for k, v in default.items() if k != "HumanizerNoWorkers"}


def test_values_added_later_survive_upgrade_with_reuse_values(render: Render) -> None:
    """`helm upgrade --reuse-values` from an older release lacks values added since (found on the node
    tier: the headroom rendered as "<nil>" and every pod crashed at start-up). An absent value leaves the
    setting to its default; no "<nil>" anywhere."""
    objects = render({"config": {"rateLimit": {"headroom": None}}})
    (cm,) = [o for o in by_kind(objects, "ConfigMap") if "HUMANIZER_RATE_LIMIT_RPM" in (o.get("data") or {})]
    assert "HUMANIZER_RATE_LIMIT_HEADROOM" not in cm["data"]
    assert "<nil>" not in json.dumps(objects)


def test_second_pass_values_reach_the_settings(render: Render) -> None:
    def config_map(values: dict[str, Any]) -> dict[str, str]:
        (cm,) = [o for o in by_kind(render(values), "ConfigMap") if "HUMANIZER_RATE_LIMIT_RPM" in (o.get("data") or {})]
        return {k: v for k, v in cm["data"].items() if k.startswith("HUMANIZER_SECOND_PASS")}

    assert config_map({}) == {
        "HUMANIZER_SECOND_PASS": "auto", "HUMANIZER_SECOND_PASS_TELL_THRESHOLD": "35",
        "HUMANIZER_SECOND_PASS_MAX_CHUNK_RATIO": "0.25", "HUMANIZER_SECOND_PASS_MAX_TOKENS": "0",
    }
    tuned = config_map({"config": {"secondPass": {"mode": "off", "tellThreshold": 0, "maxTokens": 20000}}})
    assert tuned["HUMANIZER_SECOND_PASS"] == "off" and tuned["HUMANIZER_SECOND_PASS_TELL_THRESHOLD"] == "0"
    s = Settings(**{k.removeprefix("HUMANIZER_").lower(): v for k, v in tuned.items()})
    assert (s.second_pass, s.second_pass_tell_threshold, s.second_pass_max_tokens) == ("off", 0.0, 20000)
    assert config_map({"config": {"secondPass": None}}) == {}, "absent after --reuse-values: the settings' defaults"


def test_scheduler_values_reach_the_settings(render: Render, monkeypatch: pytest.MonkeyPatch) -> None:
    def config_map(values: dict[str, Any]) -> dict[str, str]:
        (cm,) = [o for o in by_kind(render(values), "ConfigMap") if "HUMANIZER_RATE_LIMIT_RPM" in (o.get("data") or {})]
        return {k: v for k, v in cm["data"].items() if k in ("HUMANIZER_FAIR_SCHEDULING", "HUMANIZER_TENANT_WEIGHTS")}

    assert config_map({}) == {"HUMANIZER_FAIR_SCHEDULING": "true"}
    tuned = config_map({"config": {"scheduler": {"fair": False, "tenantWeights": {"ns:team-a": 2, "token:ab12": 0.5}}}})
    for key, value in tuned.items():  # read as the pods read them: from the environment
        monkeypatch.setenv(key, value)
    s = Settings()
    assert (s.fair_scheduling, s.tenant_weights) == (False, {"ns:team-a": 2.0, "token:ab12": 0.5})
    assert config_map({"config": {"scheduler": None}}) == {}, "absent after --reuse-values: the settings' defaults"


def test_hung_worker_is_killed_without_the_warm_shutdown_grace(render: Render) -> None:
    """Found on the node tier: a worker restarted by its liveness probe waited the pod's 330 s grace
    (a hung process does not act on SIGTERM); the probe's own grace is short."""
    (dep,) = [d for d in by_kind(render({}), "Deployment") if d["metadata"]["name"].endswith("-worker")]
    spec = dep["spec"]["template"]["spec"]
    probe = spec["containers"][0]["livenessProbe"]
    assert probe["terminationGracePeriodSeconds"] <= 60 < spec["terminationGracePeriodSeconds"]
