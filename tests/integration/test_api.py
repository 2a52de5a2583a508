"""The HTTP API end to end: a real uvicorn process, real Redis, real workers, the fake OpenAI server."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx2
import pytest

from humanizer.api.app import create_app
from humanizer.api.settings import ApiConfigError, ApiSettings
from humanizer.api.testing import ApiProcess, serve_in_thread, start_api_process
from humanizer.config import get_settings
from humanizer.local.stack import LocalStack
from tests.integration.conftest import numbered_document, poll_until

pytestmark = pytest.mark.integration

TOKEN = "tok-api-main-0001"
LIMITED = "tok-api-limited-0002"
PROBLEM = "application/problem+json"
TYPE_PREFIX = "tag:humanizer.dev,2025:problems/"
MAX_BODY = 200_000
MAX_ACTIVE = 3


@pytest.fixture(scope="module")
def api(stack: LocalStack) -> Iterator[ApiProcess]:
    env = {
        **stack.env,
        "HUMANIZER_API_TOKENS": f"{TOKEN}, {LIMITED}",
        "HUMANIZER_API_MAX_BODY_BYTES": str(MAX_BODY),
        "HUMANIZER_API_MAX_CHUNKS": "50",
        "HUMANIZER_API_MAX_ACTIVE_JOBS_PER_TOKEN": str(MAX_ACTIVE),
        "HUMANIZER_API_SSE_HEARTBEAT_SECONDS": "0.3",
        "HUMANIZER_API_READINESS_CACHE_SECONDS": "1",
        "LOG_FORMAT": "json",
    }
    with start_api_process(env) as proc:
        yield proc


@pytest.fixture()
def client(api: ApiProcess, svc: object) -> Iterator[httpx2.Client]:
    """An authenticated client; depends on ``svc`` so the fake LLM is reset before each test."""
    with httpx2.Client(base_url=api.url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30) as c:
        yield c


def assert_problem(resp: httpx2.Response, status: int, kind: str) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith(PROBLEM), resp.headers["content-type"]
    body = resp.json()
    assert body["type"] == TYPE_PREFIX + kind, body
    assert body["status"] == status and body["title"], body
    return body


def wait_status(client: httpx2.Client, job_id: str, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        job = client.get(f"/v1/jobs/{job_id}").json()
        if job["status"] in ("SUCCESS", "FAILURE", "CANCELLED") or time.monotonic() > deadline:
            return job  # type: ignore[no-any-return]
        time.sleep(0.1)


def test_lifecycle_with_sse_progress(client: httpx2.Client, fake_llm: Any, api: ApiProcess) -> None:
    fake_llm.configure(latency=0.25, jitter=0.0)
    doc = numbered_document(40, "L")
    resp = client.post("/v1/jobs", json={"text": doc, "style": "casual", "chunk_max_tokens": 40})
    assert resp.status_code == 202, resp.text
    accepted = resp.json()
    job_id = accepted["job_id"]
    assert resp.headers["location"] == f"/v1/jobs/{job_id}"
    assert accepted["total_chunks"] == 40 and accepted["estimated_completion_time"] > time.time() - 1

    events: list[tuple[str, dict[str, Any]]] = []
    with client.sse(f"/v1/jobs/{job_id}/events") as source:
        assert source.response.status_code == 200
        for sse in source:
            events.append((sse.event, json.loads(sse.data)))
    names = [name for name, _ in events]
    assert names[-1] == "end" and names.count("end") == 1, names
    assert events[-1][1]["status"] == "SUCCESS"
    assert len(events) >= 3, f"expected several progress events, got {names}"
    done = [data["progress"]["done"] for _, data in events]
    assert done == sorted(done), f"progress went backwards: {done}"

    job = client.get(f"/v1/jobs/{job_id}").json()
    assert job["status"] == "SUCCESS" and job["phase"] == "done"
    assert job["progress"] == {"done": 40, "failed": 0, "skipped": 0, "total": 40, "percentage": 100.0}
    assert job["tokens"]["input"] > 0 and job["tokens"]["output"] > 0
    assert job["timings"]["finished_at"] >= job["timings"]["created_at"]

    result = client.get(f"/v1/jobs/{job_id}/result").json()
    assert "L-0000" in result["humanized_text"] and "L-0039" in result["humanized_text"]
    assert result["verification"] is not None
    tells = result["verification"]["tells"]
    assert job["ai_tell_score"] == {"before": tells["before"]["score"], "after": tells["after"]["score"]}

    listed = client.get("/v1/jobs", params={"limit": 5}).json()
    assert job_id in [j["job_id"] for j in listed["items"]] and listed["total"] >= 1

    logs = api.logs()
    assert job_id in logs, "the API should log job ids"
    assert "L-0007" not in logs and TOKEN not in logs, "document text or a token reached the API log"


def test_pre_split_chunks(client: httpx2.Client) -> None:
    resp = client.post("/v1/jobs", json={"chunks": ["First part is here.", "Second part is here."],
                                         "verify": False})
    assert resp.status_code == 202, resp.text
    job_id = resp.json()["job_id"]
    assert resp.json()["total_chunks"] == 2
    assert wait_status(client, job_id)["status"] == "SUCCESS"
    parts = client.get(f"/v1/jobs/{job_id}/result").json()["humanized_text"].split("\n\n")
    assert len(parts) == 2


def test_cancel_heartbeat_and_409_while_running(client: httpx2.Client, fake_llm: Any) -> None:
    fake_llm.configure(latency=0.4, jitter=0.0)
    job_id = client.post("/v1/jobs", json={"text": numbered_document(48, "K"), "chunk_max_tokens": 40}).json()[
        "job_id"]

    running = client.get(f"/v1/jobs/{job_id}/result")
    body = assert_problem(running, 409, "job-not-finished")
    assert running.headers.get("retry-after") and body["job_status"] in ("PENDING", "STARTED", "PROGRESS")

    comments = 0
    started = time.monotonic()
    with client.stream("GET", f"/v1/jobs/{job_id}/events") as stream:
        for line in stream.iter_lines():
            comments += line.startswith(":")
            if comments >= 1 or time.monotonic() - started > 5:
                break
    assert comments >= 1, "no heartbeat comment within 5 s (HUMANIZER_API_SSE_HEARTBEAT_SECONDS=0.3)"

    cancel = client.delete(f"/v1/jobs/{job_id}")
    assert cancel.status_code == 202, cancel.text
    assert cancel.json() == {"job_id": job_id, "cancelled": True, "status": "CANCELLED"}
    again = client.delete(f"/v1/jobs/{job_id}")
    assert again.status_code == 200 and again.json()["cancelled"] is False
    assert client.get(f"/v1/jobs/{job_id}").json()["status"] == "CANCELLED"
    assert_problem(client.get(f"/v1/jobs/{job_id}/result"), 409, "job-cancelled")
    with client.sse(f"/v1/jobs/{job_id}/events") as source:
        final = [(e.event, e.json()) for e in source]
    assert len(final) == 1 and final[0][0] == "end" and final[0][1]["status"] == "CANCELLED"  # type: ignore[index]


def test_idempotency_key(client: httpx2.Client, api: ApiProcess) -> None:
    body = {"chunks": ["Idempotent chunk one.", "Idempotent chunk two."], "verify": False}
    key = f"idem-{time.time_ns()}"
    first = client.post("/v1/jobs", json=body, headers={"Idempotency-Key": key})
    assert first.status_code == 202, first.text
    second = client.post("/v1/jobs", json=dict(reversed(list(body.items()))), headers={"Idempotency-Key": key})
    assert second.status_code == 202
    assert second.json()["job_id"] == first.json()["job_id"]
    assert second.headers.get("idempotent-replayed") == "true"
    assert second.headers["location"] == first.headers["location"]

    other = client.post("/v1/jobs", json={**body, "verify": True}, headers={"Idempotency-Key": key})
    assert_problem(other, 422, "idempotency-key-reused")

    with httpx2.Client(base_url=api.url, headers={"Authorization": f"Bearer {LIMITED}"}) as other_token:
        theirs = other_token.post("/v1/jobs", json=body, headers={"Idempotency-Key": key})
        assert theirs.status_code == 202 and theirs.json()["job_id"] != first.json()["job_id"]
        wait_status(other_token, theirs.json()["job_id"])
    wait_status(client, first.json()["job_id"])


def test_401_without_valid_token(api: ApiProcess) -> None:
    with httpx2.Client(base_url=api.url) as anon:
        for method, path in [("GET", "/v1/jobs"), ("POST", "/v1/jobs"), ("GET", "/v1/jobs/x"),
                             ("GET", "/v1/dead-letters"), ("POST", "/v1/dead-letters/x:1/replay"),
                             ("DELETE", "/v1/jobs/x"), ("GET", "/v1/jobs/x/events")]:
            resp = anon.request(method, path, json={"text": "hello"} if method == "POST" else None)
            assert_problem(resp, 401, "unauthorized")
            assert resp.headers["www-authenticate"].startswith("Bearer")
        wrong = anon.get("/v1/jobs", headers={"Authorization": f"Bearer {TOKEN}x"})
        assert_problem(wrong, 401, "unauthorized")
        basic = anon.get("/v1/jobs", headers={"Authorization": "Basic dXNlcjpwYXNz"})
        assert_problem(basic, 401, "unauthorized")
        assert anon.get("/healthz").json() == {"status": "ok"}
        metrics = anon.get("/metrics")
        assert metrics.status_code == 200 and "humanizer_http_requests_total" in metrics.text
        assert "humanizer_queue_depth" in metrics.text


def test_413_body_limit_with_and_without_content_length(client: httpx2.Client) -> None:
    big = {"text": "word " * (MAX_BODY // 4)}
    assert_problem(client.post("/v1/jobs", json=big), 413, "body-too-large")

    def chunked() -> Iterator[bytes]:  # no Content-Length: the limit must hold while reading
        yield b'{"text": "'
        for _ in range(MAX_BODY // 1000 + 5):
            yield b"x" * 1000
        yield b'"}'

    resp = client.post("/v1/jobs", content=chunked(), headers={"Content-Type": "application/json"})
    assert_problem(resp, 413, "body-too-large")
    assert "content-length" not in {k.lower() for k in resp.request.headers}


def test_422_problems(client: httpx2.Client) -> None:
    secret = "Quokka-secret-7781 sentence"
    both = client.post("/v1/jobs", json={"text": secret, "chunks": [secret]})
    body = assert_problem(both, 422, "validation-error")
    assert secret not in both.text, "a validation error echoed the document"
    assert "exactly one" in body["detail"]
    # what the OpenAPI schema itself refuses (styles and providers are enums, text needs a non-space
    # character): validation errors, so schema-valid requests are accepted (schemathesis checks both ways)
    pirate = client.post("/v1/jobs", json={"text": secret, "style": "pirate"})
    assert_problem(pirate, 422, "validation-error")
    assert secret not in pirate.text, "a validation error echoed the document"
    assert_problem(client.post("/v1/jobs", json={"chunks": ["x"] * 51}), 422, "too-many-chunks")
    assert_problem(client.post("/v1/jobs", json={"text": "   "}), 422, "validation-error")
    assert_problem(client.post("/v1/jobs", json={"chunks": ["", "x"]}), 422, "validation-error")  # fuzz find
    assert_problem(client.post("/v1/jobs", json={"chunks": []}), 422, "validation-error")
    invalid = client.post("/v1/jobs", json={"text": "ok", "temperature": 9})
    assert assert_problem(invalid, 422, "validation-error")["errors"][0]["loc"] == ["body", "temperature"]
    assert_problem(client.post("/v1/jobs", content=b"{not json", headers={"Content-Type": "application/json"}),
                   422, "validation-error")
    assert_problem(client.get("/v1/jobs", params={"limit": 0}), 422, "validation-error")
    surrogate = client.post("/v1/jobs", content=b'{"text": "bad \\udbcd text"}',
                            headers={"Content-Type": "application/json"})
    assert "unpaired surrogate" in assert_problem(surrogate, 422, "validation-error")["detail"]
    bad_key = client.post("/v1/jobs", json={"text": "ok"}, headers={"Idempotency-Key": "has space"})
    assert_problem(bad_key, 422, "validation-error")


def test_429_too_many_unfinished_jobs(api: ApiProcess, fake_llm: Any, svc: object) -> None:
    fake_llm.configure(latency=0.5, jitter=0.0)
    doc = numbered_document(40, "Q")
    with httpx2.Client(base_url=api.url, headers={"Authorization": f"Bearer {LIMITED}"}, timeout=30) as c:
        ids = []
        for _ in range(MAX_ACTIVE):
            resp = c.post("/v1/jobs", json={"text": doc, "chunk_max_tokens": 40, "verify": False})
            assert resp.status_code == 202, resp.text
            ids.append(resp.json()["job_id"])
        over = c.post("/v1/jobs", json={"text": doc, "chunk_max_tokens": 40})
        body = assert_problem(over, 429, "too-many-active-jobs")
        assert int(over.headers["retry-after"]) >= 1 and body["limit"] == MAX_ACTIVE
        assert c.delete(f"/v1/jobs/{ids[0]}").status_code == 202
        after = c.post("/v1/jobs", json={"chunks": ["One more."], "verify": False})
        assert after.status_code == 202, after.text
        ids.append(after.json()["job_id"])
        for job_id in ids:
            c.delete(f"/v1/jobs/{job_id}")


def test_404s(client: httpx2.Client) -> None:
    assert_problem(client.get("/v1/jobs/no-such-job"), 404, "job-not-found")
    assert_problem(client.get("/v1/jobs/no-such-job/result"), 404, "job-not-found")
    assert_problem(client.get("/v1/jobs/no-such-job/events"), 404, "job-not-found")
    assert_problem(client.delete("/v1/jobs/no-such-job"), 404, "job-not-found")
    assert_problem(client.post("/v1/dead-letters/no-such-job:3/replay"), 404, "dead-letter-not-found")
    assert_problem(client.get("/v1/nothing-here"), 404, "not-found")


def test_dead_letter_listed_and_replayed(client: httpx2.Client, fake_llm: Any) -> None:
    fake_llm.configure(faults=[{"kind": "400", "match": "FAULT-400", "times_per_text": 1}])
    chunks = ["A fine chunk.", "This chunk says FAULT-400 and fails once.", "Another fine chunk."]
    job_id = client.post("/v1/jobs", json={"chunks": chunks, "verify": False}).json()["job_id"]
    assert poll_until(lambda: client.get(f"/v1/jobs/{job_id}").json()["dead_letters"] == 1, timeout=30)
    page = client.get("/v1/dead-letters", params={"job_id": job_id}).json()
    assert page["total"] == 1 and page["items"][0]["id"] == f"{job_id}:1"
    assert page["items"][0]["error_kind"]
    assert f"{job_id}:1" in [d["id"] for d in client.get("/v1/dead-letters").json()["items"]]
    wait_status(client, job_id)  # the chord finishes (the job fails or completes partially)

    replay = client.post(f"/v1/dead-letters/{job_id}:1/replay")
    assert replay.status_code == 202, replay.text
    assert replay.json()["job_id"] == job_id
    final = wait_status(client, job_id)
    assert final["status"] == "SUCCESS", final
    assert client.get("/v1/dead-letters", params={"job_id": job_id}).json()["total"] == 0
    assert "FAULT-400" in client.get(f"/v1/jobs/{job_id}/result").json()["humanized_text"]


def test_readyz(api: ApiProcess) -> None:
    resp = httpx2.get(f"{api.url}/readyz", timeout=10)
    assert resp.status_code == 200, resp.text
    checks = resp.json()["checks"]
    assert checks["redis"]["ok"] and checks["workers"]["ok"] and checks["provider"]["ok"]


def test_refuses_to_start_without_tokens() -> None:
    with pytest.raises(ApiConfigError, match="HUMANIZER_API_ALLOW_ANONYMOUS=true") as exc:
        create_app(get_settings(), ApiSettings(tokens="", tokens_file=None, allow_anonymous=False))
    assert "HUMANIZER_API_TOKENS" in str(exc.value)
    create_app(get_settings(), ApiSettings(tokens="", allow_anonymous=True))  # explicit opt-in starts


def test_tokens_file_and_protected_ops(stack: LocalStack, tmp_path: Any) -> None:
    secret_file = tmp_path / "tokens"
    secret_file.write_text("# mounted Secret\nfile-token-1, file-token-2\n")
    api_settings = ApiSettings(tokens=None, tokens_file=secret_file, protect_ops_endpoints=True)
    with serve_in_thread(create_app(get_settings(), api_settings)) as url:
        assert_problem(httpx2.get(f"{url}/metrics"), 401, "unauthorized")
        for token in ("file-token-1", "file-token-2"):
            ok = httpx2.get(f"{url}/v1/jobs", headers={"Authorization": f"Bearer {token}"})
            assert ok.status_code == 200, ok.text
        assert httpx2.get(f"{url}/metrics", headers={"Authorization": "Bearer file-token-1"}).status_code == 200


def test_openapi_document(api: ApiProcess) -> None:
    doc = httpx2.get(f"{api.url}/openapi.json").json()
    assert doc["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    post = doc["paths"]["/v1/jobs"]["post"]
    assert {"202", "401", "413", "422", "429", "503"} <= set(post["responses"])
    assert "application/problem+json" in post["responses"]["429"]["content"]
    assert post["security"] == [{"HTTPBearer": []}]
    assert "security" not in doc["paths"]["/healthz"]["get"]
