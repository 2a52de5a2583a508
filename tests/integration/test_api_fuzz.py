"""Property-based fuzzing of every operation in /openapi.json with every schemathesis check: no input makes
the API fail with a 5xx; answers conform to the document (status codes, content types, headers, response
and SSE event schemas, Allow on 405); schema-valid requests are accepted and schema-invalid ones refused;
auth is not ignored. Derandomized (a fixed seed), 50 examples per operation."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
import schemathesis.checks
from hypothesis import HealthCheck, given, settings

from humanizer.api.app import create_app
from humanizer.api.settings import ApiSettings
from humanizer.api.testing import serve_in_thread
from humanizer.config import get_settings
from humanizer.local.stack import LocalStack

pytestmark = pytest.mark.integration

TOKEN = "tok-fuzz-0001"


@pytest.fixture(scope="module")
def fuzz_api_url(stack: LocalStack) -> Iterator[str]:
    api_settings = ApiSettings(tokens=TOKEN, max_body_bytes=64_000, max_active_jobs_per_token=1000,
                               sse_heartbeat_seconds=1.0)
    with serve_in_thread(create_app(get_settings(), api_settings)) as url:
        yield url


schemathesis.checks.load_all_checks()
CHECKS = list(schemathesis.checks.CHECKS.get_all())


def test_every_operation_without_server_errors(fuzz_api_url: str) -> None:
    """Up to 50 generated requests per operation (valid and invalid ones), each checked by CHECKS."""
    schema = schemathesis.openapi.from_url(f"{fuzz_api_url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 9, [op.label for op in operations]
    failures: list[str] = []
    started = time.monotonic()
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=50, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        def run(case: schemathesis.Case) -> None:
            kwargs: dict[str, Any] = {"timeout": 10}
            if case.path.endswith("/events"):
                kwargs["stream"] = True
            headers = {"Authorization": f"Bearer {TOKEN}"}
            if case.headers and "Idempotency-Key" in case.headers:
                headers["Idempotency-Key"] = uuid.uuid4().hex  # one per request: reuse is its own test
            case.call_and_validate(headers=headers, checks=CHECKS, **kwargs)

        try:
            run()
        except Exception as exc:  # one report for all operations
            failures.append(f"{operation.label}: {exc}")
    assert not failures, "\n\n".join(failures)
    assert time.monotonic() - started < 120
