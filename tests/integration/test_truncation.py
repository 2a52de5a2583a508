"""Truncated replies (finish_reason ``length``) are never merged as finished rewrites.

Real worker processes and Redis, the real openai SDK against the fake server: a cut-off reply is retried
once with a larger max_tokens sized from the chunk, then the chunk is split in two, then it is
dead-lettered as ``truncated`` with its original text kept in the document (and replayable).
"""

from __future__ import annotations

from typing import Any

import pytest

from humanizer.chunking import count_tokens
from humanizer.chunking.sentences import split_in_two
from humanizer.fake_llm.server import text_hash
from humanizer.jobs.deadletters import DeadLetters
from humanizer.jobs.models import JobStatus
from humanizer.jobs.replay import replay_dead_letter
from humanizer.orchestration import OrchestrationService
from humanizer.providers.offline import rewrite_text
from humanizer.providers.prompts import Style
from humanizer.providers.sizing import retry_max_tokens, size_max_tokens
from tests.integration.conftest import markers_in, numbered_document, wait_done

pytestmark = pytest.mark.integration

CAP = 1024  # OPENAI_MAX_TOKENS of the integration stack (the default)


def calls_by_text(fake_llm: Any) -> dict[str, list[tuple[str | None, int | None]]]:
    """text hash -> [(finish_reason, max_tokens), ...] in request order."""
    out: dict[str, list[tuple[str | None, int | None]]] = {}
    for r in fake_llm.stats()["requests"]:
        out.setdefault(r["text_hash"], []).append((r["finish_reason"], r["max_tokens"]))
    return out


def test_a_cut_off_reply_is_retried_with_a_larger_max_tokens(svc: OrchestrationService, fake_llm: Any) -> None:
    # replies of ~200 tokens, cut at the request's max_tokens as a real server does: the first call (sized
    # for a ~32-token chunk) is cut off, the retry has room
    fake_llm.configure(cut_at_max_tokens=True, pad_tokens=200)
    job_id = svc.submit_document(numbered_document(8, "TA"), chunk_max_tokens=40)["job_id"]
    view = wait_done(svc, job_id)
    assert view.status == JobStatus.SUCCESS, view.error
    assert markers_in(view.humanized_text or "", "TA") == [f"TA-{i:04d}" for i in range(8)]
    calls = calls_by_text(fake_llm)
    for chunk in svc.store.chunks(job_id).values():
        tokens = count_tokens(chunk["text"])
        first = size_max_tokens(tokens, CAP)
        assert calls[text_hash(chunk["text"])] == [("length", first), ("stop", retry_max_tokens(tokens, CAP, first))]
    outputs = svc.store.outputs(job_id)
    assert all(o.rstrip().endswith(".") and count_tokens(o) > 150 for o in outputs.values()), "a cut-off reply was kept"
    assert view.tokens_out >= 8 * (first + 200), "the truncated calls' tokens are the job's too"
    assert not DeadLetters(svc.store).list(job_id=job_id)


def test_truncated_twice_then_split_in_two(svc: OrchestrationService, fake_llm: Any) -> None:
    # only chunk 3 at full length is cut off; its halves (20 and 12 tokens) are not
    fake_llm.configure(faults=[{"kind": "length", "match": "TB-0003", "min_tokens": 25}])
    job_id = svc.submit_document(numbered_document(6, "TB"), chunk_max_tokens=40)["job_id"]
    view = wait_done(svc, job_id)
    assert view.status == JobStatus.SUCCESS, view.error
    chunk = svc.store.chunks(job_id)[3]["text"]
    left, gap, right = split_in_two(chunk) or ("", "", "")
    calls = calls_by_text(fake_llm)
    assert [f for f, _ in calls[text_hash(chunk)]] == ["length", "length"]
    assert calls[text_hash(left)] == [("stop", retry_max_tokens(count_tokens(left), CAP, 0))]
    assert [f for f, _ in calls[text_hash(right)]] == ["stop"]
    expected = rewrite_text(left, Style.NEUTRAL) + gap + rewrite_text(right, Style.NEUTRAL)
    assert svc.store.outputs(job_id)[3] == expected, "chunk 3 is its two rewritten halves, whole"
    assert markers_in(view.humanized_text or "", "TB") == [f"TB-{i:04d}" for i in range(6)]
    assert view.progress.failed == 0 and not DeadLetters(svc.store).list(job_id=job_id)
    assert view.verification is not None and view.verification["passed"], view.verification


def test_always_truncated_is_dead_lettered_with_its_original_kept(svc: OrchestrationService, fake_llm: Any) -> None:
    fake_llm.configure(faults=[{"kind": "length", "match": "TC-0005"}])
    job_id = svc.submit_document(numbered_document(8, "TC"), chunk_max_tokens=40)["job_id"]
    view = wait_done(svc, job_id)
    # the document is complete: chunk 5 as written, the others rewritten
    assert view.status == JobStatus.SUCCESS, view.error
    chunks = svc.store.chunks(job_id)
    text = view.humanized_text or ""
    assert chunks[5]["text"] in text and text.count("utilizes") == 1, "only chunk 5 keeps its original wording"
    assert markers_in(text, "TC") == [f"TC-{i:04d}" for i in range(8)]
    assert (view.progress.completed, view.progress.failed, view.dead_letters) == (7, 1, 1)
    calls = calls_by_text(fake_llm)
    assert len(calls[text_hash(chunks[5]["text"])]) == 2, "one call and one retry at full length"
    left, _, right = split_in_two(chunks[5]["text"]) or ("", "", "")
    assert [f for f, _ in calls[text_hash(left)]] == ["length"] and [f for f, _ in calls[text_hash(right)]] == ["stop"]

    letters = DeadLetters(svc.store).list(job_id=job_id)
    assert [(d.chunk_index, d.error_kind, d.kept_original) for d in letters] == [(5, "truncated", True)]
    assert "max_tokens" in letters[0].message and "utilizes" not in letters[0].message
    report = view.verification or {}
    assert report["failed_indices"] == [5] and not report["passed"]
    issue = report["failed_chunks"][0]["issues"][0]
    assert issue.startswith("original text kept: truncated:"), issue
    status = svc.get_job_status(job_id)
    assert status["dead_letters"] == 1 and status["result"]["humanized_text"] == text

    # fix the cause, replay: the chunk is rewritten and the document merged again
    fake_llm.configure(faults=[])
    replay_dead_letter(svc.store, letters[0].id)
    view = wait_done(svc, job_id)
    assert view.status == JobStatus.SUCCESS, view.error
    assert "utilizes" not in (view.humanized_text or "")
    assert (view.progress.completed, view.progress.failed) == (8, 0)
    assert markers_in(view.humanized_text or "", "TC") == [f"TC-{i:04d}" for i in range(8)]
    assert view.verification is not None and view.verification["passed"]
    assert not DeadLetters(svc.store).list(job_id=job_id)
