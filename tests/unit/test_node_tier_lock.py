"""The node tier's host-wide lock and its recovery of a tier left by a killed run.

The lock is a real ``flock`` held by a real child process: killing the child (SIGKILL, no teardown) must free
it, which is what lets the next run tell a killed run's leftovers from a tier that is still running.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tools" / "node"))

import node  # noqa: E402  (puts tools/cluster on the path for controlplane)

pytestmark = pytest.mark.unit

HOLDER = """
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)
fcntl.flock(fd, fcntl.LOCK_EX)
os.pwrite(fd, f"{os.getpid()}\\n".encode(), 0)
print("held", flush=True)
time.sleep(60)
"""


def _hold(path: Path) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(path)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


def test_a_held_lock_makes_the_next_run_wait_then_fail_naming_the_holder(tmp_path: Path) -> None:
    lock = tmp_path / "tier.lock"
    holder = _hold(lock)
    notes: list[str] = []
    try:
        t0 = time.monotonic()
        with pytest.raises(node.ControlPlaneError, match=f"pid {holder.pid}.*HUMANIZER_NODE_WAIT_S"):
            node.acquire_tier_lock(lock, 1.5, notes.append)
        assert time.monotonic() - t0 >= 1.4  # it waited before giving up
        assert any(f"pid {holder.pid}" in n and "waiting" in n for n in notes)
    finally:
        holder.kill()
        holder.wait()


def test_the_lock_of_a_killed_run_is_free_and_names_the_new_holder(tmp_path: Path) -> None:
    lock = tmp_path / "tier.lock"
    holder = _hold(lock)
    holder.kill()  # SIGKILL: no teardown ran
    holder.wait()
    fd = node.acquire_tier_lock(lock, 5, lambda _msg: None)
    try:
        assert lock.read_text().strip() == str(os.getpid())
    finally:
        os.close(fd)


def test_a_lock_freed_while_waiting_is_taken(tmp_path: Path) -> None:
    lock = tmp_path / "tier.lock"
    holder = _hold(lock)
    killer = subprocess.Popen([sys.executable, "-c", f"import os, time; time.sleep(1.5); os.kill({holder.pid}, 9)"])
    try:
        t0 = time.monotonic()
        fd = node.acquire_tier_lock(lock, 30, lambda _msg: None)
        os.close(fd)
        assert 1.0 <= time.monotonic() - t0 < 10
    finally:
        killer.wait()
        holder.kill()
        holder.wait()


def _state(pid: int, exe: str, detached: bool) -> dict[str, object]:
    return {"detached": detached, "processes": {"kubelet": {"pid": pid, "exe": exe}}}


def test_a_test_runs_tier_is_abandoned_once_its_lock_is_free_even_with_processes_still_exiting() -> None:
    running = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert node.abandoned(_state(running.pid, sys.executable, detached=False))
        assert node.abandoned(None)  # killed before its state was written
    finally:
        running.kill()
        running.wait()


def test_a_detached_tier_is_abandoned_only_when_none_of_its_processes_runs(tmp_path: Path) -> None:
    running = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    try:
        assert not node.abandoned(_state(running.pid, sys.executable, detached=True))
        assert node.abandoned(_state(gone.pid, sys.executable, detached=True))
        assert node.abandoned(_state(running.pid, "/usr/bin/kubelet", detached=True))  # pid reused by another program
        (tmp_path / "state.json").write_text(json.dumps(_state(running.pid, sys.executable, detached=True)))
        assert not node.abandoned(node.read_state(tmp_path))
        assert node.read_state(tmp_path / "never-started") is None
    finally:
        running.kill()
        running.wait()
