"""The HTTP API application: ``create_app()``."""

from __future__ import annotations

import copy
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import redis
from fastapi import FastAPI, Request
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse

from humanizer.api import problems as P
from humanizer.api.deps import TokenAuth
from humanizer.api.middleware import BodyLimitMiddleware, ObservabilityMiddleware
from humanizer.api.readiness import ReadinessProbe
from humanizer.api.routes import dead_letters, health, jobs
from humanizer.api.settings import ApiSettings, get_api_settings
from humanizer.config import Settings, get_settings
from humanizer.logging import get_logger
from humanizer.redis_client import RedisUnavailable

log = get_logger("humanizer.api")

DESCRIPTION = """Rewrite AI-written text at scale. Submit a document, follow its progress (poll or server-sent
events), read the result and its verification report. Every `/v1` route needs `Authorization: Bearer <token>`.
Errors are RFC 9457 problem details (`application/problem+json`)."""


def _package_version() -> str:
    try:
        return version("humanizer")
    except PackageNotFoundError:
        return "0.0.0"


def create_app(settings: Settings | None = None, api_settings: ApiSettings | None = None) -> FastAPI:
    """Build the app. Raises :class:`~humanizer.api.settings.ApiConfigError` when no token is configured
    and anonymous access was not allowed explicitly."""
    settings = settings or get_settings()
    api_settings = api_settings or get_api_settings()
    api_settings.check()

    from humanizer.broker import configure_app

    configure_app(settings)  # submissions and replays send their chords to this Redis

    app = FastAPI(
        title="Humanizer API",
        version=_package_version(),
        description=DESCRIPTION,
        openapi_tags=[
            {"name": "jobs", "description": "submit, follow, read and cancel jobs"},
            {"name": "dead letters", "description": "chunks that failed for good"},
            {"name": "operations", "description": "health, readiness, metrics (open unless configured)"},
        ],
    )
    app.state.settings = settings
    app.state.api_settings = api_settings
    app.state.auth = TokenAuth(api_settings)
    app.state.readiness = ReadinessProbe(
        settings, cache_seconds=api_settings.readiness_cache_seconds, ping_timeout=api_settings.celery_ping_timeout
    )
    if app.state.auth.anonymous:
        log.warning("api.anonymous_access", reason="HUMANIZER_API_ALLOW_ANONYMOUS=true and no tokens configured")

    P.install_problem_handlers(app)

    @app.exception_handler(RedisUnavailable)
    async def _redis_unavailable(request: Request, exc: RedisUnavailable) -> JSONResponse:
        return P.problem_response(P.REDIS_UNAVAILABLE, str(exc), instance=request.url.path,
                                  headers={"Retry-After": "5"})

    @app.exception_handler(redis.RedisError)
    async def _redis_error(request: Request, exc: redis.RedisError) -> JSONResponse:
        log.warning("api.redis_error", path=request.url.path, error_type=type(exc).__name__)
        return P.problem_response(
            P.REDIS_UNAVAILABLE, f"Redis at {settings.redis_dsn_redacted} failed ({type(exc).__name__})",
            instance=request.url.path, headers={"Retry-After": "5"},
        )

    app.include_router(jobs.router)
    app.include_router(dead_letters.router)
    app.include_router(health.router)

    app.add_middleware(BodyLimitMiddleware, max_bytes=api_settings.max_body_bytes)
    app.add_middleware(ObservabilityMiddleware)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, description=app.description,
                                 routes=app.routes, tags=app.openapi_tags)
            app.openapi_schema = _fallback_names(_problem_media_types(schema), settings)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app


def _fallback_names(schema: dict[str, Any], settings: Settings) -> dict[str, Any]:
    """``JobCreate.fallback`` as this server accepts it: its configured target names, each at most once
    (none configured: an empty list only), so the document is exact for the deployment it describes."""
    names = [t.name for t in settings.fallback_targets]
    prop = schema.get("components", {}).get("schemas", {}).get("JobCreate", {}).get("properties", {}).get("fallback")
    for variant in (prop or {}).get("anyOf", []):
        if variant.get("type") == "array":
            variant["uniqueItems"] = True
            if names:
                variant["items"] = {"type": "string", "enum": names}
            else:
                variant["maxItems"] = 0
    return schema


_HEADERS = {
    "401": {"WWW-Authenticate": {"description": "Bearer", "schema": {"type": "string"}}},
    "429": {"Retry-After": {"description": "seconds to wait", "schema": {"type": "string"}}},
    "503": {"Retry-After": {"description": "seconds to wait", "schema": {"type": "string"}}},
}


def _problem_media_types(schema: dict[str, Any]) -> dict[str, Any]:
    """Error responses are ``application/problem+json`` (FastAPI writes ``application/json``), and
    FastAPI's own validation-error schema is replaced by our Problem."""
    schema = copy.deepcopy(schema)
    problem_ref = {"$ref": "#/components/schemas/Problem"}
    for path_item in schema.get("paths", {}).values():
        for operation in path_item.values():
            responses = operation.get("responses", {})
            for code, response in responses.items():
                if code.isdigit() and int(code) >= 400:
                    response["content"] = {P.PROBLEM_MEDIA_TYPE: {"schema": problem_ref}}
                    if code in _HEADERS:
                        response.setdefault("headers", {}).update(_HEADERS[code])
                    if code == "422":
                        response["description"] = "Invalid request"
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components.pop("HTTPValidationError", None)
    components.pop("ValidationError", None)
    return schema
