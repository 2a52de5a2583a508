"""Flower's Celery app, as the chart renders it, really reaches Redis behind Sentinel and a TLS-only Redis.

The chart is rendered with ``helm template`` (the chart tier's helm); Flower's container is laid out on this
machine as the kubelet would start it (tests/chart/pods.py): the ConfigMap's ``humanizer_flower.py`` on
PYTHONPATH, the CA bundle and client certificate where the Secrets' volumes are mounted, the environment from
the release's ConfigMap and the Secrets. A subprocess then loads the app as ``celery -A humanizer_flower``
does, connects (bounded retries) and reads the length of this release's control queue through kombu's channel.
The messages are put there first by the workers' own Celery configuration (``humanizer.broker.celery_config``
from the rendered worker container's environment), under a key prefix of its own, so a Flower connection that
missed the Sentinels' ``master_name``, TLS, the CA, the ACL user or ``global_keyprefix`` fails here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml
from celery import Celery

from humanizer.broker import celery_config
from humanizer.config import Settings
from humanizer.local.redis_server import RedisServer
from humanizer.local.sentinel import SentinelCluster
from tests.chart.conftest import RELEASE, Helm, helm_path, one
from tests.chart.pods import container_files_and_env
from tests.integration.certs import make_tls_files

pytestmark = pytest.mark.integration

FULL = f"{RELEASE}-humanizer"
PREFIX = "flowerit"
MESSAGES = 3
# `celery -A humanizer_flower` finds the app like this; every wait bounded (about 10 s)
PROBE = """
import json, sys
from celery.app.utils import find_app
app = find_app("humanizer_flower")
with app.connection_for_read() as conn:
    conn.ensure_connection(max_retries=3, interval_start=0.2, interval_step=0.5, interval_max=1, timeout=10)
    # declaring a Redis queue writes nothing; it answers the queue's length (LLEN, under global_keyprefix).
    # Not passive=True: kombu checks that one with EXISTS, which it does not prefix
    name, messages, _ = conn.default_channel.queue_declare(queue=sys.argv[1])
    print(json.dumps({"queue": name, "messages": messages}))
"""


@pytest.fixture(scope="module")
def helm(tmp_path_factory: pytest.TempPathFactory) -> Helm:
    binary = helm_path()
    if not binary.is_file():
        pytest.fail(f"helm not found at {binary}: run `make helm-bin` (tools/k8s/build.sh helm) or set HELM")
    return Helm(binary, tmp_path_factory.mktemp("helm-home"))


def render(helm: Helm, values: dict[str, Any]) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(helm.template(values).stdout) if d]


def pod_env(objects: list[dict[str, Any]], component: str, given: dict[tuple[str, str], str], root: Path
            ) -> dict[str, str]:
    spec = one(objects, "Deployment", f"{FULL}-{component}")["spec"]["template"]["spec"]
    return container_files_and_env(objects, spec, spec["containers"][0], given, root)


def publish_as_the_workers(env: dict[str, str]) -> str:
    """MESSAGES merge tasks on the release's control queue, sent with the workers' Celery configuration."""
    settings = Settings.model_validate(env)
    app = Celery("publisher", set_as_current=False)
    app.conf.update(celery_config(settings))
    try:
        for i in range(MESSAGES):
            app.send_task("humanizer.merge", args=[f"job-{i}"], queue=settings.control_queue)
    finally:
        app.close()
    return settings.control_queue


def probe(env: dict[str, str], queue: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", PROBE, queue], capture_output=True, text=True, timeout=60, cwd=cwd,
                          env={"PATH": os.environ["PATH"], **env})


def assert_flower_sees_the_queue(objects: list[dict[str, Any]], given: dict[tuple[str, str], str], root: Path,
                                 primary: redis.Redis) -> dict[str, str]:
    workers = pod_env(objects, "worker", given, root / "worker")
    queue = publish_as_the_workers(workers)
    assert queue == f"{PREFIX}.control"
    assert primary.llen(f"{PREFIX}:{queue}") == MESSAGES  # where the workers' kombu keeps it (global_keyprefix)
    env = pod_env(objects, "flower", given, root / "flower")
    res = probe(env, queue, root)
    assert res.returncode == 0, res.stderr[-3000:]
    assert json.loads(res.stdout) == {"queue": queue, "messages": MESSAGES}
    return env


def test_flower_app_through_real_sentinels(helm: Helm, tmp_path: Path) -> None:
    with SentinelCluster(work_dir=tmp_path / "ha", master_name="flower-primary") as cluster:
        values = {
            "flower": {"enabled": True}, "redis": {"enabled": False}, "config": {"keyPrefix": PREFIX},
            "externalRedis": {"sentinel": {
                "hosts": [f"127.0.0.1:{p}" for p in cluster.sentinel_ports], "masterName": cluster.master_name,
                "passwordSecret": {"name": "redis-auth", "key": "primary"},
                "sentinelPasswordSecret": {"name": "redis-auth", "key": "sentinel"}}},
        }
        given = {("redis-auth", "primary"): str(cluster.password),
                 ("redis-auth", "sentinel"): str(cluster.sentinel_password)}
        objects = render(helm, values)
        primary = cluster.current_primary().client()
        env = assert_flower_sees_the_queue(objects, given, tmp_path / "pod", primary)
        assert env["REDIS_SENTINEL_MASTER"] == "flower-primary" and "REDIS_URL" not in env
        # the Sentinels refuse a wrong password of theirs: Flower's app does go through them with it
        res = probe({**env, "REDIS_SENTINEL_PASSWORD": "wrong"}, f"{PREFIX}.control", tmp_path)
        assert res.returncode != 0
        primary.close()


def test_flower_app_over_tls_only_with_acl_user(helm: Helm, tmp_path: Path) -> None:
    tls = make_tls_files(tmp_path / "tls", auth_clients="yes")
    user = ("flower-acl", "acl-Pa55")
    with RedisServer(data_dir=tmp_path / "redis", tls=tls, user=user, appendonly=False) as server:
        values = {
            "flower": {"enabled": True}, "redis": {"enabled": False}, "config": {"keyPrefix": PREFIX},
            "externalRedis": {"url": f"redis://:{user[1]}@127.0.0.1:{server.port}/0", "username": user[0],
                              "tls": {"enabled": True, "caSecret": "redis-ca", "clientCertSecret": "redis-client"}},
        }
        given = {("redis-ca", "ca.crt"): tls.ca_file.read_text(),
                 ("redis-client", "tls.crt"): Path(str(tls.client_cert_file)).read_text(),
                 ("redis-client", "tls.key"): Path(str(tls.client_key_file)).read_text()}
        objects = render(helm, values)
        admin = server.client(decode_responses=True)
        env = assert_flower_sees_the_queue(objects, given, tmp_path / "pod", admin)
        assert env["REDIS_TLS"] == "true" and env["REDIS_USERNAME"] == user[0]
        # without the mounted CA bundle the server's certificate is not trusted: Flower's app verifies it
        res = probe({k: v for k, v in env.items() if k != "REDIS_TLS_CA_FILE"}, f"{PREFIX}.control", tmp_path)
        assert res.returncode != 0 and "certificate" in res.stderr.lower(), res.stderr[-2000:]
        admin.close()
