"""How the Redis settings become clients: direct, Sentinel, TLS, ACL user (no server needed)."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
from redis.sentinel import SentinelConnectionPool, SentinelManagedSSLConnection

from humanizer.broker import celery_config
from humanizer.config import Settings
from humanizer.redis_client import connect, sentinel_options, tls_options

pytestmark = pytest.mark.unit


def make(**kw: object) -> Settings:
    return Settings(_env_file=None, **kw)  # type: ignore[call-arg, arg-type]


def test_sentinel_hosts_parsed_with_default_port_and_ipv6() -> None:
    s = make(redis_sentinels=" s1:26380, s2 ,[::1]:5000,[fe80::1]")
    assert s.sentinel_mode
    assert s.sentinel_hosts == [("s1", 26380), ("s2", 26379), ("::1", 5000), ("fe80::1", 26379)]


@pytest.mark.parametrize("bad", ["s1:notaport", "s1:0", ":26379", "s1:70000"])
def test_bad_sentinel_address_is_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="REDIS_SENTINELS"):
        make(redis_sentinels=bad)


def test_sentinels_and_url_exclude_each_other() -> None:
    with pytest.raises(ValueError, match="exclude each other"):
        make(redis_sentinels="s1", redis_url="redis://h:1/0")


def test_celery_goes_through_the_sentinels() -> None:
    s = make(redis_sentinels="s1:1,s2:2", redis_sentinel_master="prod", redis_db=3, redis_username="app",
             redis_password="p@ss", redis_sentinel_password="sp")
    conf = celery_config(s)
    url = "sentinel://app:p%40ss@s1:1/3;sentinel://app:p%40ss@s2:2/3"
    assert conf["broker_url"] == url
    assert conf["result_backend"] == f"humanizer.broker:QuietSentinelBackend+{url}"
    for options in (conf["broker_transport_options"], conf["result_backend_transport_options"]):
        assert options["master_name"] == "prod"  # type: ignore[index]
        assert options["sentinel_kwargs"]["password"] == "sp"  # type: ignore[index]
    assert conf["broker_use_ssl"] is False
    redacted = s.redis_dsn_redacted
    assert "p@ss" not in redacted and "sp" not in redacted.replace("Sentinels", "")
    assert redacted == "primary 'prod' of Sentinels s1:1,s2:2 (db 3)"


def test_celery_backend_loads_the_sentinel_class() -> None:
    from celery import Celery

    app = Celery("t", set_as_current=False)
    app.conf.update(celery_config(make(redis_sentinels="127.0.0.1:1", redis_password="pw")))
    backend = app.backend
    assert type(backend).__name__ == "QuietSentinelBackend"
    assert backend._transport_options["master_name"] == "mymaster"  # type: ignore[attr-defined]


def test_client_through_sentinel_is_a_sentinel_pool(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    s = make(redis_sentinels="s1:1", redis_password="pw", redis_username="u", redis_tls=True,
             redis_tls_ca_file=str(ca), redis_sentinel_password="sp")
    client = connect(s, socket_timeout=3)
    pool = client.connection_pool
    assert isinstance(pool, SentinelConnectionPool) and pool.service_name == "mymaster"
    assert pool.connection_class is SentinelManagedSSLConnection
    kw = pool.connection_kwargs
    assert kw["username"] == "u" and kw["password"] == "pw" and kw["ssl_ca_certs"] == str(ca)
    assert kw["ssl_cert_reqs"] == "required" and kw["socket_timeout"] == 3
    sentinel_kw = sentinel_options(s)
    assert sentinel_kw["password"] == "sp" and sentinel_kw["ssl"] is True and sentinel_kw["ssl_ca_certs"] == str(ca)


def test_tls_direct(tmp_path: Path) -> None:
    ca, crt, key = (tmp_path / n for n in ("ca.pem", "c.pem", "k.pem"))
    s = make(redis_host="r.example", redis_tls=True, redis_tls_ca_file=str(ca), redis_tls_cert_file=str(crt),
             redis_tls_key_file=str(key), redis_username="app", redis_password="pw")
    assert s.redis_dsn == "rediss://app:pw@r.example:6379/0"
    assert s.redis_dsn_redacted == "rediss://app:***@r.example:6379/0"
    assert tls_options(s) == {"ssl_cert_reqs": "required", "ssl_check_hostname": True, "ssl_ca_certs": str(ca),
                              "ssl_certfile": str(crt), "ssl_keyfile": str(key)}
    conf = celery_config(s)
    assert conf["broker_url"] == "redis://app:pw@r.example:6379/0"  # TLS from broker_use_ssl, not the scheme
    assert conf["broker_use_ssl"]["ssl_cert_reqs"] == ssl.CERT_REQUIRED  # type: ignore[index]
    assert conf["redis_backend_use_ssl"] == conf["broker_use_ssl"]
    client = connect(s)
    assert client.connection_pool.connection_kwargs["ssl_ca_certs"] == str(ca)
    assert client.connection_pool.connection_class.__name__ == "SSLConnection"


def test_rediss_url_means_tls_and_username_joins_the_url() -> None:
    s = make(redis_url="rediss://:pw@h:1/2", redis_username="bob")
    assert s.redis_tls_enabled and s.redis_dsn == "rediss://bob:pw@h:1/2"
    assert s.celery_redis_url() == "redis://bob:pw@h:1/2"
    plain = make(redis_url="redis://h:1/2", redis_tls=True)
    assert plain.redis_dsn == "rediss://h:1/2"


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"redis_tls": True, "redis_tls_cert_file": "/c"}, "go together"),
        ({"redis_tls_ca_file": "/ca"}, "TLS is off"),
    ],
)
def test_inconsistent_tls_settings(kw: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        make(**kw)


def test_identity_differs_per_configuration() -> None:
    a = make(redis_sentinels="s1", redis_sentinel_master="a")
    b = make(redis_sentinels="s1", redis_sentinel_master="b")
    c = make(redis_host="h", redis_tls=True)
    d = make(redis_host="h")
    assert len({a.redis_identity, b.redis_identity, c.redis_identity, d.redis_identity}) == 4


def test_sentinel_start_up_errors_are_told_apart() -> None:
    from redis.sentinel import MasterNotFoundError

    from humanizer.startup import describe_redis_error

    s = make(redis_sentinels="s1:1,s2:2", redis_sentinel_master="prod", redis_sentinel_password="spw")
    unknown, transient = describe_redis_error(MasterNotFoundError("No master found for 'prod'"), s)
    assert unknown.startswith("the Sentinels at s1:1,s2:2 know no reachable primary named 'prod'") and transient
    assert "REDIS_SENTINEL_MASTER" in unknown
    auth = MasterNotFoundError("No master found for 'prod' : Redis<...> - AuthenticationError('invalid "
                               "username-password pair or user is disabled.')")
    refused, transient = describe_redis_error(auth, s)
    assert "refused the password" in refused and "REDIS_SENTINEL_PASSWORD" in refused and not transient
    down = MasterNotFoundError("No master found for 'prod' : Redis<...> - ConnectionError('Error 111')")
    unreachable, transient = describe_redis_error(down, s)
    assert unreachable == "the Sentinels at s1:1,s2:2 are unreachable; check REDIS_SENTINELS" and transient
    assert "spw" not in unknown + refused + unreachable
