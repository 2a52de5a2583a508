"""The Python API kept from the product brief: ``OrchestrationService``.

>>> svc = OrchestrationService()
>>> job = svc.process_text_parallel(["First chunk.", "Second chunk."], "Make it sound natural.")
>>> svc.get_job_status(job["job_id"])["status"]
'PROGRESS'
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

from humanizer.config import Settings, get_settings
from humanizer.jobs import lifecycle
from humanizer.jobs.models import JobRequest, JobStatus, JobView
from humanizer.jobs.store import JobStore
from humanizer.jobs.submit import SubmittedJob, open_store, submit_job
from humanizer.providers import STYLES


class OrchestrationService:
    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or get_settings()
        self._store: JobStore | None = None

    @property
    def store(self) -> JobStore:
        if self._store is None:
            self._store = open_store(self.settings)
        return self._store

    # ---- submit -------------------------------------------------------------------------
    def process_text_parallel(
        self,
        chunks: Sequence[str],
        humanization_prompt: str | None = None,
        job_id: str | None = None,
        enable_verification: bool = True,
        **options: Any,
    ) -> dict[str, Any]:
        """Rewrite pre-split ``chunks`` in parallel; the result joins them with blank lines."""
        style, custom = _style_or_prompt(humanization_prompt)
        req = JobRequest(
            chunks=list(chunks), style=style, custom_prompt=custom, job_id=job_id,
            verify=enable_verification, **options,
        )
        return _submitted(submit_job(req, self.settings))

    def submit_document(
        self,
        text: str,
        style: str | None = None,
        custom_prompt: str | None = None,
        job_id: str | None = None,
        enable_verification: bool = True,
        **options: Any,
    ) -> dict[str, Any]:
        """Chunk ``text`` for you and rewrite it; the result keeps the document's structure."""
        req = JobRequest(
            text=text, style=style, custom_prompt=custom_prompt, job_id=job_id,
            verify=enable_verification, **options,
        )
        return _submitted(submit_job(req, self.settings))

    # ---- read / control -----------------------------------------------------------------
    def get_job_status(self, job_id: str, task_ids: Sequence[str] | None = None) -> dict[str, Any]:
        view = self.store.view(job_id)
        out: dict[str, Any] = {
            "job_id": job_id,
            "status": view.status.value,
            "phase": view.phase,
            "progress": view.progress.model_dump(),
            "retries": view.retries,
            "tokens": {"input": view.tokens_in, "output": view.tokens_out},
            "cost_usd": view.cost_usd,
            "targets": [t.model_dump() for t in view.targets] if view.targets else None,
            "dead_letters": view.dead_letters,
            "ai_tell_score": view.ai_tell_score.model_dump() if view.ai_tell_score else None,
            "second_pass": view.second_pass.model_dump() if view.second_pass else None,
            "error": view.error,
            "created_at": view.created_at,
            "started_at": view.started_at,
            "finished_at": view.finished_at,
        }
        if task_ids is not None:
            out["task_ids"] = list(task_ids)
        if view.status == JobStatus.SUCCESS:
            out["result"] = {"humanized_text": view.humanized_text, "verification": view.verification}
        return out

    def cancel_job(self, job_id: str) -> bool:
        """Stop a job: chunks not yet started are skipped. False if it had already ended."""
        return lifecycle.cancel(self.store, job_id)

    def view(self, job_id: str, with_result: bool = False) -> JobView:
        return self.store.view(job_id, with_result=with_result)

    def wait(
        self,
        job_id: str,
        timeout: float | None = None,
        poll: float = 0.25,
        on_update: Callable[[JobView], None] | None = None,
    ) -> JobView:
        """Wait until the job ends or ``timeout`` passes (never ``AsyncResult.get``): the end is heard at once
        (``JobStore.wait_ended``, one subscription for the whole wait); ``on_update`` gets the job's view every
        ``poll`` seconds meanwhile, and once more when it has ended."""

        def update() -> None:
            if on_update:
                on_update(self.store.view(job_id, with_result=False))

        status = self.store.wait_ended(
            job_id, timeout=math.inf if timeout is None else timeout, recheck=poll if on_update else 1.0,
            on_recheck=update if on_update else None,
        )
        if status is None:
            raise TimeoutError(f"job {job_id} still {self.store.status(job_id)} after {timeout}s")
        update()
        return self.store.view(job_id, with_result=True)


def _style_or_prompt(prompt: str | None) -> tuple[str | None, str | None]:
    if prompt is None or prompt in STYLES:
        return prompt, None
    return None, prompt


def _submitted(job: SubmittedJob) -> dict[str, Any]:
    return {
        "job_id": job.job_id,
        "task_ids": job.task_ids,
        "total_chunks": job.total_chunks,
        "estimated_completion_time": job.estimated_completion_time,
        "status": JobStatus.PENDING.value,
    }
