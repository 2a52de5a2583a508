"""The whole transition table of ``jobs/lifecycle.py``, walked on a real Redis: for every state and every
transition, a job in that state is moved by the transition's function, and the state it ends in — and
whether the transition was counted once or not at all — is what ``TRANSITIONS`` says."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from prometheus_client import REGISTRY

from humanizer.jobs import lifecycle
from humanizer.jobs.lifecycle import TRANSITIONS, Transition
from humanizer.jobs.models import JobStatus
from humanizer.jobs.replay import redrive
from humanizer.jobs.store import JobNotFound, JobStore
from humanizer.jobs.submit import open_store

pytestmark = pytest.mark.integration

MOVES: dict[Transition, Callable[[JobStore, str], Any]] = {
    Transition.START: lifecycle.start,
    Transition.PROGRESS: lambda store, job: store.save_output(job, 0, "rewritten", 1, 1),
    Transition.FINISH: lifecycle.finish,
    Transition.FAIL: lambda store, job: lifecycle.fail(store, job, "a test failure"),
    Transition.CANCEL: lifecycle.cancel,
    Transition.SUSPEND: lifecycle.suspend,
    Transition.RESUME: lifecycle.resume,
    Transition.REDRIVE: redrive,
}
COUNTED = {Transition.START, Transition.FINISH, Transition.FAIL, Transition.CANCEL, Transition.SUSPEND,
           Transition.RESUME}  # PROGRESS is the store's own move; REDRIVE is counted by the reconciler


def _count(transition: Transition) -> float:
    return REGISTRY.get_sample_value("humanizer_job_transitions_total", {"transition": transition.value}) or 0.0


def _job_in(store: JobStore, job_id: str, state: JobStatus) -> None:
    store.create(job_id, {"provider": "echo", "model": "", "priority": "normal"},
                 {0: {"text": "One.", "kind": "prose"}, 1: {"text": "Two.", "kind": "prose"}}, {})
    store.r.hset(store.key(job_id), "status", state.value)
    if not state.terminal and state is not JobStatus.SUSPENDED:
        store.touch(job_id)
    else:
        store.r.zrem(store.active_key, job_id)


@pytest.mark.parametrize("transition", [t for t in Transition if t is not Transition.SUBMIT])
def test_every_state_by_every_transition(make_stack: Any, transition: Transition) -> None:
    make_stack(workers=0)
    store = open_store()
    for state in JobStatus:
        job_id = f"t-{transition.value}-{state.value.lower()}"
        _job_in(store, job_id, state)
        before = _count(transition)
        MOVES[transition](store, job_id)
        after = store.status(job_id)
        expected = TRANSITIONS.get((state, transition))
        assert after == (expected or state), f"{state} --{transition}--> {after}, the table says {expected}"
        if transition in COUNTED:
            counted = _count(transition) - before
            assert counted == (1 if expected is not None else 0), f"{state} --{transition}: counted {counted}"
        if after is not None and after.stops_work:
            assert store.r.zscore(store.active_key, job_id) is None, f"{after} job left in the active set"


def test_submit_counts_once_and_starts_pending(make_stack: Any) -> None:
    make_stack(workers=0)
    from humanizer.jobs.models import JobRequest
    from humanizer.jobs.submit import submit_job

    before = _count(Transition.SUBMIT)
    job = submit_job(JobRequest(text="One paragraph to rewrite.", provider="echo", verify=False))
    assert open_store().status(job.job_id) == JobStatus.PENDING == TRANSITIONS[(None, Transition.SUBMIT)]
    assert _count(Transition.SUBMIT) - before == 1


def test_a_suspended_job_runs_no_work_until_resumed(make_stack: Any) -> None:
    """Suspended is its own state: it stops work (``stops_work``), cannot be suspended twice; resume sends
    exactly what is missing."""
    make_stack(workers=0)
    store = open_store()
    _job_in(store, "t-sus", JobStatus.PROGRESS)
    store.save_output("t-sus", 0, "done already", 1, 1)
    assert lifecycle.suspend(store, "t-sus") and lifecycle.stops_work(store.status("t-sus"))
    assert not lifecycle.suspend(store, "t-sus"), "suspended twice"
    assert lifecycle.resume(store, "t-sus") == [1]
    assert store.status("t-sus") == JobStatus.PROGRESS
    assert lifecycle.resume(store, "t-sus") is None, "resumed a job that was not suspended"


def _later(seconds: float, action: Callable[[], Any]) -> threading.Thread:
    thread = threading.Thread(target=lambda: (time.sleep(seconds), action()), daemon=True)
    thread.start()
    return thread


def test_a_waiter_hears_the_end_at_once_without_polling(make_stack: Any) -> None:
    """``wait_ended`` wakes on the status move's notice: with the re-read 30 s away and a 10 s timeout, only
    the notice can end the wait ~0.3 s after the job ends; each ended state notifies."""
    make_stack(workers=0)
    store = open_store()
    ends: list[tuple[JobStatus, Callable[[JobStore, str], Any]]] = [
        (JobStatus.SUCCESS, lifecycle.finish),
        (JobStatus.FAILURE, lambda s, j: lifecycle.fail(s, j, "x")),
        (JobStatus.CANCELLED, lifecycle.cancel),
    ]
    for status, end in ends:
        job_id = f"t-wait-{status.value.lower()}"
        _job_in(store, job_id, JobStatus.PROGRESS)
        ender = _later(0.3, lambda j=job_id, e=end: e(store, j))  # type: ignore[misc]
        t0 = time.monotonic()
        assert store.wait_ended(job_id, timeout=10, recheck=30) == status
        took = time.monotonic() - t0
        ender.join()
        assert 0.25 <= took < 3, f"{status}: the wait ended {took:.2f}s after it began (the job ended at 0.3 s)"


def test_a_wait_ends_at_its_timeout_on_a_running_job_and_at_once_on_an_ended_one(make_stack: Any) -> None:
    make_stack(workers=0)
    store = open_store()
    _job_in(store, "t-wait-running", JobStatus.PROGRESS)
    t0 = time.monotonic()
    assert store.wait_ended("t-wait-running", timeout=0.5) is None
    assert 0.45 <= time.monotonic() - t0 < 3
    _job_in(store, "t-wait-done", JobStatus.SUCCESS)
    assert store.wait_ended("t-wait-done", timeout=30) == JobStatus.SUCCESS
    with pytest.raises(JobNotFound):
        store.wait_ended("t-wait-missing", timeout=1)


def test_a_lost_notice_or_a_killed_connection_costs_one_recheck(make_stack: Any) -> None:
    """The end written without a notice (as after a fail-over that lost it) is found by the re-read; a
    listener whose connection is killed mid-wait resubscribes and still hears the next end."""
    make_stack(workers=0)
    store = open_store()
    _job_in(store, "t-wait-silent", JobStatus.PROGRESS)
    _later(0.3, lambda: store.r.hset(store.key("t-wait-silent"), "status", JobStatus.SUCCESS.value))
    t0 = time.monotonic()
    assert store.wait_ended("t-wait-silent", timeout=10, recheck=0.5) == JobStatus.SUCCESS
    assert time.monotonic() - t0 < 3

    _job_in(store, "t-wait-killed", JobStatus.PROGRESS)
    killed: list[int] = []
    _later(0.3, lambda: killed.append(int(store.r.client_kill_filter(_type="pubsub"))))
    ender = _later(1.0, lambda: lifecycle.finish(store, "t-wait-killed"))
    t0 = time.monotonic()
    assert store.wait_ended("t-wait-killed", timeout=10, recheck=30) == JobStatus.SUCCESS
    took = time.monotonic() - t0
    ender.join()
    assert killed and killed[0] >= 1, "no subscriber connection was killed while the wait listened"
    assert 0.9 <= took < 4, f"the wait ended {took:.2f}s after it began (the job ended at 1.0 s)"


def test_orchestration_wait_shows_progress_and_returns_when_the_job_ends(make_stack: Any) -> None:
    """``OrchestrationService.wait``: ``on_update`` gets a view every ``poll`` seconds while the job runs and
    the ended one last; the wait returns at the end (not at a poll) and times out on a job that runs on."""
    from humanizer.orchestration import OrchestrationService

    make_stack(workers=0)
    svc = OrchestrationService()
    _job_in(svc.store, "t-owait", JobStatus.PROGRESS)
    seen: list[JobStatus] = []
    ender = _later(0.6, lambda: lifecycle.finish(svc.store, "t-owait"))
    t0 = time.monotonic()
    view = svc.wait("t-owait", timeout=10, poll=0.1, on_update=lambda v: seen.append(v.status))
    took = time.monotonic() - t0
    ender.join()
    assert view.status is JobStatus.SUCCESS and 0.55 <= took < 3, took
    assert len(seen) >= 3 and set(seen[:-1]) == {JobStatus.PROGRESS} and seen[-1] is JobStatus.SUCCESS, seen
    _job_in(svc.store, "t-owait-runs", JobStatus.PROGRESS)
    with pytest.raises(TimeoutError, match="still PROGRESS"):
        svc.wait("t-owait-runs", timeout=0.5, poll=30)
