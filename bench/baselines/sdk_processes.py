"""The SDK ceiling: the provider calls alone, through the official SDK, in as many processes as our workers.

``P`` processes each run ``asyncio`` + ``openai.AsyncOpenAI`` on the SDK's aiohttp client with ``W/P``
calls in flight, over their share of the same N chunks, against the same fake server. Each makes the very
call our provider makes (``client.post("/chat/completions", body=..., cast_to=dict)``) with the very body
it sends for that chunk (``bodies``: the system prompt, the chunk in ``<text>`` tags, the sized
``max_tokens``), built before the clock starts. There is no queue,
no Redis, no job record and no merge; the chunks are in memory before the clock starts and every process
starts at the same moment. No design that calls the provider through the SDK with P processes on this
machine can beat this number, so it is the ceiling our fan-out is measured against (scenario 1).

Each child is ``python -m bench.baselines.sdk_processes URL W N TAG K P``: it warms up (connections,
imports), prints ``ready``, waits for a line on stdin, makes its calls and prints one JSON line: the
monotonic time it finished (CLOCK_MONOTONIC is one clock for every process on the machine) and the CPU
seconds its calls took.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]


def bodies(texts: list[str], model: str = "fake-model") -> list[dict[str, Any]]:
    """The request bodies our provider sends for ``texts`` as pre-split chunks of a job with default options
    (``OpenAIProvider._body`` of the worker's ``RewriteRequest``: style, no context, ``max_tokens`` sized
    from the chunk's tokens as the pipeline sizes it)."""
    from humanizer.chunking import count_tokens
    from humanizer.config import Settings
    from humanizer.providers import RewriteRequest
    from humanizer.providers.openai_provider import OpenAIProvider
    from humanizer.providers.sizing import size_max_tokens

    s = Settings()
    provider = OpenAIProvider(api_key="unused", model=model, max_tokens=s.openai_max_tokens)
    out = []
    for text in texts:
        cap = size_max_tokens(count_tokens(text), s.openai_max_tokens, s.max_tokens_ratio, s.max_tokens_margin)
        out.append(provider._body(RewriteRequest(text=text, style=s.style, max_tokens=cap))[1])
    return out


async def _calls(url: str, key: str, texts: list[str], w: int, go: Any) -> dict[str, float]:
    import openai

    warm = bodies([f"warm-up {os.getpid()} {i}" for i in range(w)])
    todo = bodies(texts)

    client = openai.AsyncOpenAI(
        base_url=url, api_key=key, max_retries=0, timeout=60.0, http_client=openai.DefaultAioHttpClient()
    )
    slots = asyncio.Semaphore(w)

    async def one(body: dict[str, Any]) -> None:
        async with slots:
            reply = await client.post("/chat/completions", body=body, cast_to=dict)
            if not reply["choices"][0]["message"]["content"]:
                raise RuntimeError("empty reply")

    async with client:
        await asyncio.gather(*(one(b) for b in warm))  # connections, imports
        await asyncio.to_thread(go)
        cpu = time.process_time()
        await asyncio.gather(*(one(b) for b in todo))
        return {"finished": time.monotonic(), "cpu_seconds": time.process_time() - cpu}


def child(argv: list[str]) -> None:
    from bench.common import FAKE_KEY, chunk_texts

    url, w, n, tag, k, procs = argv[0], int(argv[1]), int(argv[2]), argv[3], int(argv[4]), int(argv[5])
    texts = chunk_texts(n, tag)[k::procs]

    def go() -> None:
        print("ready", flush=True)
        sys.stdin.readline()

    print(json.dumps(asyncio.run(_calls(url, FAKE_KEY, texts, w, go))), flush=True)


def run(url: str, n: int, w: int, procs: int, tag: str, timeout: float = 120.0) -> dict[str, Any]:
    """One round: N = n calls, W = w in flight in total over ``procs`` processes. Returns the makespan
    (the go signal → the last process done) and the CPU seconds of the calling processes."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "service")])}
    children = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bench.baselines.sdk_processes",
                url,
                str(w // procs),
                str(n),
                tag,
                str(k),
                str(procs),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
            cwd=REPO,
        )
        for k in range(procs)
    ]

    def kill_all() -> None:
        for c in children:
            if c.poll() is None:
                c.kill()

    stuck = threading.Timer(timeout, kill_all)  # a child hanging before "ready" must not hang the run
    stuck.start()
    try:
        for c in children:
            assert c.stdout is not None
            if c.stdout.readline().strip() != "ready":
                raise RuntimeError(f"SDK baseline process {c.pid} did not start (or timed out warming up)")
        stuck.cancel()
        t0 = time.monotonic()
        for c in children:
            assert c.stdin is not None
            c.stdin.write("go\n")
            c.stdin.flush()
        done = []
        for c in children:
            out, _ = c.communicate(timeout=timeout)
            if c.returncode != 0:
                raise RuntimeError(f"SDK baseline process exited {c.returncode}")
            done.append(json.loads(out.strip().splitlines()[-1]))
        return {
            "makespan": max(d["finished"] for d in done) - t0,
            "cpu_seconds": {"clients": sum(d["cpu_seconds"] for d in done)},
        }
    finally:
        stuck.cancel()
        kill_all()
        for c in children:
            c.wait()


if __name__ == "__main__":
    child(sys.argv[1:])
