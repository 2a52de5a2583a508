"""The JSON log lines of ``configure_logging``: exceptions as tracebacks, text-like keys redacted."""

from __future__ import annotations

import io
import json
import logging

import pytest

from humanizer.logging import configure_logging, get_logger

pytestmark = pytest.mark.unit


@pytest.fixture
def stream():
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    out = io.StringIO()
    configure_logging("INFO", "json", stream=out)
    yield out
    root.handlers[:], level = saved
    root.setLevel(level)


def _lines(out: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in out.getvalue().splitlines() if line.strip()]


def test_an_exception_from_a_library_logger_is_its_traceback(stream):
    try:
        raise RuntimeError("broker went away")
    except RuntimeError:
        logging.getLogger("celery.worker").exception("task failed")
    (line,) = _lines(stream)
    assert line["event"] == "task failed"
    assert "exc_info" not in line
    assert "Traceback (most recent call last)" in line["exception"]
    assert "RuntimeError: broker went away" in line["exception"]


def test_an_exception_from_structlog_is_its_traceback(stream):
    try:
        raise ValueError("bad option")
    except ValueError:
        get_logger("humanizer.test").exception("job.failed", job_id="j1")
    (line,) = _lines(stream)
    assert line["job_id"] == "j1"
    assert "ValueError: bad option" in line["exception"]
    assert "<traceback" not in json.dumps(line)


def test_text_and_secret_keys_are_redacted(stream):
    get_logger("humanizer.test").info("chunk.done", text="the document", api_key="sk-secret", chunk_id=3)
    (line,) = _lines(stream)
    assert line["text"] == "[redacted]" and line["api_key"] == "[redacted]" and line["chunk_id"] == 3
    assert "sk-secret" not in stream.getvalue()
