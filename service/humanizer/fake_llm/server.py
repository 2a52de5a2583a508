"""A fake OpenAI-compatible chat-completions server (aiohttp) with fault injection, for tests and benches.

Endpoints:

- ``POST /v1/chat/completions`` — non-streaming JSON, or SSE when ``stream`` is true;
- ``GET /v1/models``;
- ``GET /_admin/stats``, ``GET /_admin/config``, ``POST /_admin/config`` (replace),
  ``PATCH /_admin/config`` (merge), ``POST /_admin/reset``, ``GET /_admin/health``.

The request log keeps a short hash of each user text and of the system message (and the style preset it
names, and whether the request is a second pass), never the text; nothing here logs text or keys.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import hashlib
import json
import math
import random
import re
import signal
import time
import uuid
from collections.abc import Callable
from typing import Any

from aiohttp import web
from pydantic import ValidationError

from humanizer.chunking.tokens import count_tokens
from humanizer.fake_llm.config import FakeLLMConfig, FaultRule
from humanizer.providers.offline import rewrite_text
from humanizer.providers.prompts import REVISION_OPEN, extract_style, extract_text, last_user_content

_NUMBER = re.compile(r"(?<![\w.,⟦])\d+(?:[.,]\d+)*%?")
_FILLER_WORDS = ("the", "team", "and", "work", "that", "with", "time", "data", "plan", "goal", "test", "note")


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:12]


def drop_first_number(text: str) -> str:
    """Remove the first number (not one inside a ⟦P…⟧ placeholder) — a fact a verifier must miss."""
    m = _NUMBER.search(text)
    if not m:
        return text
    before, after = text[: m.start()], text[m.end() :]
    if before.endswith(" ") and after.startswith(" "):
        after = after[1:]
    return before + after


@functools.lru_cache(maxsize=64)
def _system_hash(system: str) -> str:
    """The short hash of a request's system message(s): what tests compare, never the text itself."""
    return text_hash(system)


@functools.lru_cache(maxsize=256)
def _cached_tokens(content: str) -> int:
    return count_tokens(content)


def _pad(text: str, target: int, current: int) -> str:
    missing = target - current
    return text + _filler(missing) if missing > 0 else text


@functools.lru_cache(maxsize=4096)
def _filler(words: int) -> str:
    """A paragraph of ``words`` one-token filler words (replies differ in length only by their text)."""
    return "\n\n" + " ".join(_FILLER_WORDS[i % len(_FILLER_WORDS)] for i in range(words)).capitalize() + "."


def _cut_to_tokens(text: str, limit: int) -> str:
    """The longest prefix of ``text`` of at most ``limit`` tokens (a bisection over characters)."""
    lo, hi = 0, len(text)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if count_tokens(text[:mid]) <= limit:
            lo = mid
        else:
            hi = mid - 1
    return text[:lo]


def _error(status: int, message: str, etype: str | None, code: str | None, param: str | None = None,
           headers: dict[str, str] | None = None) -> web.Response:
    body = {"error": {"message": message, "type": etype, "param": param, "code": code}}
    return web.json_response(body, status=status, headers=headers)


async def _sleep_until(due: float) -> None:
    left = due - time.monotonic()
    if left > 0:
        await asyncio.sleep(left)


def _retry_headers(seconds: float) -> dict[str, str]:
    return {
        "Retry-After": str(max(0, math.ceil(seconds))),
        "retry-after-ms": str(round(seconds * 1000)),
    }


class State:
    """Everything mutable: the config, fault counters, the rate window and the statistics."""

    def __init__(self, config: FakeLLMConfig) -> None:
        self.initial = config.model_copy(deep=True)
        self.started = time.monotonic()
        self.apply(config)
        self.clear_stats()

    def apply(self, config: FakeLLMConfig) -> None:
        self.config = config
        self.rng = random.Random(config.seed)
        self.rule_seen: list[int] = [0] * len(config.faults)
        self.rule_text_seen: list[collections.Counter[str]] = [collections.Counter() for _ in config.faults]
        self.window: collections.deque[float] = collections.deque()

    def clear_stats(self) -> None:
        self.total = 0
        self.by_status: collections.Counter[int] = collections.Counter()
        self.by_fault: collections.Counter[str] = collections.Counter()
        self.log: collections.deque[dict[str, Any]] = collections.deque(maxlen=self.config.log_limit or None)
        self.in_flight = 0
        self.max_in_flight = 0

    def record(self, t: float, status: int, h: str, fault: str | None, max_tokens: int | None = None,
               finish: str | None = None, system_hash: str | None = None, style: str | None = None,
               revision: bool = False) -> None:
        self.total += 1
        self.by_status[status] += 1
        if fault:
            self.by_fault[fault] += 1
        if self.config.log_limit:
            self.log.append(
                {"t": t, "status": status, "text_hash": h, "fault": fault,
                 "duration": round(time.monotonic() - t, 6), "max_tokens": max_tokens, "finish_reason": finish,
                 "system_hash": system_hash, "style": style, "revision": revision}
            )

    def stats(self) -> dict[str, Any]:
        return {
            "total": self.total,
            "by_status": {str(k): v for k, v in sorted(self.by_status.items())},
            "by_fault": dict(self.by_fault),
            "in_flight": self.in_flight,
            "max_in_flight": self.max_in_flight,
            "uptime": round(time.monotonic() - self.started, 3),
            "requests": list(self.log),
        }

    def pick_fault(self, text: str, h: str) -> FaultRule | None:
        for i, rule in enumerate(self.config.faults):
            if rule.match is not None and rule.match not in text:
                continue
            if rule.first_n is not None and self.rule_seen[i] >= rule.first_n:
                continue
            if rule.times_per_text is not None and self.rule_text_seen[i][h] >= rule.times_per_text:
                continue
            if rule.min_tokens is not None and _cached_tokens(text) < rule.min_tokens:
                continue
            if rule.probability < 1.0 and self.rng.random() >= rule.probability:
                continue
            self.rule_seen[i] += 1
            self.rule_text_seen[i][h] += 1
            return rule
        return None

    def rate_limited(self, now: float) -> float | None:
        """Seconds until a slot frees up, or None if this request is admitted (and counted)."""
        rpm = self.config.rpm
        if not rpm:
            return None
        while self.window and now - self.window[0] >= 60.0:
            self.window.popleft()
        if len(self.window) >= rpm:
            return max(0.001, 60.0 - (now - self.window[0]))
        self.window.append(now)
        return None


def _fault_response(rule: FaultRule) -> web.Response | None:
    kind = rule.kind
    if kind == "429":
        ra = 1.0 if rule.retry_after is None else rule.retry_after
        return _error(429, "Rate limit reached for requests (injected).", "requests", "rate_limit_exceeded",
                      headers=_retry_headers(ra))
    if kind == "insufficient_quota":
        return _error(429, "You exceeded your current quota, please check your plan and billing details.",
                      "insufficient_quota", "insufficient_quota")
    if kind == "500":
        return _error(500, "The server had an error while processing your request.", "server_error", None)
    if kind == "502":
        return _error(502, "Bad gateway.", "server_error", None)
    if kind == "503":
        headers = _retry_headers(rule.retry_after) if rule.retry_after is not None else None
        return _error(503, "The engine is currently overloaded, please try again later.", "server_error", None,
                      headers=headers)
    if kind == "400":
        return _error(400, "Invalid request (injected fault).", "invalid_request_error", None)
    if kind == "401":
        return _error(401, "Incorrect API key provided.", "invalid_request_error", "invalid_api_key")
    if kind == "403":
        return _error(403, "You are not allowed to use this model.", "permission_error", "permission_denied")
    if kind == "404":
        return _error(404, "The model does not exist or you do not have access to it.",
                      "invalid_request_error", "model_not_found", param="model")
    if kind == "422":
        return _error(422, "Unprocessable request (injected fault).", "invalid_request_error", None)
    if kind == "context_length":
        return _error(400, "This model's maximum context length is exceeded (injected).", "invalid_request_error",
                      "context_length_exceeded", param="messages")
    if kind == "content_filter":
        return _error(400, "The response was filtered due to the prompt triggering the content management "
                      "policy.", "invalid_request_error", "content_filter", param="prompt")
    return None


class FakeLLM:
    def __init__(self, config: FakeLLMConfig) -> None:
        self.state = State(config)

    def app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.add_routes(
            [
                web.post("/v1/chat/completions", self.chat),
                web.post("/chat/completions", self.chat),
                web.get("/v1/models", self.models),
                web.get("/_admin/stats", self.admin_stats),
                web.get("/_admin/config", self.admin_get_config),
                web.post("/_admin/config", self.admin_replace_config),
                web.patch("/_admin/config", self.admin_patch_config),
                web.post("/_admin/reset", self.admin_reset),
                web.get("/_admin/health", self.admin_health),
            ]
        )
        return app

    # -- the API ------------------------------------------------------------------------------------
    async def models(self, request: web.Request) -> web.Response:
        denied = self._auth(request)
        if denied is not None:
            return denied
        model = self.state.config.model
        return web.json_response(
            {"object": "list", "data": [{"id": model, "object": "model", "created": 0, "owned_by": "fake-llm"}]}
        )

    def _auth(self, request: web.Request) -> web.Response | None:
        key = self.state.config.api_key
        if key is None:
            return None
        if request.headers.get("Authorization", "") != f"Bearer {key}":
            return _error(401, "Incorrect API key provided.", "invalid_request_error", "invalid_api_key")
        return None

    async def chat(self, request: web.Request) -> web.StreamResponse:
        st = self.state
        t = time.monotonic()
        st.in_flight += 1
        st.max_in_flight = max(st.max_in_flight, st.in_flight)
        try:
            return await self._chat(request, t)
        finally:
            st.in_flight -= 1

    async def _chat(self, request: web.Request, t: float) -> web.StreamResponse:
        st = self.state
        cfg = st.config
        try:
            body = await request.json()
            messages = body["messages"]
            if not isinstance(messages, list) or not messages:
                raise ValueError
        except Exception:
            st.record(t, 400, "", None)
            return _error(400, "The request body must be JSON with a non-empty 'messages' list.",
                          "invalid_request_error", None)
        user = last_user_content(messages)
        text = extract_text(user)
        h = text_hash(text)

        denied = self._auth(request)
        if denied is not None:
            st.record(t, 401, h, None)
            return denied
        wait = st.rate_limited(t)
        if wait is not None:
            st.record(t, 429, h, "rpm")
            headers = _retry_headers(math.ceil(wait))
            headers.update({"x-ratelimit-limit-requests": str(cfg.rpm), "x-ratelimit-remaining-requests": "0",
                            "x-ratelimit-reset-requests": f"{wait:.3f}s"})
            return _error(429, f"Rate limit reached: {cfg.rpm} requests per minute.", "requests",
                          "rate_limit_exceeded", headers=headers)

        rule = st.pick_fault(text, h)
        fault = rule.kind if rule else None
        if rule is not None:
            response = _fault_response(rule)
            if response is not None:
                st.record(t, response.status, h, fault)
                return response
            if rule.kind == "timeout":
                await asyncio.sleep(rule.hang)

        delay = cfg.latency + (st.rng.uniform(-cfg.jitter, cfg.jitter) if cfg.jitter else 0.0)
        # the latency is the time to the response: the reply is worked out inside it, as a real server's
        # would be, not added on top (with 128 calls in flight that was 5-15 ms on every call)
        due = time.monotonic() + delay
        content, finish, completion_tokens = self._reply(text, messages, cfg, fault)
        max_tokens = body.get("max_tokens")
        max_tokens = max_tokens if isinstance(max_tokens, int) and not isinstance(max_tokens, bool) else None
        if cfg.cut_at_max_tokens and max_tokens is not None and completion_tokens > max_tokens:
            content, finish, completion_tokens = _cut_to_tokens(content, max_tokens), "length", max_tokens
        model = str(body.get("model") or cfg.model)
        prompt_tokens = sum(
            _cached_tokens(m["content"]) if isinstance(m.get("content"), str) else 0
            for m in messages if isinstance(m, dict)
        )
        usage = {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                 "total_tokens": prompt_tokens + completion_tokens}
        system = "\n".join(
            m["content"] for m in messages
            if isinstance(m, dict) and m.get("role") == "system" and isinstance(m.get("content"), str)
        )
        seen = {"system_hash": _system_hash(system) if system else None, "style": extract_style(messages)[0].value}
        revision = REVISION_OPEN in user  # a second pass (the earlier rewrite and what to fix)
        cid = "chatcmpl-" + uuid.uuid4().hex[:24]
        created = int(time.time())
        headers = {"x-request-id": "req_" + uuid.uuid4().hex[:16]}
        if cfg.rpm:
            headers["x-ratelimit-limit-requests"] = str(cfg.rpm)
            headers["x-ratelimit-remaining-requests"] = str(max(0, cfg.rpm - len(st.window)))
        if body.get("stream"):
            include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            await _sleep_until(due)
            resp = await self._stream(request, cid, created, model, content, finish,
                                      usage if include_usage else None, headers)
            st.record(t, 200, h, fault, max_tokens, finish, **seen, revision=revision)
            return resp
        payload = json.dumps(
            {
                "id": cid,
                "object": "chat.completion",
                "created": created,
                "model": model,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": content, "refusal": None},
                             "logprobs": None, "finish_reason": finish}],
                "usage": usage,
                "system_fingerprint": "fp_fake_llm",
            }
        )
        await _sleep_until(due)
        st.record(t, 200, h, fault, max_tokens, finish, **seen, revision=revision)
        return web.Response(text=payload, content_type="application/json", headers=headers)

    def _reply(self, text: str, messages: list[Any], cfg: FakeLLMConfig, fault: str | None) -> tuple[str, str, int]:
        if fault == "empty":
            return "", "stop", 0
        if cfg.mode == "echo":
            content = text
        elif cfg.mode == "nonce":
            # every reply differs: duplicate executions of one chunk become distinguishable
            self._nonce = getattr(self, "_nonce", 0) + 1
            content = f"{text} [reply-{self._nonce}]"
        else:
            style, custom = extract_style(messages)
            source = drop_first_number(text) if cfg.mode == "drop-number" or fault == "drop_number" else text
            content = rewrite_text(source, style, custom)
        if fault == "length":
            content = content[: max(1, len(content) // 2)]
            return content, "length", count_tokens(content)
        tokens = count_tokens(content)
        if cfg.pad_tokens and tokens < cfg.pad_tokens:
            # each filler word is one token, the break and full stop add one: counted, not re-encoded
            # (re-encoding 500 tokens per reply was a fifth of this server's CPU in the benchmarks)
            return _pad(content, cfg.pad_tokens, tokens), "stop", cfg.pad_tokens + 1
        return content, "stop", tokens

    async def _stream(self, request: web.Request, cid: str, created: int, model: str, content: str,
                      finish: str, usage: dict[str, int] | None, headers: dict[str, str]) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache",
                                           **headers})
        await resp.prepare(request)

        def chunk(delta: dict[str, Any], finish_reason: str | None) -> bytes:
            data = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
                    "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}]}
            return f"data: {json.dumps(data)}\n\n".encode()

        await resp.write(chunk({"role": "assistant", "content": ""}, None))
        pieces = re.findall(r"\S*\s*", content) or [content]
        step = max(1, len(pieces) // 8)
        for i in range(0, len(pieces), step):
            await resp.write(chunk({"content": "".join(pieces[i : i + step])}, None))
        await resp.write(chunk({}, finish))
        if usage is not None:
            data = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
                    "choices": [], "usage": usage}
            await resp.write(f"data: {json.dumps(data)}\n\n".encode())
        await resp.write(b"data: [DONE]\n\n")
        await resp.write_eof()
        return resp

    # -- admin ----------------------------------------------------------------------------------------
    async def admin_stats(self, request: web.Request) -> web.Response:
        return web.json_response(self.state.stats())

    async def admin_health(self, request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    async def admin_get_config(self, request: web.Request) -> web.Response:
        return web.json_response(self.state.config.public())

    async def _set_config(self, request: web.Request, merge: bool) -> web.Response:
        try:
            data = await request.json()
            if not isinstance(data, dict):
                raise ValueError("config must be a JSON object")
            if merge:
                data = {**self.state.config.model_dump(), **data}
            config = FakeLLMConfig.model_validate(data)
        except (ValueError, ValidationError) as exc:
            return web.json_response({"error": {"message": str(exc), "type": "invalid_config"}}, status=400)
        self.state.apply(config)
        return web.json_response(config.public())

    async def admin_replace_config(self, request: web.Request) -> web.Response:
        return await self._set_config(request, merge=False)

    async def admin_patch_config(self, request: web.Request) -> web.Response:
        return await self._set_config(request, merge=True)

    async def admin_reset(self, request: web.Request) -> web.Response:
        """Clear statistics and fault counters; restore the start-up config unless ``keep_config``."""
        keep = False
        if request.can_read_body:
            try:
                keep = bool((await request.json()).get("keep_config", False))
            except Exception:
                keep = False
        self.state.apply(self.state.config if keep else self.state.initial.model_copy(deep=True))
        self.state.clear_stats()
        return web.json_response({"ok": True, "config": self.state.config.public()})


async def serve(
    host: str,
    port: int,
    config: FakeLLMConfig,
    ready: Callable[[str], None] | None = None,
    stop: asyncio.Event | None = None,
) -> None:
    """Serve until ``stop`` is set (or the task is cancelled); ``ready`` gets the base URL (…/v1)."""
    fake = FakeLLM(config)
    runner = web.AppRunner(fake.app(), access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, host, port, backlog=2048, reuse_address=True)
    await site.start()
    try:
        bound = runner.addresses[0]
        actual_host, actual_port = bound[0], bound[1]
        shown = f"[{actual_host}]" if ":" in str(actual_host) else actual_host
        if ready is not None:
            ready(f"http://{shown}:{actual_port}/v1")
        await (stop or asyncio.Event()).wait()
    finally:
        await runner.cleanup()


def run(host: str = "127.0.0.1", port: int = 8089, config: FakeLLMConfig | None = None,
        ready: Callable[[str], None] | None = None) -> None:
    """Run the server in the foreground until SIGINT/SIGTERM. Prints ``FAKE_LLM_URL=…`` when ready
    unless ``ready`` is given."""

    def announce(url: str) -> None:
        print(f"FAKE_LLM_URL={url}", flush=True)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):  # non-main thread / Windows
                loop.add_signal_handler(sig, stop.set)
        await serve(host, port, config or FakeLLMConfig(), ready or announce, stop)

    asyncio.run(main())
