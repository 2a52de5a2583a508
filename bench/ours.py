"""Running one job through our pipeline and timing it: submit → the job's end, heard as the status move
publishes it (``JobStore.wait_ended``: no polling, which cost the client ~0.4 CPU-s a job at W = 128)."""

from __future__ import annotations

import cProfile
import io
import pstats
import time
from typing import Any


def run_job(
    chunks: list[str] | None = None,
    text: str | None = None,
    timeout: float = 600.0,
    profile: bool = False,
    **options: Any,
) -> dict[str, Any]:
    """Submit (pre-split ``chunks`` or a ``text``), wait until the job ends; raise unless it succeeded."""
    from humanizer.jobs.models import JobStatus
    from humanizer.orchestration import OrchestrationService

    svc = OrchestrationService()
    svc.store.r.ping()  # connect before the clock starts
    prof = cProfile.Profile() if profile else None
    t0 = time.perf_counter()
    if prof:
        prof.enable()
    if text is not None:
        job = svc.submit_document(text, enable_verification=False, **options)
    else:
        assert chunks is not None
        job = svc.process_text_parallel(chunks, None, enable_verification=False, **options)
    if prof:
        prof.disable()
    t_sent = time.perf_counter()
    if svc.store.wait_ended(job["job_id"], timeout=timeout) is None:
        raise TimeoutError(f"job {job['job_id']} still {svc.store.status(job['job_id'])} after {timeout}s")
    t1 = time.perf_counter()
    view = svc.store.view(job["job_id"], with_result=False)
    if view.status != JobStatus.SUCCESS:
        raise RuntimeError(f"job {job['job_id']} ended {view.status.value}: {view.error}")
    out: dict[str, Any] = {
        "job_id": job["job_id"],
        "chunks": job["total_chunks"],
        "makespan": t1 - t0,
        "publish_seconds": t_sent - t0,
        "retries": view.retries,
    }
    if prof:
        buf = io.StringIO()
        pstats.Stats(prof, stream=buf).sort_stats("cumulative").print_stats(25)
        out["profile"] = buf.getvalue()
    return out
