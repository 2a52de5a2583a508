"""``humanizer eval DIR`` as a user runs it: a subprocess, real Redis and workers; the offline provider over
samples/, and the real openai SDK against the fake server."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from humanizer.local.stack import LocalStack
from tests.integration.test_cli import humanizer, one_line_error

pytestmark = pytest.mark.integration

SAMPLES = Path(__file__).resolve().parents[2] / "samples"


def test_eval_samples_with_the_offline_provider() -> None:
    proc = humanizer("eval", str(SAMPLES), "--local", "1", "--provider", "offline", "--json")
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(proc.stdout)
    names = sorted(p.name for p in SAMPLES.glob("*.md"))
    assert [d["document"] for d in report["documents"]] == names
    assert report["provider"] == "offline"
    (doc,) = [d for d in report["documents"] if d["document"] == "remote-work-report.md"]
    # the figures README.md quotes (the offline rewriter is deterministic)
    assert (doc["tell_before"], doc["tell_after"]) == (46.6, 15.1), doc
    assert doc["status"] == "SUCCESS" and doc["verification_passed"] is True and doc["chunks_failed"] == 0
    assert 0.9 < doc["length_ratio"] < 1.05
    assert doc["tokens_in"] > 0 and doc["tokens_out"] > 0 and doc["cost_usd"] == 0.0
    assert doc["second_pass_calls"] == 0, "no second pass for the offline provider"
    assert doc["seconds"] is not None and doc["seconds"] > 0
    total = report["total"]
    assert total["documents"] == len(names) == total["succeeded"] == total["verification_passed"]
    assert total["tokens_in"] == sum(d["tokens_in"] for d in report["documents"])
    if len(names) == 1:
        assert (total["tell_before"], total["tell_after"]) == (46.6, 15.1)
    print(f"\nFIGURE eval samples/ offline: tells {total['tell_before']} -> {total['tell_after']}, "
          f"length ratio {total['length_ratio']}, {total['seconds']} s")


def test_eval_through_the_openai_sdk_and_the_fake_server(stack: LocalStack, fake_llm: Any, tmp_path: Path) -> None:
    fake_llm.reset()
    plain = "The harbour office hired 12 people this spring. Everyone reads the weekly notes and answers them.\n"
    faulty = ("It is important to note that the quarry office hired 31 people. Furthermore, the new staff "
              "utilizes robust tools and reads the notes.\n")
    (tmp_path / "a-plain.md").write_text(plain)
    (tmp_path / "b-faulty.txt").write_text(faulty)
    (tmp_path / "ignored.bin").write_bytes(b"\x00\x01")
    # the first reply to the faulty document drops its number; the second pass puts it back
    fake_llm.configure(faults=[{"kind": "drop_number", "match": "quarry", "times_per_text": 1}])
    env = {**stack.env, "HUMANIZER_MODEL_PRICES": json.dumps({"fake-model": [1.0, 2.0]})}
    out_dir = tmp_path / "out"
    proc = humanizer("eval", str(tmp_path), "--json", "--out-dir", str(out_dir), env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(proc.stdout)
    assert (report["provider"], report["model"]) == ("openai", "fake-model")
    docs = {d["document"]: d for d in report["documents"]}
    assert sorted(docs) == ["a-plain.md", "b-faulty.txt"]
    a, b = docs["a-plain.md"], docs["b-faulty.txt"]
    assert a["second_pass_calls"] == 0 and (b["second_pass_calls"], b["second_pass_kept"]) == (1, 1)
    assert a["verification_passed"] and b["verification_passed"], "the second pass fixed the dropped number"
    assert b["tell_before"] > b["tell_after"], b
    requests = fake_llm.stats()["requests"]
    faulted = [r for r in requests if r["fault"] == "drop_number"]
    revised = [r for r in requests if r["revision"]]
    assert len(requests) == 3 and len(faulted) == 1 and len(revised) == 1
    assert revised[0]["text_hash"] == faulted[0]["text_hash"], "the second pass is for the faulty document's chunk"
    for d in (a, b):
        assert d["tokens_in"] > 0 and d["tokens_out"] > 0
        assert d["cost_usd"] == pytest.approx((d["tokens_in"] * 1.0 + d["tokens_out"] * 2.0) / 1e6, abs=2e-6)
    total = report["total"]
    assert total["tokens_out"] == a["tokens_out"] + b["tokens_out"] and total["second_pass_calls"] == 1
    assert "31 people" in (out_dir / "b-faulty.txt").read_text()

    table = humanizer("eval", str(tmp_path), "--glob", "a-*.md", env={**env, "COLUMNS": "200"})
    assert table.returncode == 0, table.stderr[-2000:]
    assert "a-plain.md" in table.stdout and "b-faulty" not in table.stdout
    assert "PASS" in table.stdout and "total (1)" in table.stdout and "fake-model" in table.stdout


def test_eval_refuses_a_folder_without_documents(tmp_path: Path) -> None:
    (tmp_path / "notes.bin").write_bytes(b"x")
    one_line_error(humanizer("eval", str(tmp_path)), "no documents")
    one_line_error(humanizer("eval", str(tmp_path / "missing")), "not a directory")
