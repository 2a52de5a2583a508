import pytest
from pydantic import ValidationError

from humanizer.config import Settings

pytestmark = pytest.mark.unit


def test_brief_environment_names(monkeypatch: pytest.MonkeyPatch) -> None:
    env = {
        "OPENAI_API_KEY": "sk-test-secret",
        "OPENAI_MODEL": "gpt-x",
        "OPENAI_MAX_TOKENS": "321",
        "OPENAI_TEMPERATURE": "0.3",
        "REDIS_HOST": "redis.example",
        "REDIS_PORT": "6380",
        "REDIS_DB": "2",
        "REDIS_PASSWORD": "p@ss/word",
        "CELERY_WORKER_CONCURRENCY": "16",
        "CELERY_TASK_MAX_RETRIES": "7",
        "CELERY_TASK_RETRY_DELAY": "0.5",
    }
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    s = Settings(_env_file=None)  # type: ignore[call-arg]
    assert s.openai_model == "gpt-x" and s.openai_max_tokens == 321 and s.openai_temperature == 0.3
    assert s.celery_worker_concurrency == 16 and s.celery_task_max_retries == 7
    assert s.celery_task_retry_delay == 0.5
    assert s.redis_dsn == "redis://:p%40ss%2Fword@redis.example:6380/2"
    assert "p@ss" not in s.redis_dsn_redacted and "***" in s.redis_dsn_redacted
    assert "sk-test-secret" not in repr(s), "the API key must not appear in reprs (logs)"


def test_redis_url_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", "redis://other:1234/5")
    monkeypatch.setenv("REDIS_HOST", "ignored")
    assert Settings(_env_file=None).redis_dsn == "redis://other:1234/5"  # type: ignore[call-arg]


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("OPENAI_TEMPERATURE", "3"),
        ("REDIS_PORT", "70000"),
        ("CELERY_WORKER_CONCURRENCY", "0"),
        ("HUMANIZER_PROVIDER", "nope"),
        ("CELERY_VISIBILITY_TIMEOUT", "100"),  # below the 300 s hard time limit
    ],
)
def test_bad_values_rejected(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError):
        Settings(_env_file=None)  # type: ignore[call-arg]


def test_visibility_timeout_must_exceed_time_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CELERY_TASK_TIME_LIMIT", "500")
    monkeypatch.setenv("CELERY_VISIBILITY_TIMEOUT", "400")
    with pytest.raises(ValidationError, match="VISIBILITY_TIMEOUT"):
        Settings(_env_file=None)  # type: ignore[call-arg]


def test_broker_sockets_have_timeouts() -> None:
    """A blocking broker socket can hang a worker's first connect for good (redis-py's connection check
    peeks with a blocking recv): every broker socket operation is bounded, and below the visibility
    timeout."""
    from humanizer.broker import celery_config

    settings = Settings()
    options = celery_config(settings)["broker_transport_options"]
    assert isinstance(options, dict)
    assert 0 < options["socket_connect_timeout"] <= options["socket_timeout"] < settings.celery_visibility_timeout


def test_queue_names_follow_the_key_prefix() -> None:
    default = Settings(_env_file=None)  # type: ignore[call-arg]
    assert (default.chunk_queue, default.control_queue, default.broker_key_prefix) == ("humanize", "control", "")
    assert default.resolve_queues("control,humanize") == ["control", "humanize"]
    blue = Settings(_env_file=None, key_prefix="blue")  # type: ignore[call-arg]
    assert (blue.chunk_queue, blue.control_queue, blue.broker_key_prefix) == ("blue.humanize", "blue.control", "blue:")
    assert blue.resolve_queues("control, humanize") == ["blue.control", "blue.humanize"]
    assert blue.resolve_queues(["blue.humanize", "humanize"]) == ["blue.humanize"]
    with pytest.raises(ValueError, match="unknown queue 'celery'"):
        blue.resolve_queues("control,celery")
    with pytest.raises(ValueError, match=r"unknown queue 'blue\.humanize'"):  # another release's queue
        default.resolve_queues("blue.humanize")
    with pytest.raises(ValidationError):
        Settings(_env_file=None, key_prefix="blue team")  # type: ignore[call-arg]


def test_celery_config_of_a_prefixed_release() -> None:
    from humanizer.broker import celery_config

    conf = celery_config(Settings(_env_file=None, key_prefix="blue"))  # type: ignore[call-arg]
    assert conf["broker_transport_options"]["global_keyprefix"] == "blue:"  # type: ignore[index]
    assert conf["task_routes"] == {
        "humanizer.humanize_batch": {"queue": "blue.humanize"},
        "humanizer.merge": {"queue": "blue.control"},
        "humanizer.verify": {"queue": "blue.control"},
    }
    plain = celery_config(Settings(_env_file=None))  # type: ignore[call-arg]
    assert "global_keyprefix" not in plain["broker_transport_options"]  # type: ignore[operator]
