"""Scale from zero: with no worker running the API stays ready and accepts a job; the job waits in the
queue and finishes once a worker starts (as when the operator scales the worker Deployment up from 0)."""

from __future__ import annotations

import time
from typing import Any

import httpx2
import pytest

from humanizer.api.testing import start_api_process
from humanizer.local.stack import LocalStack
from tests.integration.conftest import numbered_document, poll_until

pytestmark = pytest.mark.integration

TOKEN = "tok-scale-zero-0001"


def test_api_ready_without_workers_and_job_waits_for_one(make_stack: Any) -> None:
    stack: LocalStack = make_stack(workers=0)
    env = {**stack.env, "HUMANIZER_API_TOKENS": TOKEN, "HUMANIZER_API_READINESS_CACHE_SECONDS": "0"}
    with start_api_process(env) as api, httpx2.Client(
        base_url=api.url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30
    ) as client:
        ready = client.get("/readyz")
        assert ready.status_code == 200, ready.text
        checks = ready.json()["checks"]
        assert checks["redis"]["ok"] and checks["provider"]["ok"]
        assert checks["workers"] == {
            "ok": False,
            "required": False,
            "message": "no worker answered a ping: jobs are accepted and wait in the queue until one starts",
        }

        accepted = client.post("/v1/jobs", json={"text": numbered_document(6, "Z"), "chunk_max_tokens": 40})
        assert accepted.status_code == 202, accepted.text
        job_id = accepted.json()["job_id"]
        time.sleep(1.0)
        waiting = client.get(f"/v1/jobs/{job_id}").json()
        assert waiting["status"] == "PENDING" and waiting["progress"]["done"] == 0, waiting

        stack.pool.add()  # the operator's scale-up, locally
        stack.pool.wait_ready()
        assert poll_until(lambda: client.get(f"/v1/jobs/{job_id}").json()["status"] == "SUCCESS", timeout=60)
        now = client.get("/readyz").json()["checks"]["workers"]
        assert now["ok"] and now["message"] == "1 worker(s) answered a ping", now
