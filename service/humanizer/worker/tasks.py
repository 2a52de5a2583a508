"""The three Celery tasks, thin wrappers: ``humanize_batch`` (one batch of a job's chunks: the pipeline in
``worker/pipeline.py``), ``merge`` (sent by the batch that reports back last) and ``verify``; and the
worker's start-up and shutdown hooks. Factories live in ``worker/factories.py``.

- ``merge`` reads outputs by index from Redis, checks that all N chunks are there exactly once, and writes
  the document first-writer-wins (``jobs/assembly.py``).
- ``verify`` recomputes the same report from the same stored data.

Celery results are not stored (``ignore_result``): everything lives in the job record. The tasks are shared
tasks: they register on the app the process configured (``humanizer.broker.configure_app``).
"""

from __future__ import annotations

from typing import Any

from celery import Task, shared_task
from celery.signals import worker_process_shutdown, worker_ready

from humanizer import metrics
from humanizer.config import get_settings
from humanizer.jobs import assembly, dispatch, lifecycle
from humanizer.jobs.scheduler import SPARE_THREADS
from humanizer.logging import get_logger
from humanizer.worker import pipeline
from humanizer.worker.factories import get_store, provider_for

log = get_logger("humanizer.worker")


@shared_task(bind=True, name="humanizer.humanize_batch", acks_late=True, ignore_result=True)
def humanize_batch(self: Task, job_id: str, indices: list[int]) -> dict[str, Any]:
    wait = metrics.queue_wait_seconds(self.request)
    if wait is not None:
        metrics.observe_queue_wait(wait, "humanize")
    outcome = pipeline.run_batch(self, job_id, [int(i) for i in indices])  # a retry raises: not finished
    dispatch.batch_finished(job_id, str(self.request.id))  # the job's last batch sends its merge
    return outcome


@shared_task(bind=True, name="humanizer.merge", acks_late=True, ignore_result=True)
def merge(self: Task, job_id: str) -> dict[str, Any]:
    store = get_store()
    outcome = assembly.merge_job(store, job_id)  # a failed merge ends the job through lifecycle.fail
    log.info("job.merged", job_id=job_id, task_id=self.request.id, outcome=outcome)
    if outcome == "merged":
        if store.meta(job_id).get("verify") in ("1", "True", "true"):
            store.set_fields(job_id, phase="verifying")
            verify.apply_async(args=(job_id,), task_id=f"{job_id}:verify:{self.request.id}", priority=0)
        else:
            lifecycle.finish(store, job_id)
    return {"job_id": job_id, "outcome": outcome}


@shared_task(bind=True, name="humanizer.verify", acks_late=True, ignore_result=True)
def verify(self: Task, job_id: str) -> dict[str, Any]:
    store = get_store()
    report = assembly.verify_job(store, job_id)
    passed = bool(report.get("passed"))
    tells = report.get("tells") or {}
    scores: dict[str, float] = {}
    if tells:
        scores = {"tell_score_before": tells["before"]["score"], "tell_score_after": tells["after"]["score"]}
    log.info("job.verified", job_id=job_id, task_id=self.request.id, passed=passed, **scores)
    if lifecycle.finish(store, job_id, verification_passed=passed, **scores) and scores:
        metrics.observe_tell_scores(scores["tell_score_before"], scores["tell_score_after"])
    return {"job_id": job_id, "passed": passed}


@worker_ready.connect
def _on_worker_ready(sender: Any = None, **_: Any) -> None:
    port = metrics.start_worker_metrics_server()
    if port:
        log.info("worker.metrics", port=port)
    s = get_settings()
    # build the default provider now (imports the SDK), not inside the first chunk's time budget
    provider_for(s.provider, s.openai_model)
    from humanizer.worker.scheduling import SchedulingThread

    # the window counts the threads this worker really runs (--concurrency may differ from the setting),
    # less the spare ones `humanizer worker` adds to the threads pool (jobs/scheduler.SPARE_THREADS)
    controller = getattr(sender, "controller", None)
    threads = int(getattr(controller, "concurrency", None) or s.celery_worker_concurrency)
    pool = str(getattr(getattr(controller, "pool_cls", None), "__module__", ""))
    spare = SPARE_THREADS if pool == "celery.concurrency.thread" and threads > SPARE_THREADS else 0
    SchedulingThread(get_store(s), s, concurrency=threads - spare, spare=spare).start()
    if s.reconcile_interval_seconds > 0:
        from humanizer.jobs.reconcile import ReconcilerThread

        ReconcilerThread(get_store(s), s.reconcile_interval_seconds, s.stall_seconds).start()


@worker_process_shutdown.connect
def _on_worker_process_shutdown(pid: int | None = None, **_: Any) -> None:
    """Prefork children in Prometheus multiprocess mode: drop the dead child's live gauges."""
    if pid:
        metrics.mark_worker_process_dead(pid)
