"""The rules of ``jobs/lifecycle.TRANSITIONS`` itself (the integration tier walks it on Redis)."""

from __future__ import annotations

import pytest

from humanizer.jobs.lifecycle import TRANSITIONS, Transition, allowed
from humanizer.jobs.models import TERMINAL, JobStatus

pytestmark = pytest.mark.unit


def test_an_ended_job_moves_only_by_a_redrive() -> None:
    for (state, transition), to in TRANSITIONS.items():
        if state in TERMINAL:
            assert transition is Transition.REDRIVE and to is JobStatus.PROGRESS, (state, transition, to)


def test_a_suspended_job_leaves_only_by_resume_cancel_or_fail() -> None:
    leaving = {t for (s, t) in TRANSITIONS if s is JobStatus.SUSPENDED}
    assert leaving == {Transition.RESUME, Transition.CANCEL, Transition.FAIL}


def test_every_state_is_reachable_and_every_transition_used() -> None:
    reached = {to for to in TRANSITIONS.values()}
    assert reached == set(JobStatus)
    assert {t for (_, t) in TRANSITIONS} == set(Transition)
    assert allowed(None, Transition.SUBMIT) is JobStatus.PENDING
    assert allowed(JobStatus.PROGRESS, Transition.START) is None  # never back to STARTED
