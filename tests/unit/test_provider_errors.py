"""ProviderError classification: SDK exceptions, status codes, Retry-After parsing, safe messages."""

from __future__ import annotations

import email.utils
import json
import pickle
import time

import httpx2
import openai
import pytest

from humanizer.providers.errors import ErrorKind, ProviderError, classify, parse_retry_after

pytestmark = pytest.mark.unit

SECRET_KEY = "sk-live-secret-abc123"
SECRET_TEXT = "Zanzibar quokka document sentence"


def _request() -> httpx2.Request:
    return httpx2.Request("POST", "http://fake/v1/chat/completions")


def _status_error(status: int, code: str | None = None, etype: str | None = None,
                  headers: dict[str, str] | None = None) -> openai.APIStatusError:
    """Build the SDK's exception the way the SDK does (via the client's status-error factory)."""
    body = {"error": {"message": f"Incorrect API key provided: {SECRET_KEY}; text: {SECRET_TEXT}",
                      "type": etype, "param": None, "code": code}}
    response = httpx2.Response(status, headers=headers or {}, content=json.dumps(body).encode(),
                               request=_request())
    client = openai.OpenAI(api_key="sk-test", base_url="http://fake/v1")
    return client._make_status_error(f"Error code: {status} - {body}", body=body, response=response)


@pytest.mark.parametrize(
    ("status", "code", "etype", "kind", "retryable", "stops"),
    [
        (429, "rate_limit_exceeded", "requests", ErrorKind.RATE_LIMITED, True, False),
        (429, "insufficient_quota", "insufficient_quota", ErrorKind.QUOTA_EXHAUSTED, False, True),
        (500, None, "server_error", ErrorKind.SERVER_ERROR, True, False),
        (502, None, None, ErrorKind.SERVER_ERROR, True, False),
        (503, None, "server_error", ErrorKind.SERVER_ERROR, True, False),
        (400, None, "invalid_request_error", ErrorKind.BAD_REQUEST, False, False),
        (400, "content_filter", "invalid_request_error", ErrorKind.CONTENT_POLICY, False, False),
        (400, "content_policy_violation", None, ErrorKind.CONTENT_POLICY, False, False),
        (401, "invalid_api_key", "invalid_request_error", ErrorKind.AUTH, False, True),
        (403, None, "permission_error", ErrorKind.PERMISSION, False, True),
        (404, "model_not_found", None, ErrorKind.NOT_FOUND, False, False),
        (409, None, None, ErrorKind.SERVER_ERROR, True, False),
        (422, None, None, ErrorKind.UNPROCESSABLE, False, False),
        (402, None, None, ErrorKind.QUOTA_EXHAUSTED, False, True),
        (408, None, None, ErrorKind.TIMEOUT, True, False),
        (413, None, None, ErrorKind.BAD_REQUEST, False, False),
    ],
)
def test_status_errors(status: int, code: str | None, etype: str | None, kind: ErrorKind,
                       retryable: bool, stops: bool) -> None:
    err = classify(_status_error(status, code, etype))
    assert err.kind is kind
    assert err.retryable is retryable
    assert err.stops_job is stops
    assert err.status_code == status
    assert SECRET_KEY not in str(err) and SECRET_TEXT not in str(err) and SECRET_KEY not in repr(err)


def test_sdk_exception_classes_match() -> None:
    assert isinstance(_status_error(429), openai.RateLimitError)
    assert isinstance(_status_error(401), openai.AuthenticationError)
    assert isinstance(_status_error(503), openai.InternalServerError)


def test_retry_after_from_429_headers() -> None:
    err = classify(_status_error(429, "rate_limit_exceeded", headers={"Retry-After": "2"}))
    assert err.retry_after == 2.0 and "2s" in str(err)
    err = classify(_status_error(429, headers={"retry-after-ms": "1500", "Retry-After": "9"}))
    assert err.retry_after == 1.5
    assert classify(_status_error(429)).retry_after is None
    # permanent errors never carry a retry hint
    assert classify(_status_error(400, headers={"Retry-After": "5"})).retry_after is None


def test_timeout_and_connection() -> None:
    err = classify(openai.APITimeoutError(request=_request()))
    assert err.kind is ErrorKind.TIMEOUT and err.retryable and not err.stops_job
    err = classify(openai.APIConnectionError(request=_request()))
    assert err.kind is ErrorKind.CONNECTION and err.retryable
    assert classify(TimeoutError()).kind is ErrorKind.TIMEOUT
    assert classify(ConnectionResetError()).kind is ErrorKind.CONNECTION


def test_other_exceptions() -> None:
    assert classify(openai.OpenAIError("The api_key client option must be set")).kind is ErrorKind.AUTH
    assert classify(ValueError(SECRET_TEXT)).kind is ErrorKind.INVALID_RESPONSE
    assert SECRET_TEXT not in str(classify(ValueError(SECRET_TEXT)))
    same = ProviderError(ErrorKind.BAD_REQUEST, "x")
    assert classify(same) is same


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"Retry-After": "3"}, 3.0),
        ({"retry-after": "0.5"}, 0.5),
        ({"retry-after-ms": "250"}, 0.25),
        ({"Retry-After": "-4"}, 0.0),
        ({"Retry-After": "soon"}, None),
        ({}, None),
    ],
)
def test_parse_retry_after(headers: dict[str, str], expected: float | None) -> None:
    assert parse_retry_after(headers) == expected


def test_parse_retry_after_http_date() -> None:
    now = time.time()
    date = email.utils.formatdate(now + 30, usegmt=True)
    value = parse_retry_after({"Retry-After": date}, now=now)
    assert value is not None and 28 <= value <= 31
    past = email.utils.formatdate(now - 30, usegmt=True)
    assert parse_retry_after({"Retry-After": past}, now=now) == 0.0


def test_provider_error_survives_pickle_and_json_args() -> None:
    err = ProviderError(ErrorKind.RATE_LIMITED, "rate limited", retry_after=2.0, status_code=429)
    back = pickle.loads(pickle.dumps(err))
    assert (back.kind, back.retry_after, back.status_code, str(back)) == (
        ErrorKind.RATE_LIMITED, 2.0, 429, "rate limited")
    rebuilt = ProviderError(*json.loads(json.dumps(err.args)))  # Celery's JSON exception encoding
    assert rebuilt.kind is ErrorKind.RATE_LIMITED and rebuilt.retryable


def test_kinds_and_flags() -> None:
    stops = {k for k in ErrorKind if ProviderError(k).stops_job}
    assert stops == {ErrorKind.AUTH, ErrorKind.PERMISSION, ErrorKind.QUOTA_EXHAUSTED}
    retryable = {k for k in ErrorKind if ProviderError(k).retryable}
    assert retryable == {ErrorKind.RATE_LIMITED, ErrorKind.SERVER_ERROR, ErrorKind.TIMEOUT,
                         ErrorKind.CONNECTION, ErrorKind.INVALID_RESPONSE}
    assert ProviderError.timeout("slow").kind is ErrorKind.TIMEOUT
    assert ProviderError("auth").kind is ErrorKind.AUTH


def test_missing_api_key_is_an_auth_error_on_both_paths(monkeypatch: pytest.MonkeyPatch) -> None:
    import asyncio

    from humanizer.providers import ErrorKind, ProviderError, RewriteRequest
    from humanizer.providers.openai_provider import OpenAIProvider

    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    provider = OpenAIProvider(api_key=None, base_url=None)
    for call in (lambda: provider.rewrite(RewriteRequest("hi")),
                 lambda: asyncio.run(provider.arewrite(RewriteRequest("hi")))):
        with pytest.raises(ProviderError) as info:
            call()
        assert info.value.kind == ErrorKind.AUTH and "OPENAI_API_KEY" in str(info.value)
