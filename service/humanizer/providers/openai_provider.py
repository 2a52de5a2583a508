"""The ``openai`` provider: the official SDK, any OpenAI-compatible server via ``base_url``.

Two paths over the same request and parsing code:

- ``arewrite`` (the workers' path): ``openai.AsyncOpenAI`` on the SDK's aiohttp transport, one client per
  event loop. httpx's async pool costs ~16 ms of CPU per request at high concurrency (measured on this machine kind).
- ``rewrite`` (health probes, scripts): ``openai.OpenAI``, one client per thread.

Both send the body through the client's generic ``post("/chat/completions", body=..., cast_to=dict)``
instead of ``chat.completions.create``: the body we build is already the wire format, and the SDK's
generic TypedDict transform of ``create``'s arguments measured ~1 ms of CPU per call (cProfile, W=64),
about as much as the rest of the call. Auth, ``base_url``, timeouts and the SDK's typed errors are the same.
The SDK's own retries default to 0: Celery owns retries, guided by the ``ProviderError`` that every failure
is mapped to.
"""

from __future__ import annotations

import asyncio
import os
import threading
from typing import Any

import openai

from humanizer.chunking.tokens import count_tokens
from humanizer.providers.base import RewriteRequest, RewriteResult
from humanizer.providers.errors import ErrorKind, ProviderError, classify
from humanizer.providers.prompts import TEXT_CLOSE, TEXT_OPEN, build_messages

#: Used when a local OpenAI-compatible server (vLLM, Ollama...) needs no key; the SDK insists on one.
NO_KEY_PLACEHOLDER = "sk-no-key-required"


class OpenAIProvider:
    name = "openai"

    def __init__(
        self,
        api_key: str | None = None,
        base_url: str | None = None,
        model: str = "gpt-4o-mini",
        temperature: float = 0.7,
        max_tokens: int = 1024,
        timeout: float = 60.0,
        max_retries: int = 0,
    ) -> None:
        key = api_key or os.environ.get("OPENAI_API_KEY") or None
        if key is None and base_url:
            key = NO_KEY_PLACEHOLDER
        self._api_key = key
        self.base_url = base_url or None
        self.model = model
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.timeout = timeout
        self.max_retries = max_retries
        self._local = threading.local()
        self._async_clients: dict[int, openai.AsyncOpenAI] = {}  # id(event loop) -> client

    def __repr__(self) -> str:  # no key
        return f"OpenAIProvider(base_url={self.base_url!r}, model={self.model!r}, timeout={self.timeout})"

    def _new(self, factory: Any, **extra: Any) -> Any:
        """A new SDK client (``openai.OpenAI`` or ``openai.AsyncOpenAI``) with this provider's settings."""
        if self._api_key is None:
            raise ProviderError(ErrorKind.AUTH, "no API key configured (set OPENAI_API_KEY)")
        try:
            return factory(
                api_key=self._api_key, base_url=self.base_url, timeout=self.timeout, max_retries=self.max_retries,
                **extra,
            )
        except Exception as exc:
            raise classify(exc) from None

    def _client(self) -> openai.OpenAI:
        client: openai.OpenAI | None = getattr(self._local, "client", None)
        if client is None:
            client = self._local.client = self._new(openai.OpenAI)
        return client

    def close(self) -> None:
        """Close this thread's sync client (other clients close when garbage-collected)."""
        client = getattr(self._local, "client", None)
        if client is not None:
            client.close()
            self._local.client = None

    def _async_client(self) -> openai.AsyncOpenAI:
        loop_id = id(asyncio.get_running_loop())
        client = self._async_clients.get(loop_id)
        if client is None:
            client = self._new(openai.AsyncOpenAI, http_client=openai.DefaultAioHttpClient(timeout=self.timeout))
            self._async_clients[loop_id] = client
        return client

    def _body(self, request: RewriteRequest) -> tuple[list[dict[str, str]], dict[str, Any]]:
        try:
            messages = build_messages(
                request.text, request.style, request.custom_prompt, request.context_before, request.context_after,
                request.previous, request.fixes,
            )
        except ValueError as exc:
            raise ProviderError(ErrorKind.BAD_REQUEST, str(exc)) from None
        body: dict[str, Any] = {
            "model": request.model or self.model,
            "messages": messages,
            "temperature": self.temperature if request.temperature is None else request.temperature,
            "max_tokens": request.max_tokens or self.max_tokens,
        }
        return messages, body

    def rewrite(self, request: RewriteRequest) -> RewriteResult:
        messages, body = self._body(request)
        client = self._client()
        try:
            completion = client.post("/chat/completions", body=body, cast_to=dict)
        except Exception as exc:
            # ``from None``: the SDK's exception message can contain the response body
            raise classify(exc) from None
        return self._result(request, messages, completion, body["model"])

    async def arewrite(self, request: RewriteRequest) -> RewriteResult:
        messages, body = self._body(request)
        client = self._async_client()
        try:
            completion = await client.post("/chat/completions", body=body, cast_to=dict)
        except Exception as exc:
            raise classify(exc) from None
        return self._result(request, messages, completion, body["model"])

    def _result(
        self, request: RewriteRequest, messages: list[dict[str, str]], completion: Any, model: str
    ) -> RewriteResult:
        if not isinstance(completion, dict):
            raise ProviderError(ErrorKind.INVALID_RESPONSE, "the provider's reply is not a JSON object")
        choices = completion.get("choices") or []
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            raise ProviderError(ErrorKind.INVALID_RESPONSE, "the provider returned no choices")
        choice = choices[0]
        finish_reason = choice.get("finish_reason") or "stop"
        if finish_reason == "content_filter":
            raise ProviderError(ErrorKind.CONTENT_POLICY, "the provider's content filter stopped the reply")
        raw_message = choice.get("message")
        message: dict[str, Any] = raw_message if isinstance(raw_message, dict) else {}
        content = message.get("content")
        if not isinstance(content, str) or not content.strip():
            if message.get("refusal"):
                raise ProviderError(ErrorKind.CONTENT_POLICY, "the model refused to rewrite the text")
            raise ProviderError(ErrorKind.INVALID_RESPONSE, "the provider returned empty content")
        text = restore_edges(request.text, clean_output(content))
        raw_usage = completion.get("usage")
        usage: dict[str, Any] = raw_usage if isinstance(raw_usage, dict) else {}
        prompt_tokens = usage.get("prompt_tokens")
        completion_tokens = usage.get("completion_tokens")
        if not isinstance(prompt_tokens, int):
            prompt_tokens = sum(count_tokens(m["content"]) for m in messages)
        if not isinstance(completion_tokens, int):
            completion_tokens = count_tokens(content)
        return RewriteResult(
            text=text,
            input_tokens=prompt_tokens,
            output_tokens=completion_tokens,
            model=str(completion.get("model") or model),
            provider=self.name,
            finish_reason=str(finish_reason),
        )


def clean_output(content: str) -> str:
    """Undo common wrapping by models: echoed ``<text>`` tags, or a ``` fence around the whole answer."""
    stripped = content.strip()
    if stripped.startswith(TEXT_OPEN) and stripped.endswith(TEXT_CLOSE):
        inner = stripped[len(TEXT_OPEN) : -len(TEXT_CLOSE)]
        return inner[1:] if inner.startswith("\n") else inner
    return content


def restore_edges(original: str, rewritten: str) -> str:
    """Give the rewrite the original's leading and trailing whitespace (models trim or add it)."""
    core = rewritten.strip()
    if not core:
        return rewritten
    lead = original[: len(original) - len(original.lstrip())]
    stripped_tail = original.rstrip()
    trail = original[len(stripped_tail) :]
    return f"{lead}{core}{trail}"
