"""The targeted second pass with real workers and Redis, the real openai SDK against the fake server.

The fake server's ``drop_number`` fault answers with a rewrite that misses the text's first number; with
``times_per_text=1`` only a text's first reply does, so the second pass (the same text, the earlier rewrite
and the fix in the prompt: the server logs it as a ``revision``) gets it right.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from humanizer.chunking import count_tokens, mask
from humanizer.fake_llm.server import text_hash
from humanizer.jobs.models import JobStatus
from humanizer.local.stack import LocalStack
from humanizer.orchestration import OrchestrationService
from humanizer.providers import RewriteRequest
from humanizer.providers.offline import rewrite_text
from humanizer.providers.prompts import Style
from humanizer.worker import second_pass
from tests.integration.conftest import wait_done

pytestmark = pytest.mark.integration

TOWNS = ("harbour", "meadow", "quarry", "orchard", "valley", "summit", "canyon", "island")


def document(tag: str, n: int = 4) -> str:
    """n paragraphs (one chunk each at 40 tokens), each with one number and a marker word."""
    return "\n\n".join(
        f"The {TOWNS[i]} office of {tag} hired {11 + i} people this spring. Everyone there "
        "reads the weekly notes and answers the questions in them." for i in range(n)
    ) + "\n"


def requests_by_text(fake_llm: Any) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for r in fake_llm.stats()["requests"]:
        out.setdefault(r["text_hash"], []).append(r)
    return out


def test_a_dropped_number_gets_exactly_one_extra_call_and_the_fix_is_kept(
    svc: OrchestrationService, fake_llm: Any
) -> None:
    fake_llm.configure(faults=[{"kind": "drop_number", "match": "quarry", "times_per_text": 1}])
    job_id = svc.submit_document(document("SPA"), chunk_max_tokens=40)["job_id"]
    view = wait_done(svc, job_id)
    assert view.status == JobStatus.SUCCESS, view.error
    chunks = svc.store.chunks(job_id)
    assert len(chunks) == 4 and "quarry" in chunks[2]["text"]
    calls = requests_by_text(fake_llm)
    hashes = {i: text_hash(c["text"]) for i, c in chunks.items()}
    # chunk 2: the faulty first reply, then one second pass; every other chunk: one call
    assert [(r["fault"], r["revision"]) for r in calls[hashes[2]]] == [("drop_number", False), (None, True)]
    for i in (0, 1, 3):
        assert [(r["fault"], r["revision"]) for r in calls[hashes[i]]] == [(None, False)], i
    assert fake_llm.stats()["total"] == 5
    # the fixed rewrite is the one stored and merged: the number is back, verification passes
    assert svc.store.outputs(job_id)[2] == rewrite_text(chunks[2]["text"], Style.NEUTRAL)
    assert "13 people" in (view.humanized_text or "")
    assert view.verification is not None and view.verification["passed"], view.verification
    sp = view.second_pass
    assert sp is not None and (sp.calls, sp.kept, sp.over_budget) == (1, 1, 0)
    assert sp.tokens_in > 0 and sp.tokens_out > 0
    assert view.tokens_in > sp.tokens_in, "the second pass's tokens are part of the job's"
    assert svc.get_job_status(job_id)["second_pass"] == sp.model_dump()
    assert svc.store.r.hgetall(svc.store.key(job_id, "second_pass")) == {"2": "kept_second"}


def test_the_chunk_budget_stops_it_and_a_second_pass_that_does_no_better_is_dropped(
    svc: OrchestrationService, fake_llm: Any
) -> None:
    # every reply drops a number: each chunk deserves a second pass, and no second pass helps. The default
    # budget (HUMANIZER_SECOND_PASS_MAX_CHUNK_RATIO 0.25 of 4 chunks) allows one.
    fake_llm.configure(mode="drop-number")
    job_id = svc.submit_document(document("SPB"), chunk_max_tokens=40)["job_id"]
    view = wait_done(svc, job_id)
    assert view.status == JobStatus.SUCCESS, view.error
    revisions = [r for r in fake_llm.stats()["requests"] if r["revision"]]
    assert len(revisions) == 1 and fake_llm.stats()["total"] == 5
    sp = view.second_pass
    assert sp is not None and (sp.calls, sp.kept, sp.over_budget) == (1, 0, 3)
    report = view.verification or {}
    assert not report["passed"] and report["chunks_failed"] == 4, "the model's dropped numbers are still reported"
    outcomes = Counter(svc.store.r.hvals(svc.store.key(job_id, "second_pass")))
    assert outcomes == {"kept_first": 1}


def test_a_rewrite_that_still_reads_machine_written_gets_its_second_pass(
    svc: OrchestrationService, fake_llm: Any
) -> None:
    # the fake server echoes: the rewrite keeps every tell of the original, so it scores above the threshold
    fake_llm.configure(mode="echo")
    text = ("It is important to note that we delve into a robust tapestry of tools. Furthermore, we leverage "
            "seamless synergy. Moreover, it is crucial to navigate the ever-evolving landscape of work.\n")
    job_id = svc.submit_document(text, chunk_max_tokens=200)["job_id"]
    view = wait_done(svc, job_id)
    assert view.status == JobStatus.SUCCESS, view.error
    assert [r["revision"] for r in fake_llm.stats()["requests"]] == [False, True]
    sp = view.second_pass
    assert sp is not None and (sp.calls, sp.kept) == (1, 0), "the echoed second reply is no better: the first kept"
    assert (view.verification or {})["tells"]["after"]["flagged"]


def test_no_second_pass_when_the_job_turns_it_off(svc: OrchestrationService, fake_llm: Any) -> None:
    fake_llm.configure(mode="drop-number")
    job_id = svc.submit_document(document("SPC"), chunk_max_tokens=40, second_pass=False)["job_id"]
    view = wait_done(svc, job_id)
    assert view.status == JobStatus.SUCCESS, view.error
    assert fake_llm.stats()["total"] == 4 and view.second_pass is None


def test_the_token_budget_stops_it(make_stack: Any, fake_llm: Any) -> None:
    # one chunk at a time (one worker, one call slot, batches of one), so each reservation sees the
    # settled count of the calls before it: a budget of 2.5 second passes allows two
    doc = document("SPD", n=6)
    probe = mask(doc.split("\n\n")[0])
    tokens = count_tokens(probe.text)
    request = RewriteRequest(text=probe.text, style="neutral", previous=probe.text, fixes=("x" * 150,))
    budget = int(2.5 * second_pass.estimate_tokens(request, tokens))
    stack: LocalStack = make_stack(
        workers=1, concurrency=1, HUMANIZER_BATCH_SIZE="1", HUMANIZER_WORKER_CALLS="1",
        HUMANIZER_SECOND_PASS_MAX_CHUNK_RATIO="1", HUMANIZER_SECOND_PASS_MAX_TOKENS=str(budget),
    )
    fake_llm.configure(mode="drop-number")
    svc = OrchestrationService()
    job_id = svc.submit_document(doc, chunk_max_tokens=40)["job_id"]
    view = wait_done(svc, job_id)
    assert view.status == JobStatus.SUCCESS, view.error
    sp = view.second_pass
    assert sp is not None and (sp.calls, sp.over_budget) == (2, 4), (sp, budget)
    assert sp.tokens_in + sp.tokens_out <= budget
    assert sum(r["revision"] for r in fake_llm.stats()["requests"]) == 2
    assert stack.pool is not None
