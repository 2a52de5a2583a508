"""HumanizeJob status: phases, and the status computed from a job's view in the store (pure)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from humanizer.jobs.models import JobStatus, JobView
from humanizer_operator import k8s

PENDING, RUNNING, SUCCEEDED, FAILED, CANCELLED = "Pending", "Running", "Succeeded", "Failed", "Cancelled"
TERMINAL_PHASES = frozenset({SUCCEEDED, FAILED, CANCELLED})


def failed_status(
    conditions: Sequence[Mapping[str, Any]] | None, reason: str, message: str, generation: int | None
) -> dict[str, Any]:
    now = k8s.rfc3339()
    return {
        "phase": FAILED,
        "message": message,
        "completionTime": now,
        "conditions": k8s.set_condition(conditions, "Failed", True, reason, message, generation, now),
        "observedGeneration": generation,
    }


def mirrored(view: JobView) -> dict[str, Any]:
    """The status fields that follow the job record (counts, tokens; the AI-tell score once verified, the
    second passes once there was one), whatever the phase."""
    p = view.progress
    out: dict[str, Any] = {
        "progress": {"done": p.completed, "failed": p.failed, "total": p.total, "summary": f"{p.completed}/{p.total}"},
        "tokens": {"input": view.tokens_in, "output": view.tokens_out},
        "retries": view.retries,
        "deadLetters": view.dead_letters,
    }
    if view.targets:  # a job with fallback targets: what each target of its chain did
        out["targets"] = [
            {"name": t.name, "model": t.model, "chunks": t.chunks, "calls": t.calls, "errors": sum(t.errors.values()),
             "skipped": t.skipped, "fallovers": t.fallovers, "tokens": {"input": t.tokens_in, "output": t.tokens_out},
             "costUSD": f"{t.cost_usd:.6f}", "secondPasses": t.second_passes}
            for t in view.targets
        ]
    if view.ai_tell_score is not None:
        before, after = view.ai_tell_score.before, view.ai_tell_score.after
        out["aiTellScore"] = {"before": before, "after": after, "summary": f"{before:.1f} → {after:.1f}"}
    if view.second_pass is not None:
        sp = view.second_pass
        out["secondPass"] = {
            "calls": sp.calls, "kept": sp.kept, "overBudget": sp.over_budget,
            "tokens": {"input": sp.tokens_in, "output": sp.tokens_out},
        }
    return out


def phase_of(status: JobStatus) -> str:
    if status == JobStatus.SUCCESS:
        return SUCCEEDED
    if status == JobStatus.FAILURE:
        return FAILED
    if status == JobStatus.CANCELLED:
        return CANCELLED
    return RUNNING


def changed(current: Mapping[str, Any], wanted: Mapping[str, Any]) -> dict[str, Any]:
    """The entries of ``wanted`` that differ from ``current`` (what a status patch must carry)."""
    return {k: v for k, v in wanted.items() if current.get(k) != v}
