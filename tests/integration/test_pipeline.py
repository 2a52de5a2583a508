"""The pipeline end to end: real Redis, real worker processes, the real openai SDK over HTTP."""

from __future__ import annotations

import threading
import time

import pytest

from humanizer.jobs.models import JobStatus
from humanizer.local.stack import LocalStack
from humanizer.monitoring.throughput import throughput
from humanizer.orchestration import OrchestrationService
from tests.integration.conftest import markers_in, numbered_document, poll_until, wait_done

pytestmark = pytest.mark.integration


def test_200_chunks_each_once_in_order(svc: OrchestrationService) -> None:
    doc = numbered_document(200, "A")
    before = throughput(svc.store.r, svc.store.prefix)["chunks_ok"]
    job = svc.submit_document(doc, style="casual", chunk_max_tokens=40)
    view = wait_done(svc, job["job_id"], timeout=120)
    assert view.status == JobStatus.SUCCESS, view.error
    assert view.progress.total == 200, f"expected 200 chunks, got {view.progress.total}"
    found = markers_in(view.humanized_text or "", "A")
    assert found == [f"A-{i:04d}" for i in range(200)], "chunks missing, doubled or out of order"
    assert view.humanized_text != doc, "the provider did not rewrite anything"
    assert view.tokens_in > 0 and view.tokens_out > 0
    # what `humanizer monitor` shows: the workers count what they finish (it stayed 0 before)
    assert throughput(svc.store.r, svc.store.prefix)["chunks_ok"] - before == 200


def test_identity_round_trip_is_byte_exact(svc: OrchestrationService, fake_llm: object) -> None:
    fake_llm.configure(mode="echo")  # type: ignore[attr-defined]
    doc = (
        "# Title\r\n\r\nFirst   paragraph with a [link](https://example.com/a?b=1) and `code`.\r\n\r\n"
        "```python\nprint('kept')\n```\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\n- one\n- two\n\n"
        "Last paragraph, \"quoted\", $x^2$ and trailing spaces.   \n\n\n"
    )
    job = svc.submit_document(doc, chunk_max_tokens=30, enable_verification=False)
    view = wait_done(svc, job["job_id"])
    assert view.status == JobStatus.SUCCESS, view.error
    assert view.humanized_text == doc


def test_three_jobs_at_once_do_not_mix(svc: OrchestrationService) -> None:
    tags = ["X", "Y", "Z"]
    jobs: dict[str, str] = {}

    def submit(tag: str) -> None:
        jobs[tag] = svc.submit_document(numbered_document(40, tag), chunk_max_tokens=40)["job_id"]

    threads = [threading.Thread(target=submit, args=(t,)) for t in tags]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for tag in tags:
        view = wait_done(svc, jobs[tag])
        assert view.status == JobStatus.SUCCESS, view.error
        text = view.humanized_text or ""
        assert markers_in(text, tag) == [f"{tag}-{i:04d}" for i in range(40)]
        for other in set(tags) - {tag}:
            assert not markers_in(text, other), f"job {tag} contains chunks of job {other}"


def test_pre_split_chunks_python_api(svc: OrchestrationService) -> None:
    chunks = [f"Chunk number {i} is here. Furthermore, it utilizes tools." for i in range(5)]
    job = svc.process_text_parallel(chunks, "Make it sound natural and friendly.")
    assert set(job) >= {"job_id", "task_ids", "estimated_completion_time"}
    assert job["task_ids"] == [f"{job['job_id']}:0", f"{job['job_id']}:4"]  # batches of 4 (the stack's size)
    assert job["estimated_completion_time"] > time.time() - 1
    wait_done(svc, job["job_id"])
    status = svc.get_job_status(job["job_id"], job["task_ids"])
    assert status["status"] == "SUCCESS"
    assert status["progress"]["percentage"] == 100.0
    parts = status["result"]["humanized_text"].split("\n\n")
    assert len(parts) == 5 and all(f"number {i}" in parts[i] for i in range(5))


def test_429_with_retry_after_then_success(svc: OrchestrationService, fake_llm: object) -> None:
    fake_llm.configure(faults=[{"kind": "429", "retry_after": 1.0, "times_per_text": 1}])  # type: ignore[attr-defined]
    job = svc.submit_document(numbered_document(6, "R"), chunk_max_tokens=40)
    view = wait_done(svc, job["job_id"])
    assert view.status == JobStatus.SUCCESS, view.error
    assert view.retries >= 6, f"expected a retry per chunk, saw {view.retries}"
    log = fake_llm.stats()["requests"]  # type: ignore[attr-defined]
    by_text: dict[str, list[dict[str, float]]] = {}
    for entry in log:
        by_text.setdefault(entry["text_hash"], []).append(entry)
    gaps = []
    for entries in by_text.values():
        entries.sort(key=lambda e: e["t"])
        assert entries[0]["status"] == 429 and entries[-1]["status"] == 200
        gaps.append(entries[1]["t"] - entries[0]["t"])
    assert min(gaps) >= 1.0, f"a retry came {min(gaps):.3f}s after a 429 with Retry-After: 1"


def test_401_fails_the_job_fast(svc: OrchestrationService, fake_llm: object) -> None:
    fake_llm.configure(api_key="sk-some-other-key")  # type: ignore[attr-defined]
    started = time.monotonic()
    job = svc.submit_document(numbered_document(60, "U"), chunk_max_tokens=40)
    view = wait_done(svc, job["job_id"], timeout=30)
    took = time.monotonic() - started
    assert view.status == JobStatus.FAILURE
    assert view.error and "auth" in view.error.lower(), view.error
    assert took < 10, f"auth failure took {took:.1f}s to stop the job"
    calls = fake_llm.stats()["total"]  # type: ignore[attr-defined]
    assert calls < 60, f"{calls} provider calls after an auth failure; the job should stop early"


def test_verification_catches_a_dropped_number(svc: OrchestrationService, fake_llm: object) -> None:
    fake_llm.configure(mode="drop-number")  # type: ignore[attr-defined]
    doc = "Revenue grew 42% to $3.2 million in 2023.\n\nThe team of 17 shipped 5 releases.\n"
    job = svc.submit_document(doc, chunk_max_tokens=40)
    view = wait_done(svc, job["job_id"])
    assert view.status == JobStatus.SUCCESS, view.error
    report = view.verification or {}
    assert report.get("passed") is False, "verification passed although the model dropped a number"
    assert "42" in str(report), "the report should name the dropped number"


def test_ai_tell_scores_before_and_after(svc: OrchestrationService, fake_llm: object) -> None:
    # every paragraph opens "It is important to note that the team utilizes robust tools. Furthermore, ...";
    # the fake model (the offline rewriter's edits) drops some of that, not all
    job = svc.submit_document(numbered_document(12, "AT"), chunk_max_tokens=40)
    view = wait_done(svc, job["job_id"])
    assert view.status == JobStatus.SUCCESS, view.error
    tells = (view.verification or {})["tells"]
    assert tells["chunks_scored"] == 12 and tells["before"]["flagged"], tells["before"]
    assert tells["after"]["score"] < tells["before"]["score"]
    before_ids = {h["id"] for h in tells["before"]["hits"]}
    assert {"important_to_note", "furthermore", "robust"} <= before_ids
    assert view.ai_tell_score is not None
    assert (view.ai_tell_score.before, view.ai_tell_score.after) == (tells["before"]["score"], tells["after"]["score"])
    status = svc.get_job_status(job["job_id"])
    assert status["ai_tell_score"] == {"before": tells["before"]["score"], "after": tells["after"]["score"]}
    assert "utilizes" not in str(tells) and "AT-0001" not in str(tells), "the report holds ids and scores, not text"
    print(f"\nFIGURE tells: before {tells['before']['score']} -> after {tells['after']['score']} (fake model)")


def test_cancel_stops_remaining_chunks(svc: OrchestrationService, fake_llm: object) -> None:
    fake_llm.configure(latency=0.3, jitter=0.0)  # type: ignore[attr-defined]
    job = svc.submit_document(numbered_document(150, "C"), chunk_max_tokens=40)
    job_id = job["job_id"]
    assert poll_until(lambda: svc.view(job_id).progress.completed >= 5, timeout=20)
    assert svc.cancel_job(job_id)
    time.sleep(1.0)  # in-flight calls finish
    calls_after_cancel = fake_llm.stats()["total"]  # type: ignore[attr-defined]
    time.sleep(1.5)
    calls_later = fake_llm.stats()["total"]  # type: ignore[attr-defined]
    view = svc.view(job_id)
    assert view.status == JobStatus.CANCELLED
    assert calls_later == calls_after_cancel, "provider calls continued after cancel"
    assert calls_later < 100, f"{calls_later} of 150 chunks were sent despite the cancel"


def test_no_document_text_or_key_in_logs(stack: LocalStack, svc: OrchestrationService) -> None:
    secret_sentence = "Zanzibar-quokka-7781 sentence that must never be logged"
    job = svc.submit_document(f"{secret_sentence}. It utilizes tools.\n", chunk_max_tokens=40)
    wait_done(svc, job["job_id"])
    assert stack.pool is not None
    logs = stack.pool.logs()
    assert job["job_id"] in logs, "worker logs should carry the job id"
    assert "Zanzibar-quokka" not in logs
    assert "sk-fake-integration" not in logs
