"""The worker heartbeat: the freshness check the chart's probes run, and the bootstep that keeps it fresh."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from celery import Celery

from humanizer.worker import heartbeat

pytestmark = pytest.mark.unit


def aged(path: Path, seconds: float) -> Path:
    path.touch()
    then = time.time() - seconds
    os.utime(path, (then, then))
    return path


def test_fresh_stale_and_missing(tmp_path: Path) -> None:
    now = time.time()
    fresh = aged(tmp_path / "fresh", 5)
    stale = aged(tmp_path / "stale", 120)
    assert heartbeat.is_fresh(fresh, 60, now)
    assert not heartbeat.is_fresh(stale, 60, now)
    assert heartbeat.is_fresh(stale, 180, now)
    assert not heartbeat.is_fresh(tmp_path / "missing", 60, now)
    assert heartbeat.age(tmp_path / "missing") is None
    assert 119 <= (heartbeat.age(stale, now) or 0) <= 121
    ok, message = heartbeat.check(stale, 60, now)
    assert not ok and "stale heartbeat" in message and "allowed 60s" in message
    ok, message = heartbeat.check(tmp_path / "missing", 60, now)
    assert not ok and "does not exist" in message


def test_probe_exit_codes(tmp_path: Path) -> None:
    fresh = aged(tmp_path / "fresh", 1)
    stale = aged(tmp_path / "stale", 300)
    assert heartbeat.main([str(fresh), "60"]) == 0
    assert heartbeat.main([str(stale), "60"]) == 1
    assert heartbeat.main([str(tmp_path / "missing"), "60"]) == 1
    assert heartbeat.main([str(fresh)]) == 2
    assert heartbeat.main([str(fresh), "soon"]) == 2


def test_probe_command_as_the_chart_runs_it(tmp_path: Path) -> None:
    """``python -m humanizer.worker.heartbeat FILE AGE``, importing no more than the standard library."""
    fresh = aged(tmp_path / "hb", 2)
    code = ("import runpy, sys; sys.argv = ['heartbeat', sys.argv[1], '60']\n"
            "try:\n    runpy.run_module('humanizer.worker.heartbeat', run_name='__main__')\n"
            "except SystemExit as e:\n"
            "    heavy = [m for m in ('celery', 'kombu', 'redis', 'pydantic') if m in sys.modules]\n"
            "    print('heavy', heavy); sys.exit(e.code)\n")
    res = subprocess.run([sys.executable, "-c", code, str(fresh)], capture_output=True, text=True, timeout=30)
    assert res.returncode == 0, res.stderr
    assert "heavy []" in res.stdout
    res = subprocess.run([sys.executable, "-m", "humanizer.worker.heartbeat", str(tmp_path / "none"), "60"],
                         capture_output=True, text=True, timeout=30)
    assert res.returncode == 1 and "does not exist" in res.stderr


class FakeTimer:
    def __init__(self) -> None:
        self.calls: list[tuple[float, Any, tuple[Any, ...]]] = []
        self.cancelled = 0

    def call_repeatedly(self, secs: float, fun: Any, args: tuple[Any, ...] = (), priority: int = 0) -> Any:
        self.calls.append((secs, fun, args))
        return SimpleNamespace(cancel=lambda: setattr(self, "cancelled", self.cancelled + 1))


def test_install_adds_a_consumer_step_that_touches_the_file(tmp_path: Path) -> None:
    app = Celery("hb-test")
    assert heartbeat.install(app, path="") is False
    assert not [s for s in app.steps["consumer"] if s.__name__ == "Heartbeat"]
    path = tmp_path / "hb"
    assert heartbeat.install(app, path=str(path), interval=3.0) is True
    heartbeat.install(app, path=str(path), interval=3.0)  # idempotent
    (step_cls,) = [s for s in app.steps["consumer"] if s.__name__ == "Heartbeat"]
    timer = FakeTimer()
    consumer = SimpleNamespace(timer=timer)
    step = step_cls(consumer)
    step.start(consumer)
    assert path.exists()  # touched at once: ready as soon as the consumer takes tasks
    ((secs, fun, args),) = timer.calls
    assert secs == 3.0
    aged(path, 100)
    fun(*args)
    assert heartbeat.is_fresh(path, 5)
    step.stop(consumer)  # connection lost: the timer entry goes, the file ages
    assert timer.cancelled == 1


def test_interval_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(heartbeat.INTERVAL_ENV, "2.5")
    assert heartbeat.interval_from_env() == 2.5
    for bad in ("", "x", "0", "-1"):
        monkeypatch.setenv(heartbeat.INTERVAL_ENV, bad)
        assert heartbeat.interval_from_env() == heartbeat.DEFAULT_INTERVAL


def test_touch_failure_is_not_raised(tmp_path: Path) -> None:
    heartbeat.touch(tmp_path / "no-such-dir" / "hb")  # logged, not raised (the timer must keep running)
