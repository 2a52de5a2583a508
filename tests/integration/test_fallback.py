"""The fallback chain with two real fake servers, real Redis and real worker processes.

The session's fake server is the primary (``OPENAI_BASE_URL``); a second one, which wants its own key
(given by the name of the variable that holds it), is the fallback target ``backup``. Faults are injected
into the primary for real: 500s, a hang (timeouts), 401s, a context-length error. Every figure asserted
is printed as ``FIGURE`` (the report quotes them).
"""

from __future__ import annotations

import collections
import json
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from humanizer.api.app import create_app
from humanizer.api.routes.jobs import job_out
from humanizer.api.settings import ApiSettings
from humanizer.api.testing import free_port, serve_in_thread
from humanizer.config import get_settings
from humanizer.fake_llm.server import text_hash
from humanizer.fake_llm.testing import start_fake_llm_process
from humanizer.jobs.deadletters import DeadLetters
from humanizer.jobs.models import JobStatus, JobView
from humanizer.local.redis_server import RedisServer
from humanizer.orchestration import OrchestrationService
from humanizer.providers.breaker import CLOSED, HALF_OPEN, OPEN, BreakerConfig, CircuitBreaker
from humanizer.terminal import target_lines
from tests.integration.conftest import FAKE_KEY, markers_in, numbered_document, poll_until

pytestmark = pytest.mark.integration

BACKUP_KEY = "sk-backup-target"
KEY_ENV = "HZ_TEST_BACKUP_KEY"
PRICE = (1.0, 2.0)  # the backup's USD per million input / output tokens
PREFIX = "hzfb"


@pytest.fixture(scope="module")
def backup_llm() -> Iterator[Any]:
    with start_fake_llm_process(latency=0.02, api_key=BACKUP_KEY, model="backup-model") as server:
        yield server


def chain_env(backup: Any, **extra: str) -> dict[str, str]:
    targets = [{"name": "backup", "model": "backup-model", "base_url": backup.url, "api_key_env": KEY_ENV,
                "price_in": PRICE[0], "price_out": PRICE[1], "timeout": 5}]
    return {
        "HUMANIZER_FALLBACK_TARGETS": json.dumps(targets),
        KEY_ENV: BACKUP_KEY,
        "HUMANIZER_KEY_PREFIX": PREFIX,
        "HUMANIZER_FALLBACK_RETRIES": "1",
        "HUMANIZER_BREAKER_FAILURES": "3",
        "HUMANIZER_BREAKER_COOLDOWN_SECONDS": "2",
        **extra,
    }


def per_text(server: Any) -> collections.Counter[str]:
    return collections.Counter(r["text_hash"] for r in server.stats()["requests"])


def by_status(server: Any) -> dict[str, int]:
    return dict(server.stats()["by_status"])


def figures(view: JobView) -> dict[str, Any]:
    assert view.targets is not None, "a job with a fallback target has per-target figures"
    return {t.name: t for t in view.targets}


def assert_each_once_in_order(text: str, tag: str, n: int) -> None:
    found = markers_in(text, tag)
    assert found == [f"{tag}-{i:04d}" for i in range(n)], f"{len(found)} markers for {n} chunks"


def scrape_workers(port: int) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Sum of the samples of every worker metrics server on port .. port+3."""
    out: dict[tuple[str, frozenset[tuple[str, str]]], float] = collections.defaultdict(float)
    for candidate in range(port, port + 4):
        try:
            text = urllib.request.urlopen(f"http://127.0.0.1:{candidate}/metrics", timeout=2).read().decode()
        except OSError:
            continue
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                out[(s.name, frozenset(s.labels.items()))] += s.value
    return out


def sample(samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    """The sum over the series of ``name`` that carry ``labels`` (other labels, e.g. ``model``, any value)."""
    want = set(labels.items())
    return sum(v for (n, have), v in samples.items() if n == name and want <= have)


# ---- (a) 500s on the primary: the job finishes on the backup ---------------------------------------------
def test_500s_on_the_primary_finish_on_the_backup_each_chunk_once(
    make_stack: Any, fake_llm: Any, backup_llm: Any
) -> None:
    port = free_port()
    make_stack(workers=2, concurrency=4, **chain_env(backup_llm, MONITORING_PROMETHEUS_PORT=str(port)))
    backup_llm.reset()
    fake_llm.configure(faults=[{"kind": "500"}])
    svc = OrchestrationService()
    n = 40
    started = time.monotonic()
    job_id = svc.submit_document(numbered_document(n, "FA"), chunk_max_tokens=40)["job_id"]
    view = svc.wait(job_id, timeout=60, poll=0.1)
    seconds = time.monotonic() - started
    assert view.status == JobStatus.SUCCESS, view.error
    assert_each_once_in_order(view.humanized_text or "", "FA", n)

    chunks = svc.store.chunks(job_id)
    backup_calls, primary_calls = per_text(backup_llm), per_text(fake_llm)
    assert by_status(backup_llm) == {"200": n}, "the backup answered each chunk once, and nothing else"
    assert all(backup_calls[text_hash(c["text"])] == 1 for c in chunks.values())
    assert set(by_status(fake_llm)) == {"500"}
    assert svc.store.served(job_id) == {i: "backup" for i in range(n)}

    f = figures(view)
    primary, backup = f["primary"], f["backup"]
    assert (primary.chunks, primary.calls, primary.errors) == (0, fake_llm.stats()["total"],
                                                               {"server_error": fake_llm.stats()["total"]})
    assert primary.tokens_in == primary.tokens_out == 0 and primary.cost_usd == 0
    assert primary.fallovers + primary.skipped >= n, "every chunk left the primary (fell over or skipped it)"
    assert (backup.chunks, backup.calls, backup.errors) == (n, n, {})
    assert (backup.model, backup.tokens_in, backup.tokens_out) == ("backup-model", view.tokens_in, view.tokens_out)
    expected_cost = round((view.tokens_in * PRICE[0] + view.tokens_out * PRICE[1]) / 1e6, 6)
    assert backup.cost_usd == pytest.approx(expected_cost) and view.cost_usd == pytest.approx(expected_cost)
    assert backup.latency_seconds is not None and 0.015 < backup.latency_seconds < 2.0
    # the primary's breaker opened on the run of 500s: most chunks never paid a second 500
    assert primary.calls < 2 * n, f"{primary.calls} calls to a failing primary for {n} chunks"
    assert max(primary_calls.values()) <= 2, "at most the first call and one retry per chunk on the primary"

    # the same figures in the verification report, the API result and the CLI summary
    report_targets = {t["name"]: t for t in (view.verification or {}).get("targets") or []}
    assert report_targets["backup"]["chunks"] == n and report_targets["primary"]["calls"] == primary.calls
    settings = get_settings()
    app = create_app(settings, ApiSettings(tokens="tok-fb"))
    with serve_in_thread(app) as url:
        body = httpx2.get(f"{url}/v1/jobs/{job_id}", headers={"Authorization": "Bearer tok-fb"}).json()
    api = {t["name"]: t for t in body["targets"]}
    assert api["backup"]["chunks"] == n and api["primary"]["errors"] == {"server_error": primary.calls}
    assert body["cost_usd"] == pytest.approx(expected_cost)
    assert job_out(view).targets == view.targets
    lines = target_lines(view)
    assert len(lines) == 2 and lines[1].startswith(f"  target backup (openai/backup-model): {n} chunks, {n} calls")
    assert backup_llm.url not in " ".join(lines) and BACKUP_KEY not in json.dumps(body)

    # Prometheus, per target (the label is the target's configured name)
    samples = scrape_workers(port)
    assert sample(samples, "humanizer_provider_requests_total", provider="openai", status_code="200",
                  target="backup") == n
    assert sample(samples, "humanizer_provider_requests_total", provider="openai", status_code="500",
                  target="primary") == primary.calls
    assert sample(samples, "humanizer_tokens_total", provider="openai", direction="input",
                  target="backup") == view.tokens_in
    assert sample(samples, "humanizer_estimated_cost_usd_total", provider="openai",
                  target="backup") == pytest.approx(expected_cost)
    assert sample(samples, "humanizer_circuit_breaker_transitions_total", target="primary", state="open") >= 1
    print(f"\nFIGURE fallback-500: {n} chunks in {seconds:.2f}s; primary {primary.calls} calls (all 500, "
          f"{primary.fallovers} fell over, {primary.skipped} skipped by the open breaker); backup {backup.calls} "
          f"calls, {backup.chunks} chunks, {backup.tokens_in}/{backup.tokens_out} tokens, ${backup.cost_usd:.6f}, "
          f"{backup.latency_seconds:.3f} s/call")


def test_without_a_breaker_each_chunk_falls_over_after_its_retries(
    make_stack: Any, fake_llm: Any, backup_llm: Any
) -> None:
    """The fall-over itself, breaker off: a chunk calls the primary once and retries once
    (HUMANIZER_FALLBACK_RETRIES=1), then moves to the backup in the same attempt, and stays there."""
    make_stack(workers=1, concurrency=4, **chain_env(backup_llm, HUMANIZER_BREAKER_FAILURES="0"))
    backup_llm.reset()
    fake_llm.configure(faults=[{"kind": "503"}])
    svc = OrchestrationService()
    n = 12
    job_id = svc.submit_document(numbered_document(n, "FR"), chunk_max_tokens=40)["job_id"]
    view = svc.wait(job_id, timeout=60, poll=0.1)
    assert view.status == JobStatus.SUCCESS, view.error
    assert_each_once_in_order(view.humanized_text or "", "FR", n)
    texts = [text_hash(c["text"]) for c in svc.store.chunks(job_id).values()]
    primary_calls, backup_calls = per_text(fake_llm), per_text(backup_llm)
    assert [primary_calls[h] for h in texts] == [2] * n, "one call and one retry on the primary per chunk"
    assert [backup_calls[h] for h in texts] == [1] * n, "then exactly one call on the backup"
    f = figures(view)
    assert (f["primary"].fallovers, f["primary"].skipped, f["primary"].errors) == (n, 0, {"server_error": 2 * n})
    assert f["backup"].chunks == n and view.retries == n
    assert svc.store.routes(job_id, range(n)) == {i: (1, 1) for i in range(n)}, "moved at attempt 2, to target 1"
    print(f"\nFIGURE fallback-retries: {n} chunks, {2 * n} primary calls (503), {n} backup calls, "
          f"{view.retries} retries")


# ---- (b) a hanging primary: the breaker opens, later chunks skip it, a probe closes it ---------------------
def test_a_hanging_primary_opens_its_breaker_and_a_probe_closes_it(
    make_stack: Any, fake_llm: Any, backup_llm: Any
) -> None:
    # one worker process with 4 calls in flight, so the chunks come in waves and the later ones can skip
    stack = make_stack(workers=1, concurrency=2, OPENAI_TIMEOUT="1", HUMANIZER_WORKER_CALLS="4",
                       **chain_env(backup_llm))
    backup_llm.reset()
    fake_llm.configure(faults=[{"kind": "timeout", "hang": 4}])  # the client gives up after 1 s
    svc = OrchestrationService()
    key = f"{PREFIX}:breaker:primary:openai:fake-model"
    r = redis.Redis.from_url(get_settings().redis_dsn, decode_responses=True)
    n = 60
    seen: list[tuple[str, str]] = []  # (breaker state, job status) while the job runs
    stop = threading.Event()

    def watch(job: str) -> None:
        while not stop.is_set():
            seen.append((r.hget(key, "state") or CLOSED, svc.store.status(job) or ""))
            time.sleep(0.02)

    started = time.monotonic()
    job_id = svc.submit_document(numbered_document(n, "FB"), chunk_max_tokens=40)["job_id"]
    watcher = threading.Thread(target=watch, args=(job_id,), daemon=True)
    watcher.start()
    try:
        view = svc.wait(job_id, timeout=60, poll=0.1)
    finally:
        stop.set()
        watcher.join(5)
    seconds = time.monotonic() - started
    assert view.status == JobStatus.SUCCESS, view.error
    assert_each_once_in_order(view.humanized_text or "", "FB", n)
    running = {"PENDING", "STARTED", "PROGRESS"}
    assert any(st == OPEN and job in running for st, job in seen), f"breaker never seen open mid-job: {set(seen)}"

    f = figures(view)
    primary, backup = f["primary"], f["backup"]
    hung = primary.calls
    assert primary.errors == {"timeout": hung}
    # the hung requests end on the server 4 s after they came (long after the client gave up): then the
    # server's count of them must be ours
    assert poll_until(lambda: fake_llm.stats()["in_flight"] == 0, timeout=15)
    assert fake_llm.stats()["by_fault"] == {"timeout": hung}
    # without the breaker every chunk would pay its 1 s timeout twice (a call and a retry): 60 x 2 / 4
    # in flight = 30 s; with it, the first wave of 4 (plus at most a few probes) pays, the rest skip it
    assert hung <= 4 + 2, f"{hung} calls reached the hanging primary for {n} chunks"
    assert primary.skipped >= n - hung, "the later chunks skipped the open breaker instead of timing out"
    assert (backup.chunks, backup.calls) == (n, n) and by_status(backup_llm) == {"200": n}
    assert seconds < 12, f"the job took {seconds:.1f}s: the dead target cost the chunks their timeouts"

    # the target recovers; after the cool-down the next chunk is the half-open probe, its success closes it
    fake_llm.configure(faults=[])
    fake_llm.reset(keep_config=True)
    backup_llm.reset()
    time.sleep(2.2)
    assert r.hget(key, "state") in (OPEN, HALF_OPEN), "still open before anything probed it"
    m = 20
    job2 = svc.submit_document(numbered_document(m, "FC"), chunk_max_tokens=40)["job_id"]
    view2 = svc.wait(job2, timeout=60, poll=0.1)
    assert view2.status == JobStatus.SUCCESS, view2.error
    assert_each_once_in_order(view2.humanized_text or "", "FC", m)
    assert r.hget(key, "state") == CLOSED and r.hget(key, "failures") == "0"
    f2 = figures(view2)
    # while the probe was out (one call of ~20 ms) the chunks beside it went to the backup; then the primary
    served2 = svc.store.served(job2)
    assert f2["primary"].chunks >= m // 2 and f2["primary"].errors == {}
    assert [served2[i] for i in range(m - 4, m)] == ["primary"] * 4, "the last batch is back on the primary"
    assert f2["primary"].chunks + f2["backup"].chunks == m
    assert by_status(fake_llm) == {"200": f2["primary"].calls}
    logs = stack.pool.logs()
    assert "breaker.transition" in logs, "the breaker's transitions are logged (target and states only)"
    assert BACKUP_KEY not in logs and FAKE_KEY not in logs, "no key in the workers' logs"
    print(f"\nFIGURE fallback-hang: {n} chunks in {seconds:.2f}s; {hung} calls hung on the primary (1 s timeout), "
          f"{primary.skipped} skipped it while its breaker was open, backup served {backup.chunks}; after recovery "
          f"the probe closed it: {f2['primary'].chunks}/{m} chunks back on the primary, {f2['backup'].chunks} on the "
          f"backup meanwhile")


# ---- (c) 401 on the primary: no fall-over unless the job asks for it; context length falls over at once ---
def test_auth_errors_do_not_fall_over_unless_configured(make_stack: Any, fake_llm: Any, backup_llm: Any) -> None:
    make_stack(workers=1, concurrency=4, **chain_env(backup_llm))
    backup_llm.reset()
    fake_llm.configure(faults=[{"kind": "401"}])
    svc = OrchestrationService()
    job_id = svc.submit_document(numbered_document(12, "FD"), chunk_max_tokens=40)["job_id"]
    view = svc.wait(job_id, timeout=60, poll=0.1)
    assert view.status == JobStatus.FAILURE and "auth" in (view.error or ""), view.error
    assert backup_llm.stats()["total"] == 0, "an auth error must not silently move the job to another model"
    letters = DeadLetters(svc.store).list(job_id=job_id)
    assert letters and {d.error_kind for d in letters} == {"auth"}
    assert "on target primary" in letters[0].message
    f = figures(view)
    assert f["backup"].calls == 0 and f["primary"].fallovers == 0 and set(f["primary"].errors) == {"auth"}
    refused = fake_llm.stats()["total"]

    # the same job asking to fall over on auth: finished on the backup, nothing dead-lettered
    fake_llm.reset(keep_config=True)
    job2 = svc.submit_document(numbered_document(12, "FE"), chunk_max_tokens=40, fallback_also_on=["auth"])["job_id"]
    view2 = svc.wait(job2, timeout=60, poll=0.1)
    assert view2.status == JobStatus.SUCCESS, view2.error
    assert_each_once_in_order(view2.humanized_text or "", "FE", 12)
    f2 = figures(view2)
    assert (f2["backup"].chunks, f2["backup"].calls) == (12, 12) and view2.dead_letters == 0
    assert f2["primary"].errors == {"auth": f2["primary"].calls}
    assert max(per_text(fake_llm).values()) == 1, "an opted-in auth error falls over at once, never retried"

    # opted-in auth failures count toward the primary's breaker (the target is unusable): it is open now,
    # and would send the next job straight to the backup for its cool-down; start the next part afresh
    r = redis.Redis.from_url(get_settings().redis_dsn, decode_responses=True)
    key = f"{PREFIX}:breaker:primary:openai:fake-model"
    assert r.hget(key, "state") == OPEN
    r.delete(key)  # (a worker re-reads a breaker it last saw open on every call)

    # a context-length error falls over at once (no retry can help), the other chunks stay on the primary
    fake_llm.configure(faults=[{"kind": "context_length", "match": "FF-0003"}])
    fake_llm.reset(keep_config=True)
    backup_llm.reset()
    job3 = svc.submit_document(numbered_document(8, "FF"), chunk_max_tokens=40)["job_id"]
    view3 = svc.wait(job3, timeout=60, poll=0.1)
    assert view3.status == JobStatus.SUCCESS, view3.error
    served = svc.store.served(job3)
    assert served[3] == "backup" and [i for i, t in served.items() if t == "backup"] == [3]
    chunk3 = svc.store.chunks(job3)[3]["text"]
    assert per_text(fake_llm)[text_hash(chunk3)] == 1 and backup_llm.stats()["total"] == 1
    assert figures(view3)["primary"].errors == {"context_length": 1}
    print(f"\nFIGURE fallback-auth: 401s without opt-in: job FAILURE after {refused} primary calls, 0 backup calls; "
          f"with fallback_also_on=[auth]: 12/12 on the backup, {f2['primary'].calls} primary calls; "
          f"context_length: chunk 3 moved after 1 call")


# ---- (d) the second pass goes through the chain too -------------------------------------------------------
TOWNS = ("harbour", "meadow", "quarry", "orchard")


def town_document(tag: str) -> str:
    """4 paragraphs (one chunk each at 40 tokens), each with one number; chunk 2 names the quarry."""
    return "\n\n".join(
        f"The {town} office of {tag} hired {11 + i} people this spring. Everyone there "
        "reads the weekly notes and answers the questions in them." for i, town in enumerate(TOWNS)
    ) + "\n"


def requests_of(server: Any, h: str) -> list[tuple[str | None, bool]]:
    """(fault, second pass?) of each request the server logged for the text with hash ``h``, in order."""
    return [(r["fault"], bool(r.get("revision"))) for r in server.stats()["requests"] if r["text_hash"] == h]


def kept_second(samples: dict[tuple[str, frozenset[tuple[str, str]]], float]) -> float:
    return sum(sample(samples, "humanizer_second_pass_total", reason=r, outcome="kept_second")
               for r in ("facts", "tells", "facts_and_tells"))


def test_a_second_pass_with_a_broken_primary_is_served_and_counted_by_the_backup(
    make_stack: Any, fake_llm: Any, backup_llm: Any
) -> None:
    """Every call to the primary fails (500), so the chunks fall over to the backup; the backup's first
    reply for the quarry chunk drops its number, so that chunk gets a second pass. The second pass must go
    to the backup (not back to the broken primary) and count there: calls, tokens, cost, metrics. The
    breaker is off so that the primary's calls are exact: one and one retry per chunk, none more."""
    from humanizer_operator.status import mirrored

    port = free_port()
    make_stack(workers=1, concurrency=4, **chain_env(backup_llm, MONITORING_PROMETHEUS_PORT=str(port),
                                                     HUMANIZER_BREAKER_FAILURES="0"))
    backup_llm.reset()
    backup_llm.configure(faults=[{"kind": "drop_number", "match": "quarry", "times_per_text": 1}])
    fake_llm.configure(faults=[{"kind": "500"}])
    svc = OrchestrationService()
    n = len(TOWNS)
    try:
        job_id = svc.submit_document(town_document("FSA"), chunk_max_tokens=40)["job_id"]
        view = svc.wait(job_id, timeout=60, poll=0.1)
    finally:
        backup_llm.configure(faults=[])
    assert view.status == JobStatus.SUCCESS, view.error
    chunks = svc.store.chunks(job_id)
    assert len(chunks) == n and "quarry" in chunks[2]["text"]
    hashes = {i: text_hash(c["text"]) for i, c in chunks.items()}
    # the faults hit during the job: the primary answered nothing but 500s, the backup's first reply for
    # chunk 2 dropped its number; then exactly one second pass, on the backup
    assert by_status(fake_llm) == {"500": 2 * n}
    assert [per_text(fake_llm)[hashes[i]] for i in range(n)] == [2] * n, "no second pass went to the primary"
    assert requests_of(backup_llm, hashes[2]) == [("drop_number", False), (None, True)]
    for i in (0, 1, 3):
        assert requests_of(backup_llm, hashes[i]) == [(None, False)], i
    assert "13 people" in (view.humanized_text or "") and (view.verification or {})["passed"], view.verification
    assert svc.store.served(job_id) == {i: "backup" for i in range(n)}

    sp = view.second_pass
    assert sp is not None and (sp.calls, sp.kept, sp.over_budget) == (1, 1, 0)
    assert sp.tokens_in > 0 and sp.tokens_out > 0
    f = figures(view)
    primary, backup = f["primary"], f["backup"]
    assert (primary.second_passes, primary.second_pass_tokens_in, primary.tokens_in) == (0, 0, 0)
    assert (primary.calls, primary.errors, primary.fallovers) == (2 * n, {"server_error": 2 * n}, n)
    assert primary.cost_usd == 0
    assert (backup.chunks, backup.calls, backup.errors, backup.second_passes) == (n, n + 1, {}, 1)
    assert (backup.second_pass_tokens_in, backup.second_pass_tokens_out) == (sp.tokens_in, sp.tokens_out)
    assert (backup.tokens_in, backup.tokens_out) == (view.tokens_in, view.tokens_out), "the second pass included"
    sp_cost = round((sp.tokens_in * PRICE[0] + sp.tokens_out * PRICE[1]) / 1e6, 6)
    assert sp.cost_usd == pytest.approx(sp_cost) and backup.second_pass_cost_usd == pytest.approx(sp_cost)
    expected_cost = round((view.tokens_in * PRICE[0] + view.tokens_out * PRICE[1]) / 1e6, 6)
    assert backup.cost_usd == pytest.approx(expected_cost) and view.cost_usd == pytest.approx(expected_cost)
    assert mirrored(view)["targets"][1]["secondPasses"] == 1
    assert target_lines(view)[1].endswith(", 1 second passes")

    samples = scrape_workers(port)
    assert sample(samples, "humanizer_provider_requests_total", provider="openai", status_code="200",
                  target="backup") == n + 1
    assert sample(samples, "humanizer_provider_requests_total", provider="openai", status_code="200",
                  target="primary") == 0
    assert sample(samples, "humanizer_tokens_total", provider="openai", direction="input",
                  target="backup") == view.tokens_in
    assert kept_second(samples) == 1
    print(f"\nFIGURE fallback-second-pass: primary {primary.calls} calls (all 500, breaker off); backup "
          f"{backup.calls} calls ({backup.second_passes} second pass, {sp.tokens_in}/{sp.tokens_out} tokens, "
          f"${sp.cost_usd:.6f})")


def test_a_second_pass_that_fails_on_the_primary_falls_over_to_the_backup(
    make_stack: Any, fake_llm: Any, backup_llm: Any
) -> None:
    """The primary serves every first call, but its first reply for the quarry chunk drops a number and
    then it answers that text with 500s: the second pass falls over to the backup at once (it is never
    retried), the backup's kept rewrite is the chunk's, and each target counts its own part."""
    make_stack(workers=1, concurrency=4, **chain_env(backup_llm))
    backup_llm.reset()
    fake_llm.configure(faults=[{"kind": "drop_number", "match": "quarry", "times_per_text": 1},
                               {"kind": "500", "match": "quarry"}])
    svc = OrchestrationService()
    n = len(TOWNS)
    job_id = svc.submit_document(town_document("FSB"), chunk_max_tokens=40)["job_id"]
    view = svc.wait(job_id, timeout=60, poll=0.1)
    assert view.status == JobStatus.SUCCESS, view.error
    chunks = svc.store.chunks(job_id)
    hashes = {i: text_hash(c["text"]) for i, c in chunks.items()}
    assert requests_of(fake_llm, hashes[2]) == [("drop_number", False), ("500", False)]
    assert requests_of(backup_llm, hashes[2]) == [(None, True)] and backup_llm.stats()["total"] == 1
    assert svc.store.served(job_id) == {0: "primary", 1: "primary", 2: "backup", 3: "primary"}
    assert "13 people" in (view.humanized_text or "") and (view.verification or {})["passed"], view.verification

    sp = view.second_pass
    assert sp is not None and (sp.calls, sp.kept) == (1, 1)
    f = figures(view)
    primary, backup = f["primary"], f["backup"]
    assert (primary.chunks, primary.calls, primary.errors) == (n - 1, n + 1, {"server_error": 1})
    assert (primary.fallovers, primary.second_passes, primary.second_pass_tokens_in) == (1, 0, 0)
    assert (backup.chunks, backup.calls, backup.second_passes) == (1, 1, 1)
    assert (backup.tokens_in, backup.tokens_out) == (sp.tokens_in, sp.tokens_out) != (0, 0)
    assert (primary.tokens_in + backup.tokens_in, primary.tokens_out + backup.tokens_out) == (
        view.tokens_in, view.tokens_out)
    sp_cost = round((sp.tokens_in * PRICE[0] + sp.tokens_out * PRICE[1]) / 1e6, 6)
    assert sp.cost_usd == pytest.approx(sp_cost) and backup.cost_usd == pytest.approx(sp_cost)
    print(f"\nFIGURE fallback-second-pass-fallover: primary {primary.calls} calls (1 500 on the second pass), "
          f"backup 1 call ({sp.tokens_in}/{sp.tokens_out} tokens, ${sp.cost_usd:.6f}), kept")


# ---- the breaker's Redis state, shared by processes ------------------------------------------------------
@pytest.fixture()
def breaker_redis(tmp_path: Path) -> Iterator[redis.Redis]:
    with RedisServer(data_dir=tmp_path / "redis") as server:
        client = redis.Redis.from_url(server.url, decode_responses=True)
        yield client
        client.close()


def test_breaker_state_is_shared_and_exactly_one_caller_probes(breaker_redis: redis.Redis) -> None:
    now = [1000.0]
    cfg = BreakerConfig(failures=3, cooldown=10.0, probe_lease=5.0)
    moves: list[tuple[str, str]] = []
    # eight "processes": their own objects (own caches) on one Redis hash
    workers = [CircuitBreaker(breaker_redis, "t", "t", cfg, prefix="hzb", cache_seconds=0.0, clock=lambda: now[0],
                              on_transition=lambda _t, a, b: moves.append((a, b))) for _ in range(8)]
    for w in workers[:3]:
        assert w.allow()
        w.record(False)
    assert breaker_redis.hget("hzb:breaker:t", "state") == OPEN and moves == [(CLOSED, OPEN)]
    assert not any(w.allow() for w in workers), "every process sees it open"
    assert workers[5].wait_seconds() == pytest.approx(10.0)
    now[0] += 10.0
    verdicts: list[bool] = []
    barrier = threading.Barrier(len(workers))

    def race(w: CircuitBreaker) -> None:
        barrier.wait()
        verdicts.append(w.allow())

    threads = [threading.Thread(target=race, args=(w,)) for w in workers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert sorted(verdicts) == [False] * 7 + [True], "one probe, the others keep skipping"
    assert breaker_redis.hget("hzb:breaker:t", "state") == HALF_OPEN
    workers[2].record(True)
    assert breaker_redis.hget("hzb:breaker:t", "state") == CLOSED and moves[-1] == (HALF_OPEN, CLOSED)
    assert all(w.allow() for w in workers)
    assert 0 < breaker_redis.ttl("hzb:breaker:t") <= 86400
