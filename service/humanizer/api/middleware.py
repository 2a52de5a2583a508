"""ASGI middleware: the request-body limit (enforced while reading) and per-request logs and metrics."""

from __future__ import annotations

import time

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from humanizer import metrics
from humanizer.api import problems as P
from humanizer.logging import get_logger

log = get_logger("humanizer.api")


class BodyTooLarge(HTTPException):
    """Raised from ``receive`` once the body passes the limit (an HTTPException, so FastAPI lets it through)."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the request body exceeds {limit:,} bytes (HUMANIZER_API_MAX_BODY_BYTES)")


class BodyLimitMiddleware:
    """413 when Content-Length says too much, and also when the bytes actually read pass the limit."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _header(scope, b"content-length")
        if declared is not None:
            try:
                too_big = int(declared) > self.max_bytes
            except ValueError:
                too_big = False
            if too_big:
                await self._reject(scope, send, BodyTooLarge(self.max_bytes).detail)
                return
        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLarge(self.max_bytes)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except BodyTooLarge as exc:
            if started:
                raise
            await self._reject(scope, send, exc.detail)

    @staticmethod
    async def _reject(scope: Scope, send: Send, detail: str) -> None:
        response = P.problem_response(P.BODY_TOO_LARGE, detail, instance=scope.get("path"),
                                      headers={"Connection": "close"})
        await response(scope, _drain, send)


async def _drain() -> Message:
    return {"type": "http.disconnect"}


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return str(value.decode("latin-1"))
    return None


class ObservabilityMiddleware:
    """One structured log line and the HTTP metrics per request. Logs the route template and job id only:
    never bodies, query strings or headers."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def capture(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, capture)
        finally:
            seconds = time.perf_counter() - started
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            method = scope.get("method", "GET")
            metrics.HTTP_REQUESTS.labels(method, template, str(status)).inc()
            metrics.HTTP_DURATION.labels(method, template).observe(seconds)
            if template not in ("/healthz", "/readyz", "/metrics"):
                job_id = (scope.get("path_params") or {}).get("job_id")
                log.info("api.request", method=method, route=template, status=status,
                         seconds=round(seconds, 4), **({"job_id": job_id} if job_id else {}))
