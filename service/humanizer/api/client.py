"""A small client for the HTTP API, and ``submit_via_api`` for ``humanizer submit FILE --api URL``.

>>> for update in submit_via_api("report.md", "http://127.0.0.1:8000", token="..."):
...     print(update["event"], update.get("job", {}).get("progress"))
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2


class ApiError(RuntimeError):
    """An error answer from the API; ``problem`` is its RFC 9457 body."""

    def __init__(self, status: int, problem: dict[str, Any]) -> None:
        self.status = status
        self.problem = problem
        super().__init__(f"{status} {problem.get('title', 'error')}: {problem.get('detail', '')}".rstrip(": "))


class HumanizerClient:
    def __init__(self, api_url: str, token: str | None = None, timeout: float = 30.0) -> None:
        token = token if token is not None else os.environ.get("HUMANIZER_API_TOKEN")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.http = httpx2.Client(base_url=api_url.rstrip("/"), headers=headers, timeout=timeout)

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> HumanizerClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _json(self, response: httpx2.Response) -> Any:
        if response.status_code >= 400:
            try:
                problem = response.json()
            except ValueError:
                problem = {"title": response.reason_phrase, "detail": response.text[:200]}
            raise ApiError(response.status_code, problem if isinstance(problem, dict) else {"detail": str(problem)})
        return response.json()

    # ---- jobs -------------------------------------------------------------------------------
    def submit(
        self, text: str | None = None, chunks: list[str] | None = None, *, idempotency_key: str | None = None,
        **options: Any,
    ) -> dict[str, Any]:
        body = {k: v for k, v in {"text": text, "chunks": chunks, **options}.items() if v is not None}
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        return self._json(self.http.post("/v1/jobs", json=body, headers=headers))

    def job(self, job_id: str) -> dict[str, Any]:
        return self._json(self.http.get(f"/v1/jobs/{job_id}"))

    def result(self, job_id: str) -> dict[str, Any]:
        return self._json(self.http.get(f"/v1/jobs/{job_id}/result"))

    def cancel(self, job_id: str) -> dict[str, Any]:
        return self._json(self.http.delete(f"/v1/jobs/{job_id}"))

    def jobs(self, offset: int = 0, limit: int = 50) -> dict[str, Any]:
        return self._json(
            self.http.get("/v1/jobs", params={"offset": offset, "limit": limit}))

    def dead_letters(self, offset: int = 0, limit: int = 100, job_id: str | None = None) -> dict[str, Any]:
        params: dict[str, Any] = {"offset": offset, "limit": limit}
        if job_id:
            params["job_id"] = job_id
        return self._json(self.http.get("/v1/dead-letters", params=params))

    def replay(self, dead_letter_id: str) -> dict[str, Any]:
        return self._json(self.http.post(f"/v1/dead-letters/{dead_letter_id}/replay"))

    def ready(self) -> tuple[bool, dict[str, Any]]:
        response = self.http.get("/readyz")
        return response.status_code == 200, response.json()

    # ---- events -----------------------------------------------------------------------------
    def events(self, job_id: str, reconnects: int = 5, poll: float = 1.0) -> Iterator[dict[str, Any]]:
        """Follow a job: yields ``{"event": "progress"|"end", "job": {...}}`` until it ends.

        Reconnects if the stream drops; after ``reconnects`` failures it falls back to polling.
        """
        failures = 0
        while failures <= reconnects:
            try:
                with self.http.sse(f"/v1/jobs/{job_id}/events", timeout=httpx2.Timeout(10.0, read=60.0)) as source:
                    if source.response.status_code >= 400:
                        source.response.read()
                        self._json(source.response)
                    for sse in source:
                        if sse.event == "error":
                            raise ApiError(404, {"title": "Job not found", **(sse.json() or {})})  # type: ignore[dict-item]
                        if sse.event in ("progress", "end"):
                            yield {"event": sse.event, "job": sse.json()}
                            if sse.event == "end":
                                return
            except (httpx2.TransportError, httpx2.SSEError):
                failures += 1
                time.sleep(min(5.0, 0.5 * 2**failures))
        while True:  # the stream kept failing: poll instead
            job = self.job(job_id)
            ended = job["status"] in ("SUCCESS", "FAILURE", "CANCELLED")
            yield {"event": "end" if ended else "progress", "job": job}
            if ended:
                return
            time.sleep(poll)


def submit_via_api(
    file: str | Path,
    api_url: str,
    token: str | None = None,
    *,
    style: str | None = None,
    custom_prompt: str | None = None,
    verify: bool = True,
    idempotency_key: str | None = None,
    with_result: bool = True,
    **options: Any,
) -> Iterator[dict[str, Any]]:
    """Submit FILE to the API and follow it.

    Yields ``{"event": "submitted", "job_id", "total_chunks", "model_chunks", "estimated_completion_time"}``,
    then ``{"event": "progress", "job": {...}}`` on each change, and last ``{"event": "end", "job": {...},
    "result": {...} | None, "problem": {...} | None}`` (result = text + verification report on success).
    Raises :class:`ApiError` when the submission is refused (the problem says why).
    """
    text = Path(file).read_text(encoding="utf-8")
    with HumanizerClient(api_url, token) as client:
        accepted = client.submit(text, style=style, custom_prompt=custom_prompt, verify=verify,
                                 idempotency_key=idempotency_key, **options)
        job_id = accepted["job_id"]
        yield {"event": "submitted", **{k: accepted[k] for k in
               ("job_id", "total_chunks", "model_chunks", "estimated_completion_time")}}
        for update in client.events(job_id):
            if update["event"] != "end":
                yield update
                continue
            result: dict[str, Any] | None = None
            problem: dict[str, Any] | None = None
            if with_result:
                try:
                    result = client.result(job_id)
                except ApiError as exc:
                    problem = exc.problem
            yield {**update, "result": result, "problem": problem}
            return
