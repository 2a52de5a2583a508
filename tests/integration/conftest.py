"""Integration tier: a real Redis server, real Celery worker processes, the fake OpenAI server.

If a service cannot start, the tests fail (fixtures raise); nothing here skips.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from humanizer.config import reset_settings_cache
from humanizer.fake_llm.testing import start_fake_llm_process
from humanizer.jobs.models import JobView
from humanizer.local.stack import LocalStack
from humanizer.orchestration import OrchestrationService

FAKE_KEY = "sk-fake-integration"


@pytest.fixture(scope="session")
def fake_llm() -> Iterator[object]:
    with start_fake_llm_process(latency=0.02, jitter=0.01, api_key=FAKE_KEY) as server:
        yield server


def provider_env(fake_llm: object) -> dict[str, str]:
    """Workers use the real openai SDK against the fake server, with quick retries."""
    return {
        "HUMANIZER_PROVIDER": "openai",
        "OPENAI_BASE_URL": fake_llm.url,  # type: ignore[attr-defined]
        "OPENAI_API_KEY": FAKE_KEY,
        "OPENAI_MODEL": "fake-model",
        "OPENAI_TIMEOUT": "5",
        "CELERY_TASK_RETRY_DELAY": "0.2",
        "CELERY_TASK_MAX_RETRIES": "4",
    }


@pytest.fixture(scope="session")
def stack(fake_llm: object, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    """Two worker processes × 4 batches × 4 chunks (32 calls in flight), openai provider, fake server."""
    work = tmp_path_factory.mktemp("stack")
    env = {
        **provider_env(fake_llm),
        "CELERY_TASK_RETRY_MAX_DELAY": "5",
        "HUMANIZER_KEY_PREFIX": "hzit",
        "HUMANIZER_BATCH_SIZE": "4",
        "LOG_LEVEL": "INFO",
    }
    with LocalStack(workers=2, concurrency=4, env=env, work_dir=work) as s:
        yield s
    reset_settings_cache()


@pytest.fixture()
def svc(stack: LocalStack, fake_llm: object) -> Iterator[OrchestrationService]:
    fake_llm.reset()  # type: ignore[attr-defined]
    yield OrchestrationService()


def wait_done(svc: OrchestrationService, job_id: str, timeout: float = 60.0) -> JobView:
    return svc.wait(job_id, timeout=timeout, poll=0.1)


def worker_logs(stack: LocalStack) -> str:
    assert stack.pool is not None
    return stack.pool.logs()


def numbered_document(n: int, tag: str) -> str:
    """n paragraphs, each with a unique marker, long enough to be one chunk each at a small budget."""
    paras = [
        f"Paragraph {tag}-{i:04d} opens here. It is important to note that the team utilizes robust tools. "
        f"Furthermore, the results were reviewed in detail by the group."
        for i in range(n)
    ]
    return "\n\n".join(paras) + "\n"


def markers_in(text: str, tag: str) -> list[str]:
    import re

    return re.findall(rf"{tag}-\d{{4}}", text)


def poll_until(pred: object, timeout: float, step: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():  # type: ignore[operator]
            return True
        time.sleep(step)
    return False



# Settings for stacks that get faults injected: short stall detection and visibility timeout so that
# recovery happens within a test's time, not production's.
FAST_RECOVERY_ENV = {
    "CELERY_TASK_SOFT_TIME_LIMIT": "10",
    "CELERY_TASK_TIME_LIMIT": "12",
    "CELERY_TASK_RETRY_MAX_DELAY": "5",
    "CELERY_VISIBILITY_TIMEOUT": "20",
    "HUMANIZER_STALL_SECONDS": "4",
    "HUMANIZER_RECONCILE_INTERVAL_SECONDS": "1",
}


@pytest.fixture()
def make_stack(fake_llm: object, tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """Build a dedicated stack (own Redis, own workers) for a test that breaks things."""
    made: list[LocalStack] = []

    def factory(workers: int = 2, concurrency: int = 8, **env: str) -> LocalStack:
        base = {
            **provider_env(fake_llm),
            "HUMANIZER_CHUNK_CACHE_TTL_SECONDS": "0",
            "HUMANIZER_BATCH_SIZE": "4",
            **FAST_RECOVERY_ENV,
        }
        s = LocalStack(workers, concurrency, env={**base, **env}, work_dir=tmp_path_factory.mktemp("chaos"))
        made.append(s)
        return s.start()

    fake_llm.reset()  # type: ignore[attr-defined]
    yield factory
    for s in reversed(made):
        s.stop()
