"""``JobStore`` owns the Redis keys of a job: no module outside the store layer reaches through a store to
its Redis client, or spells a job key itself. (The store layer: ``jobs/store.py`` and the modules that own
a part of the layout through it — dead letters, the scheduler's bookkeeping, the chunk cache and the
throughput counters, which are handed the client by the store.)"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = [ROOT / "service" / "humanizer", ROOT / "operator" / "humanizer_operator"]
STORE_LAYER = {
    "service/humanizer/jobs/store.py",
    "service/humanizer/jobs/deadletters.py",
    "service/humanizer/jobs/scheduler.py",
    "service/humanizer/jobs/chunk_cache.py",
    "service/humanizer/monitoring/throughput.py",
}
RAW_CLIENT = re.compile(r"\bstore\.r\b")  # store.r / self.store.r
JOB_KEY = re.compile(r""":job:\{|:job:" *\+|"job:\{""")


def _modules() -> list[tuple[str, str]]:
    return [(str(p.relative_to(ROOT)), p.read_text(encoding="utf-8")) for pkg in PACKAGES for p in pkg.rglob("*.py")]


def test_no_module_reaches_through_the_store_to_redis() -> None:
    offenders = [f"{name}:{text[: m.start()].count(chr(10)) + 1}" for name, text in _modules()
                 if name not in STORE_LAYER for m in RAW_CLIENT.finditer(text)]
    assert not offenders, f"raw Redis use of a JobStore outside the store layer: {offenders}"


def test_no_module_spells_a_job_key() -> None:
    offenders = [f"{name}:{text[: m.start()].count(chr(10)) + 1}" for name, text in _modules()
                 if name not in STORE_LAYER for m in JOB_KEY.finditer(text)]
    assert not offenders, f"job keys built outside JobStore: {offenders}"


def test_the_check_finds_what_it_forbids() -> None:
    assert RAW_CLIENT.search("x = self.store.r.hget(k)") and RAW_CLIENT.search("store.r.zrem(a, b)")
    assert JOB_KEY.search('pipe.hget(f"{prefix}:job:{job_id}", "status")')
    assert not RAW_CLIENT.search("store.record_chunk_seconds(1.0)")
