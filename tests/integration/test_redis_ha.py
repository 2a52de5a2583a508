"""Redis as production runs it: behind Sentinel (a primary killed mid-job) and over TLS with an ACL user.

Real processes only: ``redis-server`` as primary, replica and three Sentinels (``--sentinel``), a
``redis-server`` listening with TLS only, real Celery workers, the fake OpenAI server. Every client the
workers and this process make (broker, result backend, job store, limiter, scheduler) reaches Redis
through the settings alone (``REDIS_SENTINELS``..., ``REDIS_TLS``...). All on 127.0.0.1, all waits bounded.
"""

from __future__ import annotations

import collections
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from humanizer.jobs.models import JobStatus
from humanizer.local.redis_server import RedisServer, TLSFiles
from humanizer.local.sentinel import SentinelCluster
from humanizer.local.stack import LocalStack
from humanizer.orchestration import OrchestrationService
from tests.integration.certs import make_tls_files
from tests.integration.conftest import FAST_RECOVERY_ENV, markers_in, numbered_document, poll_until, provider_env

pytestmark = pytest.mark.integration


def _assert_each_once_in_order(text: str, tag: str, n: int) -> None:
    found = markers_in(text, tag)
    dup = [m for m, c in collections.Counter(found).items() if c > 1]
    missing = sorted({f"{tag}-{i:04d}" for i in range(n)} - set(found))
    assert not dup and not missing and found == sorted(found), (
        f"{len(found)} markers for {n} chunks: {len(missing)} missing, {len(dup)} doubled"
    )


def _stack(fake_llm: Any, redis_like: Any, work: Path, **env: str) -> LocalStack:
    base = {**provider_env(fake_llm), "HUMANIZER_CHUNK_CACHE_TTL_SECONDS": "0", "HUMANIZER_BATCH_SIZE": "4",
            **FAST_RECOVERY_ENV, **env}
    return LocalStack(workers=2, concurrency=4, env=base, work_dir=work, redis=redis_like)


@pytest.fixture()
def sentinel_stack(fake_llm: Any, tmp_path: Path) -> Iterator[tuple[LocalStack, SentinelCluster]]:
    cluster = SentinelCluster(work_dir=tmp_path / "redis")
    stack = _stack(fake_llm, cluster, tmp_path)
    fake_llm.reset()
    try:
        cluster.start()
        stack.start()
        yield stack, cluster
    finally:
        stack.stop()  # also stops the cluster


def test_primary_killed_mid_job_behind_sentinel(sentinel_stack: tuple[LocalStack, SentinelCluster],
                                                fake_llm: Any) -> None:
    _, cluster = sentinel_stack
    n = 400
    fake_llm.configure(latency=0.4, jitter=0.05)  # 32 calls in flight: ~5 s of work, the failover ~2-3 s
    svc = OrchestrationService()
    job_id = svc.submit_document(numbered_document(n, "F"), chunk_max_tokens=40)["job_id"]
    assert poll_until(lambda: svc.view(job_id).progress.completed >= 40, timeout=60), "the job never got going"
    time.sleep(0.3)  # replication on loopback is immediate; leave it a moment all the same
    old = cluster.current_primary()
    at_kill = svc.view(job_id).progress.completed
    killed_at = time.monotonic()
    cluster.kill_primary()
    new = cluster.wait_failover(old.port, timeout=30)
    failover_s = time.monotonic() - killed_at
    assert new.port != old.port and old.proc is not None and old.proc.poll() is not None  # the old one is dead
    # a status read after the failover, through the Sentinels: the job was still running
    after = svc.view(job_id)
    assert not after.status.terminal and after.progress.completed < n, (
        f"the job had ended by the failover: {after.status} {after.progress}"
    )
    view = svc.wait(job_id, timeout=120, poll=0.2)
    ended_s = time.monotonic() - killed_at
    assert view.status == JobStatus.SUCCESS, f"{view.status}: {view.error}"
    _assert_each_once_in_order(view.humanized_text or "", "F", n)
    primary_now = redis.Redis(port=new.port, password=cluster.password, decode_responses=True)
    assert primary_now.info("replication")["role"] == "master"
    calls = fake_llm.stats()["total"]
    print(f"\nFIGURE sentinel-failover: primary killed at {at_kill}/{n} chunks done ({after.progress.completed} "
          f"at the first read after); replica promoted {failover_s:.1f}s after the kill; job SUCCESS "
          f"{ended_s:.1f}s after the kill; {n}/{n} chunks once, in order; {calls} provider calls")


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TLSFiles:
    return make_tls_files(tmp_path_factory.mktemp("tls"), auth_clients="yes")


def test_job_over_tls_with_acl_user_and_client_certificate(fake_llm: Any, tmp_path: Path, tls_files: TLSFiles) -> None:
    tls = tls_files  # tls-auth-clients yes: our clients present the client certificate
    server = RedisServer(data_dir=tmp_path / "redis", tls=tls, user=("humanizer", "acl-Pa55"), appendonly=False)
    stack = _stack(fake_llm, server, tmp_path)
    fake_llm.reset()
    try:
        stack.start()
        env = stack.env
        assert env["REDIS_TLS"] == "true" and env["REDIS_USERNAME"] == "humanizer" and "REDIS_TLS_CERT_FILE" in env
        svc = OrchestrationService()
        n = 60
        job_id = svc.submit_document(numbered_document(n, "L"), chunk_max_tokens=40)["job_id"]
        view = svc.wait(job_id, timeout=90, poll=0.2)
        assert view.status == JobStatus.SUCCESS, f"{view.status}: {view.error}"
        _assert_each_once_in_order(view.humanized_text or "", "L", n)
        assert fake_llm.stats()["total"] >= n

        # every connection (the workers', ours) is TLS (no other port) and the ACL user's
        admin = server.client(decode_responses=True)
        clients = admin.client_list()
        assert len(clients) >= 4 and {c.get("user") for c in clients} == {"humanizer"}, clients
        common = {"host": "127.0.0.1", "port": server.port, "socket_connect_timeout": 2, "socket_timeout": 2}
        plain = redis.Redis(username="humanizer", password="acl-Pa55", **common)
        with pytest.raises(redis.ConnectionError):
            plain.ping()  # no plaintext port: a plain connection is refused
        no_cert = redis.Redis(ssl=True, ssl_ca_certs=str(tls.ca_file), username="humanizer", password="acl-Pa55",
                              **common)
        with pytest.raises(redis.ConnectionError):
            no_cert.ping()  # tls-auth-clients yes: no client certificate, no connection
        default_user = redis.Redis(ssl=True, password="acl-Pa55", **common, **server.client_options())
        with pytest.raises((redis.AuthenticationError, redis.ResponseError)):
            default_user.ping()  # the default user is off: only the ACL user gets in
        print(f"\nFIGURE tls: {n}/{n} chunks once over TLS (client certificate, ACL user, {len(clients)} "
              "connections of that user); plaintext, no certificate and the default user refused")
    finally:
        stack.stop()


# ---- start-up: one line, no traceback ----------------------------------------------------------------

def _start_worker(env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "HUMANIZER_", "CELERY_"))}
    full = {**base, "HUMANIZER_REDIS_STARTUP_TIMEOUT_SECONDS": "1", **env}
    return subprocess.run([sys.executable, "-m", "humanizer.cli", "worker", "--pool=solo"], capture_output=True,
                          text=True, timeout=60, env=full, cwd=cwd)


def _one_line(proc: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in proc.stderr + proc.stdout, proc.stderr[-3000:]
    assert proc.returncode == 2, f"exit {proc.returncode}: {proc.stderr[-1000:]}"
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr[-1500:]
    return lines[0]


def test_misconfigured_sentinel_and_tls_are_one_line(tmp_path: Path, tls_files: TLSFiles) -> None:
    with SentinelCluster(work_dir=tmp_path / "ha", sentinels=1) as cluster:
        env = {**cluster.env(), "REDIS_SENTINEL_MASTER": "nosuchmaster"}
        line = _one_line(_start_worker(env, tmp_path))
        assert "know no reachable primary named 'nosuchmaster'" in line and "REDIS_SENTINEL_MASTER" in line, line
        line = _one_line(_start_worker({**cluster.env(), "REDIS_SENTINEL_PASSWORD": "wrong"}, tmp_path))
        assert "the Sentinels at 127.0.0.1:" in line and "refused the password" in line, line
        assert "REDIS_SENTINEL_PASSWORD" in line and cluster.sentinel_password not in line
    with RedisServer(data_dir=tmp_path / "tls", tls=tls_files, appendonly=False) as server:
        plain_env = {k: v for k, v in server.env().items() if not k.startswith("REDIS_TLS")}
        line = _one_line(_start_worker(plain_env, tmp_path))
        assert "does it expect TLS" in line, line
        other_ca = make_tls_files(tmp_path / "other-ca").ca_file  # a CA that did not sign the server's certificate
        line = _one_line(_start_worker({**server.env(), "REDIS_TLS_CA_FILE": str(other_ca)}, tmp_path))
        assert "TLS handshake with Redis at rediss://" in line and "CA bundle" in line, line


# ---- a lost broker connection: the worker stays ------------------------------------------------------

@pytest.mark.parametrize("sentinel", [False, True], ids=["redis", "sentinel"])
def test_a_collected_broker_connection_closes_without_restoring(tmp_path: Path, sentinel: bool) -> None:
    """The state Celery's consumer leaves after a lost connection: ``Connection.collect()`` dropped the
    transport's client, a channel with unacknowledged messages is closed afterwards, and a task that ran
    through the loss acknowledges its message on it. kombu's own transport raises AttributeError in both
    (Celery's consumer: "Unrecoverable error", the worker leaves); ours closes, refuses the late
    acknowledgement with a connection error (Celery logs it and goes on) and leaves the messages in Redis'
    unacked set for the visibility timeout."""
    import kombu
    from celery import Celery
    from kombu.transport import redis as kombu_redis

    from humanizer.broker import celery_config
    from humanizer.config import Settings

    cluster = SentinelCluster(work_dir=tmp_path / "ha", sentinels=1) if sentinel else None
    server = None if cluster else RedisServer(data_dir=tmp_path / "redis", appendonly=False)
    try:
        env = cluster.start().env() if cluster else server.start().env()  # type: ignore[union-attr]
        settings = Settings(**{k.lower(): v for k, v in env.items()})
        admin = cluster.primary.client() if cluster else server.client()  # type: ignore[union-attr]
        for transport in ("kombu", "ours"):
            app = Celery("t", set_as_current=False)
            app.conf.update(celery_config(settings))
            if transport == "kombu":
                cls = kombu_redis.SentinelTransport if sentinel else kombu_redis.Transport
                app.conf.broker_transport = f"{cls.__module__}:{cls.__qualname__}"
            conn = app.connection_for_read()
            channel = conn.default_channel
            queue = kombu.Queue(f"t-{transport}", routing_key=f"t-{transport}")
            kombu.Producer(channel).publish({"n": 1}, routing_key=queue.name, declare=[queue])
            message = channel.basic_get(queue.name, no_ack=False)
            assert message is not None  # delivered, not acknowledged
            conn.transport.client = None  # what Connection.collect() leaves behind
            if transport == "kombu":
                with pytest.raises(AttributeError, match="hostname"):
                    channel.close()
                channel.connection = None  # as a close that got through leaves it
                with pytest.raises(AttributeError, match="client"):
                    message.ack()  # a task that ran through the loss (acks_late)
            else:
                channel.close()
                assert channel.closed
                with pytest.raises(redis.ConnectionError, match="broker connection was lost"):
                    message.ack()  # Celery logs "Couldn't ack" and goes on
            unacked = f"{settings.broker_key_prefix}unacked"  # kombu's keys under the release's prefix
            assert admin.hlen(unacked) == 1  # still there, for the visibility timeout to restore
            admin.delete(unacked, f"{unacked}_index")
            app.close()
    finally:
        if cluster:
            cluster.cleanup()
        elif server:
            server.cleanup()
