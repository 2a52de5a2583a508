"""The merge (``jobs/assembly.merge_job``) on a real Redis: the document comes back from the outputs and
the layout kept at creation (original whitespace, passthrough chunks as they were), a job written before
layouts were kept still merges from its chunks, and a missing output or chunk leaves the job incomplete."""

from __future__ import annotations

from typing import Any

import pytest

from humanizer.chunking import ChunkingOptions, split_document
from humanizer.jobs import assembly
from humanizer.jobs.submit import open_store

pytestmark = pytest.mark.integration

DOC = "  Alpha one.\n\n```\ncode\n```\n\r\nBeta two.\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\nGamma three.\n\n"


def _job(store: Any, job_id: str, as_dicts: bool = False) -> tuple[list[Any], dict[int, str]]:
    chunks = split_document(DOC, ChunkingOptions(max_tokens=16))
    ready = {c.index: c.text for c in chunks if c.kind != "prose"}
    store.create(job_id, {"provider": "echo", "model": "", "priority": "normal"},
                 {c.index: c.model_dump(mode="json") if as_dicts else c for c in chunks}, ready)
    store.r.hset(store.key(job_id), "status", "STARTED")
    return chunks, ready


def _rewrite_all(store: Any, job_id: str, chunks: list[Any]) -> str:
    for c in chunks:
        if c.kind == "prose":
            assert store.save_output(job_id, c.index, c.text.upper(), 1, 1)
    return "".join(c.prefix + (c.text.upper() if c.kind == "prose" else c.text) + c.suffix for c in chunks)


@pytest.mark.parametrize("as_dicts", [False, True], ids=["models", "dicts"])
def test_the_document_is_rebuilt_from_outputs_and_layout(make_stack: Any, as_dicts: bool) -> None:
    make_stack(workers=0)
    store = open_store()
    job_id = f"merge-layout-{as_dicts}"
    chunks, ready = _job(store, job_id, as_dicts)
    assert store.chunk(job_id, chunks[1].index) == chunks[1].model_dump(mode="json")
    assert len(ready) >= 2 and len(chunks) >= 5  # passthrough structures between prose chunks
    assert store.r.exists(store.key(job_id, "layout"))
    expected = _rewrite_all(store, job_id, chunks)
    assert assembly.merge_job(store, job_id) == "merged"
    assert store.r.get(store.key(job_id, "result")) == expected
    assert expected.startswith("  ALPHA ONE.\n\n```\ncode\n```\n\r\nBETA TWO.")
    assert expected.endswith("GAMMA THREE.\n\n")
    assert assembly.merge_job(store, job_id) == "already_merged"


def test_a_job_written_without_a_layout_merges_from_its_chunks(make_stack: Any) -> None:
    make_stack(workers=0)
    store = open_store()
    chunks, _ = _job(store, "merge-old")
    store.r.delete(store.key("merge-old", "layout"))  # as a job created by an earlier release
    expected = _rewrite_all(store, "merge-old", chunks)
    assert assembly.merge_job(store, "merge-old") == "merged"
    assert store.r.get(store.key("merge-old", "result")) == expected


@pytest.mark.parametrize("lose", ["output", "chunk"])
def test_a_missing_output_or_chunk_leaves_the_job_incomplete(make_stack: Any, lose: str) -> None:
    make_stack(workers=0)
    store = open_store()
    job_id = f"merge-missing-{lose}"
    chunks, _ = _job(store, job_id)
    _rewrite_all(store, job_id, chunks)
    last = chunks[-1].index
    if lose == "output":
        store.r.hdel(store.key(job_id, "out"), str(last))
    else:  # an old job (no layout) whose chunk went missing
        store.r.delete(store.key(job_id, "layout"))
        store.r.hdel(store.key(job_id, "chunks"), str(last))
    assert assembly.merge_job(store, job_id) == "incomplete"
    assert not store.r.exists(store.key(job_id, "result"))
    assert store.meta(job_id)["phase"] == "incomplete"
