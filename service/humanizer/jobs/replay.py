"""Driving a job again from what Redis holds: dead-letter replay and re-drive of missing chunks."""

from __future__ import annotations

from humanizer.jobs.deadletters import DeadLetters
from humanizer.jobs.dispatch import dispatch
from humanizer.jobs.models import JobStatus
from humanizer.jobs.store import JobStore


def redrive(store: JobStore, job_id: str, resume: bool = False) -> list[int]:
    """Send every chunk that has neither an output nor a recorded failure again, as a new round (it
    replaces what the job had outstanding in the scheduler); with none missing, send the merge. Reopens an
    ended job. A suspended job is left alone unless ``resume`` (``lifecycle.resume``). The one re-drive of
    the reconciler, dead-letter replay and the operator's resume."""
    meta = store.meta(job_id)
    if meta["status"] == JobStatus.SUSPENDED and not resume:
        return []
    total = int(meta["total"])
    have = store.output_indices(job_id) | set(store.failures(job_id))
    missing = [i for i in range(total) if i not in have]
    if JobStatus(meta["status"]).stops_work:
        store.reopen(job_id, phase="rewriting")
    round_ = store.next_round(job_id)
    dispatch(job_id, missing, round_, priority=meta.get("priority", "normal"), tenant=meta.get("tenant") or "default")
    return missing


def replay_dead_letter(store: JobStore, dead_letter_id: str) -> str:
    """Forget a chunk's failure and send it (and any other unfinished chunk of its job) again."""
    dlq = DeadLetters(store)
    entry = dlq.get(dead_letter_id)
    if entry is None:
        raise KeyError(f"no dead letter {dead_letter_id}")
    _forget(store, entry.job_id, entry.chunk_index)
    dlq.remove(dead_letter_id)
    redrive(store, entry.job_id)
    return entry.job_id


def replay_job(store: JobStore, job_id: str) -> list[int]:
    """Replay every dead letter of ``job_id`` at once."""
    dlq = DeadLetters(store)
    for index in list(store.failures(job_id)):
        _forget(store, job_id, index)
        dlq.remove(f"{job_id}:{index}")
    return redrive(store, job_id)


def _forget(store: JobStore, job_id: str, index: int) -> None:
    """Clear a chunk's failure (and its place in the fallback chain); if its original text was kept in the
    document, drop that too so it runs again."""
    failure = store.failures(job_id).get(index) or {}
    store.clear_failure(job_id, index)
    store.clear_route(job_id, index)
    if failure.get("kept_original"):
        store.drop_kept_original(job_id, index)
