"""/v1/dead-letters: chunks that failed for good; list them and replay them."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query

from humanizer.api import problems as P
from humanizer.api.deps import DeadLettersDep, PrincipalDep, StoreDep
from humanizer.api.problems import ProblemError, problem_responses
from humanizer.api.routes.jobs import JOB_ID_PATTERN
from humanizer.api.schemas import DeadLetterPage, ReplayOut
from humanizer.jobs.models import JobStatus
from humanizer.jobs.replay import replay_dead_letter
from humanizer.logging import get_logger

router = APIRouter(prefix="/v1/dead-letters", tags=["dead letters"])
log = get_logger("humanizer.api")


@router.get("", response_model=DeadLetterPage, summary="Dead letters, newest first",
            responses=problem_responses(401, 422, 503))
def list_dead_letters(
    _: PrincipalDep,
    dlq: DeadLettersDep,
    store: StoreDep,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    job_id: Annotated[str | None, Query(pattern=JOB_ID_PATTERN, max_length=63, description="only this job")] = None,
) -> DeadLetterPage:
    entries = dlq.list(offset=offset, limit=limit, job_id=job_id)
    total = len(store.failures(job_id)) if job_id is not None else dlq.count()
    items = list(entries)
    return DeadLetterPage(items=items, offset=offset, limit=limit, total=total)


@router.post(
    "/{dead_letter_id}/replay",
    status_code=202,
    response_model=ReplayOut,
    summary="Send a dead-lettered chunk again (its job reopens and completes when the chunk succeeds)",
    responses=problem_responses(401, 404, 422, 503),
)
def replay(
    dead_letter_id: Annotated[str, Path(max_length=80, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}:\d{1,9}$",
                                        description="<job id>:<chunk index>")],
    principal: PrincipalDep,
    store: StoreDep,
) -> ReplayOut:
    try:
        job_id = replay_dead_letter(store, dead_letter_id)
    except KeyError:
        raise ProblemError(P.DEAD_LETTER_NOT_FOUND, f"no dead letter {dead_letter_id}") from None
    log.info("api.dead_letter_replayed", dead_letter_id=dead_letter_id, job_id=job_id,
             token_id=principal.token_id)
    return ReplayOut(dead_letter_id=dead_letter_id, job_id=job_id, status=store.status(job_id) or JobStatus.PROGRESS)
