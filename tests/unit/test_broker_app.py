"""The Celery app is built explicitly (``humanizer.broker.configure_app``), never at import, and no code of
ours touches Celery's or kombu's private attributes to reconfigure it."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
PRIVATE = re.compile(r"(?<!self)\.(_pool|_producer_pool|_local|_conf|_tasks|_finalized)\b\s*=")


def test_importing_the_broker_configures_no_app() -> None:
    code = (
        "import humanizer.broker as b, humanizer.worker.tasks, humanizer.jobs.dispatch\n"
        "assert b._current is None, 'an app was configured at import'\n"
        "print('ok')"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]


def test_every_configuration_is_a_new_app_and_get_app_returns_the_last(monkeypatch: pytest.MonkeyPatch) -> None:
    from humanizer import broker
    from humanizer.config import Settings

    monkeypatch.setattr(broker, "_current", None)
    first = broker.configure_app(Settings(redis_url="redis://127.0.0.1:1/0"))
    assert broker.get_app() is first
    again = broker.configure_app(Settings(redis_url="redis://127.0.0.1:1/0"))
    assert again is not first and broker.get_app() is again  # a restarted Redis at the same address: new clients
    second = broker.configure_app(Settings(redis_url="redis://127.0.0.1:2/0"))
    assert second is not first
    assert second.conf.broker_url.startswith("redis://127.0.0.1:2/")
    assert broker.get_app() is second
    # the worker's shared tasks register on whichever app is configured
    import humanizer.worker.tasks  # noqa: F401

    assert "humanizer.humanize_batch" in second.tasks
    monkeypatch.setattr(broker, "_current", None)


def test_no_private_celery_attributes_are_assigned() -> None:
    hits = []
    for folder in ("service", "operator", "bench", "tests"):
        for path in (ROOT / folder).rglob("*.py"):
            if path.name == Path(__file__).name:
                continue
            for no, line in enumerate(path.read_text().splitlines(), 1):
                if PRIVATE.search(line):
                    hits.append(f"{path.relative_to(ROOT)}:{no}: {line.strip()}")
    assert not hits, "\n".join(hits)
