"""Provider errors: one exception type with a kind, and ``classify`` to map anything raised to it.

Messages are built only from status codes, error codes/types and exception class names — never from the
server's free-text message (which can echo the prompt or part of the API key) and never from the request.
"""

from __future__ import annotations

import email.utils
import math
import re
import time
from collections.abc import Mapping
from enum import StrEnum
from typing import Any


class ErrorKind(StrEnum):
    RATE_LIMITED = "rate_limited"
    SERVER_ERROR = "server_error"
    TIMEOUT = "timeout"
    CONNECTION = "connection"
    BAD_REQUEST = "bad_request"
    AUTH = "auth"
    PERMISSION = "permission"
    NOT_FOUND = "not_found"
    UNPROCESSABLE = "unprocessable"
    QUOTA_EXHAUSTED = "quota_exhausted"
    CONTENT_POLICY = "content_policy"
    CONTEXT_LENGTH = "context_length"  # the prompt (or prompt + max_tokens) exceeds the model's context window
    INVALID_RESPONSE = "invalid_response"


RETRYABLE_KINDS = frozenset(
    {
        ErrorKind.RATE_LIMITED,
        ErrorKind.SERVER_ERROR,
        ErrorKind.TIMEOUT,
        ErrorKind.CONNECTION,
        ErrorKind.INVALID_RESPONSE,
    }
)
STOPS_JOB_KINDS = frozenset({ErrorKind.AUTH, ErrorKind.PERMISSION, ErrorKind.QUOTA_EXHAUSTED})

QUOTA_CODES = frozenset({"insufficient_quota", "billing_hard_limit_reached", "billing_not_active"})
CONTENT_POLICY_CODES = frozenset(
    {"content_filter", "content_policy_violation", "responsibleaipolicyviolation", "content_policy"}
)

CONTEXT_LENGTH_CODES = frozenset({"context_length_exceeded", "string_above_max_length"})

_SAFE_TOKEN = re.compile(r"[^A-Za-z0-9_.\-]")


def _safe(value: object, limit: int = 64) -> str | None:
    """An error code or type reduced to a short identifier (it cannot carry text or a key)."""
    if value is None:
        return None
    cleaned = _SAFE_TOKEN.sub("", str(value))[:limit]
    if not cleaned or cleaned.lower().startswith("sk-"):
        return None
    return cleaned


class ProviderError(Exception):
    """A failed provider call, classified.

    ``args`` is ``(kind, message, retry_after, status_code)`` — all JSON-serialisable, so the exception
    survives pickling and Celery's JSON exception encoding.
    """

    def __init__(
        self,
        kind: ErrorKind | str,
        message: str = "",
        retry_after: float | None = None,
        status_code: int | None = None,
    ) -> None:
        self.kind = ErrorKind(kind)
        self.message = message or self.kind.value.replace("_", " ")
        self.retry_after = retry_after
        self.status_code = status_code
        super().__init__(self.kind.value, self.message, retry_after, status_code)

    @property
    def retryable(self) -> bool:
        return self.kind in RETRYABLE_KINDS

    @property
    def stops_job(self) -> bool:
        return self.kind in STOPS_JOB_KINDS

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        return (
            f"ProviderError(kind={self.kind.value!r}, status_code={self.status_code!r}, "
            f"retry_after={self.retry_after!r}, message={self.message!r})"
        )

    # -- convenience constructors --------------------------------------------------------------
    @classmethod
    def timeout(cls, message: str = "request timed out") -> ProviderError:
        return cls(ErrorKind.TIMEOUT, message)

    @classmethod
    def invalid_response(cls, message: str = "invalid response") -> ProviderError:
        return cls(ErrorKind.INVALID_RESPONSE, message)

    @classmethod
    def bad_request(cls, message: str = "bad request") -> ProviderError:
        return cls(ErrorKind.BAD_REQUEST, message)

    @classmethod
    def auth(cls, message: str = "authentication failed") -> ProviderError:
        return cls(ErrorKind.AUTH, message)


# ------------------------------------------------------------------------------------------------
# Retry-After
# ------------------------------------------------------------------------------------------------


def _header(headers: Mapping[str, str] | Any, name: str) -> str | None:
    """A header value, looked up case-insensitively (works for plain dicts and httpx headers)."""
    try:
        value = headers.get(name)
        if value is None:
            value = next((v for k, v in headers.items() if str(k).lower() == name), None)
    except Exception:
        return None
    return str(value).strip() if value is not None else None


def parse_retry_after(headers: Mapping[str, str] | Any, now: float | None = None) -> float | None:
    """Seconds to wait, from ``retry-after-ms``, ``Retry-After`` (seconds or an HTTP date); else None."""
    if headers is None:
        return None
    ms = _header(headers, "retry-after-ms")
    if ms:
        try:
            value = float(ms) / 1000.0
            if math.isfinite(value):
                return max(0.0, value)
        except ValueError:
            pass
    raw = _header(headers, "retry-after")
    if not raw:
        return None
    try:
        value = float(raw)
        return max(0.0, value) if math.isfinite(value) else None
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


# ------------------------------------------------------------------------------------------------
# classify
# ------------------------------------------------------------------------------------------------


def _describe(what: str, status: int | None, code: str | None, etype: str | None) -> str:
    parts = [what]
    details = []
    if status is not None:
        details.append(f"HTTP {status}")
    if code:
        details.append(f"code={code}")
    if etype and etype != code:
        details.append(f"type={etype}")
    if details:
        parts.append("(" + ", ".join(details) + ")")
    return " ".join(parts)


def _status_kind(status: int) -> ErrorKind:
    if status == 401:
        return ErrorKind.AUTH
    if status == 402:
        return ErrorKind.QUOTA_EXHAUSTED
    if status == 403:
        return ErrorKind.PERMISSION
    if status == 404:
        return ErrorKind.NOT_FOUND
    if status == 408:
        return ErrorKind.TIMEOUT
    if status == 409:
        return ErrorKind.SERVER_ERROR  # lock/conflict on the provider's side; transient
    if status == 422:
        return ErrorKind.UNPROCESSABLE
    if status == 429:
        return ErrorKind.RATE_LIMITED
    if status >= 500:
        return ErrorKind.SERVER_ERROR
    return ErrorKind.BAD_REQUEST


def _from_status(status: int, code: str | None, etype: str | None, headers: Any) -> ProviderError:
    kind = _status_kind(status)
    markers = {m.lower() for m in (code, etype) if m}
    if markers & QUOTA_CODES and status in (400, 403, 429):
        kind = ErrorKind.QUOTA_EXHAUSTED
    elif markers & CONTENT_POLICY_CODES and status in (400, 403, 422):
        kind = ErrorKind.CONTENT_POLICY
    elif markers & CONTEXT_LENGTH_CODES and status in (400, 413, 422):
        kind = ErrorKind.CONTEXT_LENGTH
    retry_after = parse_retry_after(headers) if kind in RETRYABLE_KINDS else None
    text = {
        ErrorKind.RATE_LIMITED: "rate limited by the provider",
        ErrorKind.QUOTA_EXHAUSTED: "provider quota exhausted",
        ErrorKind.CONTENT_POLICY: "the provider's content policy rejected the request",
        ErrorKind.CONTEXT_LENGTH: "the request exceeds the model's context length",
        ErrorKind.AUTH: "authentication failed (check the API key)",
        ErrorKind.PERMISSION: "permission denied by the provider",
        ErrorKind.NOT_FOUND: "not found (check the model name and base URL)",
        ErrorKind.UNPROCESSABLE: "the provider could not process the request",
        ErrorKind.SERVER_ERROR: "provider server error",
        ErrorKind.TIMEOUT: "provider timed out",
        ErrorKind.BAD_REQUEST: "the provider rejected the request",
    }[kind]
    message = _describe(text, status, code, etype)
    if retry_after is not None:
        message += f"; retry after {retry_after:g}s"
    return ProviderError(kind, message, retry_after=retry_after, status_code=status)


def classify(exc: BaseException) -> ProviderError:
    """Map any exception raised while calling a provider to a ``ProviderError``."""
    if isinstance(exc, ProviderError):
        return exc
    try:
        import openai
    except ImportError:  # pragma: no cover - openai is a locked dependency
        openai = None  # type: ignore[assignment]

    if openai is not None:
        if isinstance(exc, openai.APITimeoutError):
            return ProviderError(ErrorKind.TIMEOUT, "provider request timed out")
        if isinstance(exc, openai.APIConnectionError):
            return ProviderError(ErrorKind.CONNECTION, "could not connect to the provider")
        if isinstance(exc, openai.APIStatusError):
            response = getattr(exc, "response", None)
            return _from_status(
                int(exc.status_code),
                _safe(getattr(exc, "code", None)),
                _safe(getattr(exc, "type", None)),
                getattr(response, "headers", None),
            )
        if isinstance(exc, openai.APIResponseValidationError):
            return ProviderError(
                ErrorKind.INVALID_RESPONSE, "the provider's response did not match the API schema",
                status_code=exc.status_code,
            )
        if isinstance(exc, openai.ContentFilterFinishReasonError):
            return ProviderError(ErrorKind.CONTENT_POLICY, "the provider's content filter stopped the reply")
        if isinstance(exc, openai.LengthFinishReasonError):
            return ProviderError(ErrorKind.INVALID_RESPONSE, "the reply hit the token limit")
        if isinstance(exc, openai.APIError):
            return ProviderError(ErrorKind.INVALID_RESPONSE, f"provider API error ({type(exc).__name__})")
        if isinstance(exc, openai.OpenAIError):
            # raised by the SDK before any request, e.g. no API key configured
            return ProviderError(ErrorKind.AUTH, f"provider client not usable ({type(exc).__name__})")

    if isinstance(exc, TimeoutError):
        return ProviderError(ErrorKind.TIMEOUT, f"provider request timed out ({type(exc).__name__})")
    if isinstance(exc, ConnectionError | OSError):
        return ProviderError(ErrorKind.CONNECTION, f"provider connection failed ({type(exc).__name__})")
    name = type(exc).__name__
    if "Timeout" in name:
        return ProviderError(ErrorKind.TIMEOUT, f"provider request timed out ({name})")
    if any(word in name for word in ("Connect", "Transport", "Network", "Protocol", "ReadError")):
        return ProviderError(ErrorKind.CONNECTION, f"provider connection failed ({name})")
    status = getattr(exc, "status_code", None) or getattr(exc, "status", None)
    if isinstance(status, int) and 400 <= status < 600:
        response = getattr(exc, "response", None)
        return _from_status(status, _safe(getattr(exc, "code", None)), None, getattr(response, "headers", None))
    return ProviderError(ErrorKind.INVALID_RESPONSE, f"unexpected provider failure ({name})")
