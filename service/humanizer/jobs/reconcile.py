"""The reconciler: re-drives jobs that stopped moving, from what Redis holds.

Celery on Redis can lose a chord's callback (a known failure when the chord counter or a header
result is lost, e.g. Redis restarted between AOF fsyncs), and a chunk's message can vanish with a
crashed Redis. A job with no progress for ``stall_seconds`` is therefore looked at again:

- all chunks accounted for (output or dead letter) but not merged → send ``merge`` again;
- merged but not finished (verify lost) → send ``verify`` again;
- chunks missing → send exactly those chunks again (``replay.redrive``; never a restart from scratch).

Every task is idempotent, so a re-drive of a job that was merely slow costs at most a few duplicate
provider calls and never changes a result.
"""

from __future__ import annotations

import socket
import threading
from dataclasses import dataclass

from humanizer import broker
from humanizer.jobs.models import JobStatus
from humanizer.jobs.replay import redrive
from humanizer.jobs.store import JobNotFound, JobStore
from humanizer.logging import get_logger

log = get_logger("humanizer.reconciler")


@dataclass(frozen=True)
class Action:
    job_id: str
    action: str  # merge | verify | redrive | forget
    chunks: int = 0


def reconcile_once(store: JobStore, stall_seconds: float) -> list[Action]:
    actions: list[Action] = []
    for job_id, _last in store.active_jobs(idle_for=stall_seconds):
        try:
            meta = store.meta(job_id)
        except JobNotFound:
            store.forget_active(job_id)
            actions.append(Action(job_id, "forget"))
            continue
        if JobStatus(meta["status"]).terminal:
            store.forget_active(job_id)
            actions.append(Action(job_id, "forget"))
            continue
        store.touch(job_id)
        if store.result(job_id) is not None:
            round_ = store.next_round(job_id)
            broker.send("humanizer.verify", (job_id,), queue=broker.control_queue(), priority=0,
                        task_id=f"{job_id}:verify:r{round_}")
            actions.append(Action(job_id, "verify"))
            continue
        missing = redrive(store, job_id)
        actions.append(Action(job_id, "redrive" if missing else "merge", len(missing)))
        store.incr(job_id, "redrives")
    for a in actions:
        if a.action != "forget":
            log.warning("job.reconciled", job_id=a.job_id, action=a.action, chunks=a.chunks)
    return actions


class ReconcilerThread(threading.Thread):
    """Runs :func:`reconcile_once` every ``interval`` seconds in one worker of the whole cluster.

    A Redis lock (``SET NX EX``) elects the worker that runs each round, so N workers do not re-drive
    the same job N times.
    """

    def __init__(self, store: JobStore, interval: float, stall_seconds: float) -> None:
        super().__init__(name="humanizer-reconciler", daemon=True)
        self.store, self.interval, self.stall = store, interval, stall_seconds
        self.stop_event = threading.Event()
        self.me = f"{socket.gethostname()}:{id(self)}"

    def run(self) -> None:
        while not self.stop_event.wait(self.interval):
            try:
                if self.store.claim("reconciler:lock", self.me, self.interval * 0.9):
                    reconcile_once(self.store, self.stall)
            except Exception as exc:  # Redis down: try again next round
                log.warning("reconciler.error", error=type(exc).__name__)
