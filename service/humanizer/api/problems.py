"""RFC 9457 problem details (``application/problem+json``) for every error the API returns.

Each kind of error has a stable ``type`` URI (a ``tag:`` URI, which RFC 9457 suggests for type URIs
not meant to be dereferenced), a fixed ``title`` and a status; ``detail`` says what happened this time.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from humanizer.logging import get_logger

PROBLEM_MEDIA_TYPE = "application/problem+json"
TYPE_BASE = "tag:humanizer.dev,2025:problems/"

log = get_logger("humanizer.api")


@dataclass(frozen=True)
class Kind:
    slug: str
    status: int
    title: str

    @property
    def type(self) -> str:
        return TYPE_BASE + self.slug


BAD_REQUEST = Kind("bad-request", 400, "Bad request")
UNAUTHORIZED = Kind("unauthorized", 401, "Missing or invalid bearer token")
NOT_FOUND = Kind("not-found", 404, "Not found")
JOB_NOT_FOUND = Kind("job-not-found", 404, "Job not found")
DEAD_LETTER_NOT_FOUND = Kind("dead-letter-not-found", 404, "Dead letter not found")
METHOD_NOT_ALLOWED = Kind("method-not-allowed", 405, "Method not allowed")
JOB_NOT_FINISHED = Kind("job-not-finished", 409, "Job has not finished yet")
JOB_EXISTS = Kind("job-exists", 409, "A job with this id already exists")
IDEMPOTENCY_IN_PROGRESS = Kind("idempotency-key-in-progress", 409, "A request with this Idempotency-Key is in progress")
IDEMPOTENCY_MISMATCH = Kind("idempotency-key-reused", 422, "Idempotency-Key reused with a different request")
JOB_FAILED = Kind("job-failed", 409, "The job failed")
JOB_CANCELLED = Kind("job-cancelled", 409, "The job was cancelled")
BODY_TOO_LARGE = Kind("body-too-large", 413, "Request body too large")
UNSUPPORTED_MEDIA_TYPE = Kind("unsupported-media-type", 415, "Unsupported media type")
VALIDATION = Kind("validation-error", 422, "The request is not valid")
SUBMISSION_REJECTED = Kind("submission-rejected", 422, "The job cannot be accepted")
TOO_MANY_CHUNKS = Kind("too-many-chunks", 422, "Too many chunks")
TOO_MANY_ACTIVE_JOBS = Kind("too-many-active-jobs", 429, "Too many unfinished jobs for this token")
INTERNAL = Kind("internal-error", 500, "Internal server error")
REDIS_UNAVAILABLE = Kind("redis-unavailable", 503, "Job store unavailable")
NOT_READY = Kind("not-ready", 503, "Service not ready")

ALL_KINDS = [v for v in list(globals().values()) if isinstance(v, Kind)]
_BY_STATUS = {
    400: BAD_REQUEST, 401: UNAUTHORIZED, 404: NOT_FOUND, 405: METHOD_NOT_ALLOWED, 413: BODY_TOO_LARGE,
    415: UNSUPPORTED_MEDIA_TYPE, 422: VALIDATION, 500: INTERNAL, 503: NOT_READY,
}


class Problem(BaseModel):
    """An RFC 9457 problem details object; extension members may follow."""

    model_config = ConfigDict(extra="allow")

    type: str = Field(description="stable URI that identifies the kind of problem")
    title: str = Field(description="short summary of the kind of problem (the same for every occurrence)")
    status: int = Field(description="the HTTP status code")
    detail: str | None = Field(None, description="what happened this time")
    instance: str | None = Field(None, description="the request path")


class ProblemError(Exception):
    """Raise anywhere in a request to answer with a problem."""

    def __init__(
        self,
        kind: Kind,
        detail: str | None = None,
        *,
        headers: Mapping[str, str] | None = None,
        **extensions: Any,
    ) -> None:
        super().__init__(detail or kind.title)
        self.kind = kind
        self.detail = detail
        self.headers = dict(headers or {})
        self.extensions = extensions


def problem_response(
    kind: Kind,
    detail: str | None = None,
    *,
    instance: str | None = None,
    headers: Mapping[str, str] | None = None,
    status: int | None = None,
    **extensions: Any,
) -> JSONResponse:
    body: dict[str, Any] = {"type": kind.type, "title": kind.title, "status": status or kind.status}
    if detail:
        body["detail"] = detail
    if instance:
        body["instance"] = instance
    body.update(extensions)
    return JSONResponse(body, status_code=status or kind.status, headers=dict(headers or {}),
                        media_type=PROBLEM_MEDIA_TYPE)


def _safe_errors(errors: Any) -> list[dict[str, Any]]:
    """Validation errors without the offending input (it may be document text)."""
    out = []
    for err in errors:
        out.append({"loc": [str(p) for p in err.get("loc", ())], "msg": str(err.get("msg", "")),
                    "type": str(err.get("type", ""))})
    return out


def install_problem_handlers(app: FastAPI) -> None:
    @app.exception_handler(ProblemError)
    async def _problem(request: Request, exc: ProblemError) -> JSONResponse:
        return problem_response(exc.kind, exc.detail, instance=request.url.path, headers=exc.headers,
                                **exc.extensions)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = _safe_errors(exc.errors())
        first = errors[0] if errors else {"loc": [], "msg": "invalid request"}
        where = ".".join(p for p in first["loc"] if p != "body") or "request"
        return problem_response(VALIDATION, f"{where}: {first['msg']}", instance=request.url.path, errors=errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        kind = _BY_STATUS.get(exc.status_code, BAD_REQUEST if exc.status_code < 500 else INTERNAL)
        detail = exc.detail if isinstance(exc.detail, str) else None
        return problem_response(kind, detail, instance=request.url.path, headers=exc.headers,
                                status=exc.status_code)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.error("api.unhandled_error", path=request.url.path, error_type=type(exc).__name__)
        return problem_response(INTERNAL, "an unexpected error occurred; see the server log",
                                instance=request.url.path)


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries for these statuses, all ``application/problem+json``."""
    descriptions = {
        400: "Bad request", 401: "Missing or invalid bearer token", 404: "Not found", 409: "Conflict",
        413: "Request body too large", 422: "Invalid request", 429: "Too many unfinished jobs",
        500: "Internal error", 503: "Redis (or a worker) unavailable",
    }
    return {
        s: {"model": Problem, "description": descriptions.get(s, "Problem")} for s in statuses
    }
