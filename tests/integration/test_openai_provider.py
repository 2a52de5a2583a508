"""OpenAIProvider through the real openai SDK against the fake server subprocess (no Redis, no workers)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import openai
import pytest

from humanizer.fake_llm.server import text_hash
from humanizer.fake_llm.testing import FakeLLMProcess, start_fake_llm_process
from humanizer.providers import ErrorKind, ProviderError, RewriteRequest, build_provider
from humanizer.providers.openai_provider import OpenAIProvider
from humanizer.providers.prompts import Style, build_system_prompt, style_from_prompt

pytestmark = pytest.mark.integration

KEY = "sk-fake-provider-tests"
TEXT = "It is important to note that the team utilizes ⟦P1⟧ in 2024. Furthermore, 42 tests pass.\n"


@pytest.fixture(scope="module")
def server() -> Iterator[FakeLLMProcess]:
    with start_fake_llm_process(latency=0.0, api_key=KEY, seed=7) as fake:
        yield fake


@pytest.fixture()
def fake(server: FakeLLMProcess) -> FakeLLMProcess:
    server.reset()
    return server


def provider(fake: FakeLLMProcess, timeout: float = 5.0, key: str = KEY) -> OpenAIProvider:
    p = build_provider("openai", api_key=key, base_url=fake.url, model="fake-model", temperature=0.7,
                       max_tokens=512, timeout=timeout)
    assert isinstance(p, OpenAIProvider)
    return p


def fail(p: OpenAIProvider, text: str = TEXT) -> ProviderError:
    with pytest.raises(ProviderError) as info:
        p.rewrite(RewriteRequest(text=text, style="neutral"))
    err = info.value
    assert KEY not in str(err) and "utilizes" not in str(err) and KEY not in repr(err)
    return err


def test_success_with_usage(fake: FakeLLMProcess) -> None:
    result = provider(fake).rewrite(RewriteRequest(text=TEXT, style="casual"))
    assert result.text != TEXT and "⟦P1⟧" in result.text and "2024" in result.text and "42" in result.text
    assert result.text.endswith("\n")
    assert result.provider == "openai" and result.model == "fake-model" and result.finish_reason == "stop"
    assert result.input_tokens > 50 and result.output_tokens > 5
    assert fake.stats()["by_status"] == {"200": 1}


def test_echo_mode_is_byte_exact(fake: FakeLLMProcess) -> None:
    fake.configure(mode="echo")
    text = "  Leading spaces, \"quotes\" and ⟦P0⟧.\r\n\r\nSecond\tparagraph.  \n\n"
    assert provider(fake).rewrite(RewriteRequest(text=text)).text == text


def test_429_with_retry_after(fake: FakeLLMProcess) -> None:
    fake.configure(faults=[{"kind": "429", "retry_after": 2}])
    err = fail(provider(fake))
    assert err.kind is ErrorKind.RATE_LIMITED and err.retryable and not err.stops_job
    assert err.retry_after == 2.0 and err.status_code == 429


@pytest.mark.parametrize("kind", ["500", "503"])
def test_5xx_is_retryable(fake: FakeLLMProcess, kind: str) -> None:
    fake.configure(faults=[{"kind": kind}])
    err = fail(provider(fake))
    assert err.kind is ErrorKind.SERVER_ERROR and err.retryable and err.status_code == int(kind)


def test_timeout(fake: FakeLLMProcess) -> None:
    fake.configure(faults=[{"kind": "timeout", "hang": 3}])
    started = time.monotonic()
    err = fail(provider(fake, timeout=0.5))
    assert err.kind is ErrorKind.TIMEOUT and err.retryable
    assert time.monotonic() - started < 2.5, "the SDK retried on its own; Celery owns retries"


@pytest.mark.parametrize(
    ("fault", "kind", "retryable", "stops"),
    [
        ("400", ErrorKind.BAD_REQUEST, False, False),
        ("401", ErrorKind.AUTH, False, True),
        ("403", ErrorKind.PERMISSION, False, True),
        ("404", ErrorKind.NOT_FOUND, False, False),
        ("422", ErrorKind.UNPROCESSABLE, False, False),
        ("insufficient_quota", ErrorKind.QUOTA_EXHAUSTED, False, True),
        ("content_filter", ErrorKind.CONTENT_POLICY, False, False),
        ("empty", ErrorKind.INVALID_RESPONSE, True, False),
    ],
)
def test_permanent_and_invalid(fake: FakeLLMProcess, fault: str, kind: ErrorKind, retryable: bool,
                               stops: bool) -> None:
    fake.configure(faults=[{"kind": fault}])
    err = fail(provider(fake))
    assert (err.kind, err.retryable, err.stops_job) == (kind, retryable, stops)


def test_wrong_key_is_auth(fake: FakeLLMProcess) -> None:
    err = fail(provider(fake, key="sk-wrong-key"))
    assert err.kind is ErrorKind.AUTH and err.stops_job and err.status_code == 401
    assert "sk-wrong-key" not in str(err)


def test_length_is_flagged(fake: FakeLLMProcess) -> None:
    fake.configure(faults=[{"kind": "length"}])
    result = provider(fake).rewrite(RewriteRequest(text=TEXT))
    assert result.finish_reason == "length" and result.truncated


@pytest.mark.parametrize("style", [*(s.value for s in Style), "custom"])
def test_each_style_sends_its_messages(fake: FakeLLMProcess, style: str) -> None:
    """What reaches the server for each preset: the system prompt built for it (rules, the catalogue's
    phrases to avoid, the style), and only the text in the user message (both seen as hashes)."""
    custom = "Sound like a tired pirate." if style == "custom" else None
    result = provider(fake).rewrite(RewriteRequest(text=TEXT, style=style, custom_prompt=custom))
    assert result.text and result.finish_reason == "stop"
    entry = fake.stats()["requests"][-1]
    assert entry["system_hash"] == text_hash(build_system_prompt(style, custom))
    assert entry["style"] == (style_from_prompt(custom) if custom else Style(style)).value
    assert entry["text_hash"] == text_hash(TEXT)
    assert entry["max_tokens"] == 512 and "pirate" not in str(fake.stats())


def test_selectors_match_first_n_and_times_per_text(fake: FakeLLMProcess) -> None:
    p = provider(fake)
    fake.configure(faults=[{"kind": "400", "match": "FAULT-400"}, {"kind": "500", "times_per_text": 2},
                           {"kind": "503", "first_n": 0}])
    assert fail(p, "chunk FAULT-400 here").kind is ErrorKind.BAD_REQUEST
    assert fail(p, "another chunk").kind is ErrorKind.SERVER_ERROR
    assert fail(p, "another chunk").kind is ErrorKind.SERVER_ERROR
    assert p.rewrite(RewriteRequest(text="another chunk")).text
    statuses = [e["status"] for e in fake.stats()["requests"]]
    assert statuses == [400, 500, 500, 200]


def test_probability_is_seeded(fake: FakeLLMProcess) -> None:
    def run() -> list[int]:
        fake.reset(keep_config=False)
        fake.configure(faults=[{"kind": "503", "probability": 0.5}], seed=11)
        p = provider(fake)
        out = []
        for i in range(16):
            try:
                p.rewrite(RewriteRequest(text=f"text {i}"))
                out.append(200)
            except ProviderError as err:
                out.append(err.status_code or 0)
        return out

    first = run()
    assert first == run() and 200 in first and 503 in first


def test_rate_limit_is_enforced(fake: FakeLLMProcess) -> None:
    fake.configure(rpm=5)
    p = provider(fake)
    for i in range(5):
        p.rewrite(RewriteRequest(text=f"request {i}"))
    err = fail(p, "one too many")
    assert err.kind is ErrorKind.RATE_LIMITED and err.retry_after is not None and 0 < err.retry_after <= 60
    stats = fake.stats()
    assert stats["by_status"] == {"200": 5, "429": 1} and stats["by_fault"] == {"rpm": 1}


def test_stats_log_has_hashes_not_text(fake: FakeLLMProcess) -> None:
    p = provider(fake)
    p.rewrite(RewriteRequest(text=TEXT))
    p.rewrite(RewriteRequest(text=TEXT))
    stats = fake.stats()
    assert stats["total"] == 2
    entries = stats["requests"]
    assert len(entries) == 2 and entries[0]["text_hash"] == entries[1]["text_hash"]
    assert entries[0]["t"] <= entries[1]["t"] <= time.monotonic()
    assert "utilizes" not in str(stats) and KEY not in str(stats) and KEY not in str(fake.config())


def test_models_endpoint_and_streaming_with_the_sdk(fake: FakeLLMProcess) -> None:
    client = openai.OpenAI(api_key=KEY, base_url=fake.url, max_retries=0)
    assert [m.id for m in client.models.list()] == ["fake-model"]
    stream = client.chat.completions.create(
        model="fake-model", messages=[{"role": "user", "content": "We utilize it."}], stream=True
    )
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == "We use it."


def test_many_concurrent_requests(fake: FakeLLMProcess) -> None:
    from concurrent.futures import ThreadPoolExecutor

    fake.configure(latency=0.2, jitter=0.02)
    p = provider(fake)
    started = time.monotonic()
    with ThreadPoolExecutor(64) as pool:
        results = list(pool.map(lambda i: p.rewrite(RewriteRequest(text=f"Chunk {i} utilizes tools.")),
                                range(128)))
    took = time.monotonic() - started
    assert [r.text for r in results] == [f"Chunk {i} uses tools." for i in range(128)]
    assert fake.stats()["max_in_flight"] >= 32
    assert took < 10, f"128 requests at 64-way concurrency took {took:.1f}s"
