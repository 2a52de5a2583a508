"""Merge and verification of a job, from what Redis holds (the task wrappers live in the worker)."""

from __future__ import annotations

from typing import Any

from humanizer.jobs import lifecycle
from humanizer.jobs.models import JobStatus
from humanizer.jobs.store import JobStore
from humanizer.verification import VerificationOptions, verify_document


def merge_job(store: JobStore, job_id: str) -> str:
    """Reassemble the document if every chunk has exactly one output.

    Returns ``merged``, ``already_merged``, ``ended`` (cancelled/stopped before), ``failed`` (dead
    letters) or ``incomplete`` (outputs missing without a recorded failure: left for the reconciler).
    """
    meta, has_result, layout, outputs, failed = store.merge_inputs(job_id)  # one round trip
    if JobStatus(meta["status"]).terminal:
        return "ended"
    if has_result:
        return "already_merged"
    total = int(meta["total"])
    # a failed chunk whose original text was kept (e.g. truncated replies) does not stop the merge
    failures = {i: f for i, f in failed.items() if not f.get("kept_original")}
    if failures:
        first = failures[min(failures)]
        lifecycle.fail(
            store,
            job_id,
            f"{len(failures)} of {total} chunks failed and were dead-lettered "
            f"(chunks {_preview(sorted(failures))}); first: chunk {min(failures)}: "
            f"{first.get('error_kind')}: {first.get('message')}",
        )
        return "failed"
    expected = set(range(total))
    if set(outputs) != expected or layout is None or len(layout) != total:
        missing = sorted(expected - set(outputs))
        store.set_fields(job_id, phase="incomplete", missing=_preview(missing))
        return "incomplete"
    # the outputs hold every chunk's final text: rewrites, kept originals, and the passthrough chunks' own
    # text (stored when the job was created); the layout puts the original whitespace around them
    text = "".join(f"{prefix}{outputs[i]}{suffix}" for i, (prefix, suffix) in enumerate(layout))
    store.save_result(job_id, text, phase="merged")
    return "merged"


def verify_job(store: JobStore, job_id: str) -> dict[str, Any]:
    """Compute and store the verification report for a merged job."""
    meta = store.meta(job_id)
    total = int(meta["total"])
    chunks = store.chunks(job_id)
    outputs = store.outputs(job_id)
    flags = store.flags(job_id)
    kept = {i: v for i, v in flags.items() if v.startswith(KEPT_ORIGINAL_PREFIXES)}
    placeholder_errors = {i: v for i, v in flags.items() if i not in kept}
    skip = {i for i, c in chunks.items() if c.get("kind") != "prose"}
    report = verify_document(
        [chunks[i]["text"] for i in range(total)],
        [outputs[i] for i in range(total)],
        VerificationOptions(),
        placeholder_errors=placeholder_errors or None,
        skip=skip,
        kept_original=kept or None,
    )
    data = report.model_dump(mode="json")
    targets = store.target_figures(job_id, meta)
    if targets:
        data["targets"] = [t.model_dump(mode="json") for t in targets]
    store.save_report(job_id, data)
    return data


#: Flags that say why a chunk kept its original text for a reason other than altered placeholders.
KEPT_ORIGINAL_PREFIXES = ("truncated:",)


def _preview(indices: list[int], limit: int = 10) -> str:
    head = ", ".join(str(i) for i in indices[:limit])
    return head + (f", … (+{len(indices) - limit})" if len(indices) > limit else "")
