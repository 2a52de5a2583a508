"""A worker process's part in the fair scheduler (``jobs/scheduler.py``), on a daemon thread.

Every ``interval`` seconds it registers the process's capacity (the batches it should hold, so the
window follows the workers that are really up, autoscaled or not), releases what fits in the window
(a refill that a lost completion or a restarted Redis would otherwise delay), and watches Redis' run id:
a new one means Redis restarted and may have lost the last second of writes (messages, outputs, the
scheduler's bookkeeping), so the unfinished jobs are reconciled at once (one worker of the cluster, by a
lock named for the new run id) instead of after the stall threshold.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading

from humanizer.config import Settings
from humanizer.jobs import dispatch
from humanizer.jobs.scheduler import worker_capacity
from humanizer.jobs.store import JobStore
from humanizer.logging import get_logger

log = get_logger("humanizer.scheduler")


class SchedulingThread(threading.Thread):
    def __init__(
        self, store: JobStore, settings: Settings, concurrency: int, interval: float = 5.0, spare: int = 0
    ) -> None:
        super().__init__(name="humanizer-scheduling", daemon=True)
        self.store, self.settings, self.interval = store, settings, interval
        self.node = f"{socket.gethostname()}:{os.getpid()}"
        self.capacity, self.spare = worker_capacity(concurrency), spare
        self.stop_event = threading.Event()
        self.run_id: str | None = None

    def tick(self) -> None:
        sched = dispatch.get_scheduler(self.settings)
        sched.register_worker(self.node, self.capacity, ttl=3 * self.interval, spare=self.spare)
        self._watch_restart()
        dispatch.release_and_send(sched)

    def _watch_restart(self) -> None:
        run_id = self.store.redis_run_id()
        before, self.run_id = self.run_id, run_id
        if not before or before == run_id:
            return
        if not self.store.claim(f"reconciler:restart:{run_id}", self.node, 3600):
            return  # another worker reconciles after this restart
        from humanizer.jobs.reconcile import reconcile_once

        actions = reconcile_once(self.store, stall_seconds=0.0)
        log.warning("redis.restarted", jobs=len(actions))

    def run(self) -> None:
        while True:
            try:
                self.tick()
            except Exception as exc:  # Redis down or restarting: try again next round
                log.warning("scheduler.error", error=type(exc).__name__)
            if self.stop_event.wait(self.interval):
                break
        with contextlib.suppress(Exception):  # best effort at shutdown; the registration expires anyway
            dispatch.get_scheduler(self.settings).unregister_worker(self.node)
