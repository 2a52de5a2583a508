"""A deleted HumanizeJob's job is cancelled, without a finalizer on the object.

A finalizer would make every HumanizeJob wait for the operator to go away: with the operator gone
(``helm uninstall``, the namespace deleted, the Deployment scaled to zero) the objects stay Terminating
forever and block the namespace's deletion. Instead:

* ``humanizejob_deleted`` (a kopf event handler, which needs no finalizer) cancels the job the moment
  the watch reports the object deleted, or marked for deletion (``deletionTimestamp``, e.g. a
  foreground deletion waiting for the output ConfigMap).
* ``cancel_orphans`` (called by the status loop every pass, the first one at start-up) cancels what
  the watch could not see: unfinished jobs submitted for a HumanizeJob (``origin_*`` fields of the job
  record, ``job_id_for(uid)``) of a watched namespace whose object no longer exists -- deleted while
  the operator was down, or while Redis was unreachable.

Cancelling stops the chunks not yet started; those a worker already sent to the provider finish
(their output is kept in Redis until the result TTL). Nothing waits for them: the object is gone.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping
from typing import Any

import kopf
import redis

from humanizer.jobs.store import JobNotFound, JobStore
from humanizer.jobs.submit import ORIGIN_PREFIX
from humanizer.redis_client import RedisUnavailable
from humanizer_operator import k8s, service
from humanizer_operator.handlers.jobs import GVR, ORIGIN_KEYS, job_id_for
from humanizer_operator.scope import Scope

log = logging.getLogger("humanizer_operator.deletion")


def cancel_for(body: Mapping[str, Any], why: str) -> bool:
    """Cancel the job of a deleted (or deleting) HumanizeJob; True if it was still running."""
    meta = body["metadata"]
    job_id = (body.get("status") or {}).get("jobId") or job_id_for(meta["uid"])
    try:
        cancelled = service.orchestration().cancel_job(job_id)
    except JobNotFound:
        return False  # never submitted, or expired from Redis
    if cancelled:
        log.info("HumanizeJob %s/%s %s: cancelled job %s", meta["namespace"], meta["name"], why, job_id)
    return bool(cancelled)


def _deleting(type: str, body: Any, **_: Any) -> bool:
    return type == "DELETED" or bool(body["metadata"].get("deletionTimestamp"))


# the filter keeps kopf from invoking (and logging) the handler on every other event
@kopf.on.event(*GVR, when=_deleting)
def humanizejob_deleted(type: str, body: Any, logger: Any, **_: Any) -> None:
    """On the watch's DELETED event (or a deletionTimestamp): cancel the job at once."""
    try:
        cancel_for(body, "deleted" if type == "DELETED" else "is being deleted")
    except (RedisUnavailable, redis.RedisError) as exc:
        # event handlers are not retried: the status loop cancels it as an orphan once Redis answers
        logger.warning("cannot cancel the job of the deleted HumanizeJob yet (the status loop will): %s", exc)


def orphan_candidates(store: JobStore, scope: Scope) -> dict[str, dict[str, str]]:
    """Unfinished jobs submitted for a HumanizeJob of a namespace in ``scope``: job id -> origin."""
    prefix = job_id_for("")
    job_ids = [j for j in store.active_job_ids() if j.startswith(prefix)]
    out: dict[str, dict[str, str]] = {}
    if not job_ids:
        return out
    rows = store.fields_of(job_ids, [f"{ORIGIN_PREFIX}{k}" for k in ORIGIN_KEYS])
    for job_id, values in zip(job_ids, rows, strict=True):
        origin = dict(zip(ORIGIN_KEYS, values, strict=True))
        # an "hj-..." job without the marker came from the HTTP API (or an older operator): not ours
        if origin["kind"] != k8s.KIND or not origin["namespace"] or not origin["name"] or not origin["uid"]:
            continue
        if job_id != job_id_for(origin["uid"]) or not scope.matches(origin["namespace"]):
            continue
        out[job_id] = {k: str(v) for k, v in origin.items()}
    return out


def cancel_orphans(
    store: JobStore, scope: Scope, present_uids: Collection[str], unlisted: Collection[str] = ()
) -> list[str]:
    """Cancel the jobs whose HumanizeJob is gone; returns their ids.

    ``present_uids``: the uids of the HumanizeJobs just listed; ``unlisted``: namespaces whose list
    failed this pass (their jobs are left for the next one). A job whose object is not in the list is
    read once more before it is cancelled: the list may predate an object created since."""
    cancelled: list[str] = []
    for job_id, origin in orphan_candidates(store, scope).items():
        namespace, name, uid = origin["namespace"], origin["name"], origin["uid"]
        if uid in present_uids or namespace in unlisted:
            continue
        current = k8s.get_humanizejob(namespace, name)
        if current is not None and current["metadata"].get("uid") == uid:
            continue
        try:
            if service.orchestration().cancel_job(job_id):
                cancelled.append(job_id)
                log.info("job %s: its HumanizeJob %s/%s (uid %s) no longer exists: cancelled", job_id, namespace,
                         name, uid)
        except JobNotFound:
            continue
    return cancelled
