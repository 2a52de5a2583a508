"""Group commit of chunk outputs (``worker/writer.py``) against a real Redis server.

Many outputs that finish together must reach Redis in few round trips, each chunk first-writer-wins with
the job's counters moved exactly once, and a Redis failure must reach every waiting caller.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from humanizer.jobs.store import ChunkOutput, JobNotFound, JobStore
from humanizer.local.redis_server import RedisServer
from humanizer.worker.writer import OutputWriter

pytestmark = pytest.mark.integration


@pytest.fixture()
def store(tmp_path: Path) -> Iterator[JobStore]:
    with RedisServer(data_dir=tmp_path / "redis") as server:
        client = redis.Redis.from_url(server.url, decode_responses=True)
        yield JobStore(client, prefix="hzw")
        client.close()


def new_job(store: JobStore, job_id: str, n: int) -> None:
    chunks = {i: {"index": i, "text": f"chunk {i}", "kind": "prose"} for i in range(n)}
    store.create(job_id, {"provider": "openai", "model": "m"}, chunks, {})


class CountingStore(JobStore):
    """The real store, counting the ``save_outputs`` round trips the writer makes."""

    def __init__(self, inner: JobStore) -> None:
        super().__init__(inner.r, prefix=inner.prefix)
        self.writes: list[int] = []

    def save_outputs(self, outputs):  # type: ignore[no-untyped-def]
        self.writes.append(len(outputs))
        return super().save_outputs(outputs)


def test_save_outputs_is_first_writer_wins_per_chunk(store: JobStore) -> None:
    new_job(store, "j1", 3)
    firsts = store.save_outputs([
        ChunkOutput("j1", 0, "zero", 5, 7),
        ChunkOutput("j1", 1, "one", 1, 1, cache_key="hzw:cache:one", cache_ttl=60),
        ChunkOutput("j1", 0, "zero again", 5, 7),  # a duplicate in the same round trip loses
    ])
    assert firsts == [True, True, False]
    assert store.save_output("j1", 1, "one again") is False
    assert store.outputs("j1") == {0: "zero", 1: "one"}
    meta = store.meta("j1")
    assert (meta["done"], meta["tokens_in"], meta["tokens_out"], meta["status"]) == ("2", "6", "8", "PROGRESS")
    assert store.r.get("hzw:cache:one") == "one" and 0 < store.r.ttl("hzw:cache:one") <= 60


def test_outputs_finishing_together_share_round_trips(store: JobStore) -> None:
    counting = CountingStore(store)
    new_job(store, "j2", 200)
    writer = OutputWriter(counting)

    async def finish_all() -> list[bool]:
        # 200 calls ending at once, plus a second answer for 20 of them (a redelivered batch)
        saves = [writer.save(ChunkOutput("j2", i, f"out {i}")) for i in range(200)]
        saves += [writer.save(ChunkOutput("j2", i, f"late {i}")) for i in range(20)]
        return list(await asyncio.gather(*saves))

    firsts = asyncio.run(finish_all())
    assert firsts == [True] * 200 + [False] * 20
    assert sum(counting.writes) == 220
    assert len(counting.writes) < 10, counting.writes  # grouped, not one round trip per output
    assert store.outputs("j2") == {i: f"out {i}" for i in range(200)}
    assert store.meta("j2")["done"] == "200"


def test_a_redis_failure_reaches_every_waiting_caller(store: JobStore, tmp_path: Path) -> None:
    dead = JobStore(redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.5), prefix="hzw")
    writer = OutputWriter(dead)

    async def save_some() -> list[object]:
        saves = [writer.save(ChunkOutput("j3", i, "x")) for i in range(5)]
        return list(await asyncio.gather(*saves, return_exceptions=True))

    results = asyncio.run(save_some())
    assert len(results) == 5 and all(isinstance(r, redis.ConnectionError) for r in results), results

    # the writer is usable again afterwards (nothing stuck in a "writing" state)
    writer.store = store
    new_job(store, "j3", 1)
    assert asyncio.run(writer.save(ChunkOutput("j3", 0, "ok"))) is True


def test_batch_state_reads_a_batch_start_in_one_go(store: JobStore) -> None:
    new_job(store, "j4", 4)
    store.save_output("j4", 1, "done already")
    meta, todo, chunks = store.batch_state("j4", [0, 1, 2])
    assert meta["status"] == "PROGRESS" and meta["total"] == "4"
    assert todo == [0, 2]
    assert chunks == {i: {"index": i, "text": f"chunk {i}", "kind": "prose"} for i in (0, 2)}

    with pytest.raises(JobNotFound):
        store.batch_state("no-such-job", [0])
    store.r.hdel(store.key("j4", "chunks"), "3")
    with pytest.raises(JobNotFound, match="chunks"):
        store.batch_state("j4", [2, 3])


def test_a_writer_cancelled_before_it_ran_does_not_strand_later_outputs(store: JobStore) -> None:
    new_job(store, "j5", 2)
    writer = OutputWriter(store)

    async def scenario() -> list[bool]:
        first = asyncio.ensure_future(writer.save(ChunkOutput("j5", 0, "a")))
        await asyncio.sleep(0)  # queued; the drain task exists but has not run
        assert writer._writing is not None
        writer._writing.cancel()  # e.g. the loop shutting down under it
        await asyncio.sleep(0)
        second = writer.save(ChunkOutput("j5", 1, "b"))  # starts a new drain, which takes both
        return list(await asyncio.wait_for(asyncio.gather(first, second), 10))

    assert asyncio.run(scenario()) == [True, True]
    assert store.outputs("j5") == {0: "a", 1: "b"}
