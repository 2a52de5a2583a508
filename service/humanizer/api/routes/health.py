"""/healthz (the process is alive), /readyz (it can do work), /metrics (Prometheus)."""

from __future__ import annotations

import contextlib

import anyio
from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from humanizer import metrics
from humanizer.api import problems as P
from humanizer.api.deps import SettingsDep, ops_guard
from humanizer.api.problems import problem_response, problem_responses
from humanizer.api.readiness import ReadinessProbe
from humanizer.api.schemas import Liveness, Readiness
from humanizer.monitoring.gauges import refresh_queue_gauges

router = APIRouter(tags=["operations"], dependencies=[Depends(ops_guard)])


@router.get("/healthz", response_model=Liveness, summary="Liveness: the process answers",
            responses=problem_responses(401))
def healthz() -> Liveness:
    return Liveness(status="ok")


@router.get(
    "/readyz",
    response_model=Readiness,
    summary="Readiness: Redis answers and a provider is configured (workers answering a ping are reported, "
    "not required: with none, jobs queue)",
    responses=problem_responses(401, 503),
)
async def readyz(request: Request) -> Response:
    probe: ReadinessProbe = request.app.state.readiness
    result = await anyio.to_thread.run_sync(probe.check)
    if result.status == "ready":
        return JSONResponse(result.model_dump())
    failing = ", ".join(f"{name}: {c.message}" for name, c in result.checks.items() if c.required and not c.ok)
    return problem_response(P.NOT_READY, failing, instance="/readyz", checks=result.model_dump()["checks"])


@router.get(
    "/metrics",
    summary="Prometheus metrics (text exposition format)",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST.split(";")[0]: {"schema": {"type": "string"}}},
                     "description": "metrics"},
               **problem_responses(401)},
)
def prometheus_metrics(request: Request, settings: SettingsDep) -> Response:
    probe: ReadinessProbe = request.app.state.readiness
    with contextlib.suppress(Exception):  # Redis down: serve what we have; /readyz says why
        refresh_queue_gauges(probe.monitor.redis, prefix=settings.key_prefix)
    return Response(generate_latest(metrics.metrics_registry()), media_type=CONTENT_TYPE_LATEST)

