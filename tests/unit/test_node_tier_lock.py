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


def _state(workdir: Path, pid: int, exe: str) -> None:
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "state.json").write_text(json.dumps({"processes": {"kubelet": {"pid": pid, "exe": exe}}}))


def test_a_tier_whose_processes_are_gone_is_not_alive(tmp_path: Path) -> None:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    _state(tmp_path / "dead", gone.pid, sys.executable)
    assert not node.tier_processes_alive(tmp_path / "dead")
    assert not node.tier_processes_alive(tmp_path / "never-started")  # killed before its state was written


def test_a_tier_with_a_running_process_is_alive(tmp_path: Path) -> None:
    running = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        _state(tmp_path / "live", running.pid, sys.executable)
        assert node.tier_processes_alive(tmp_path / "live")
        _state(tmp_path / "reused-pid", running.pid, "/usr/bin/kubelet")  # same pid, another program
        assert not node.tier_processes_alive(tmp_path / "reused-pid")
    finally:
        running.kill()
        running.wait()
