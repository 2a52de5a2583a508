"""structlog JSON logging for every process (CLI, workers, API, operator).

Log events carry ids (job_id, chunk_id, task_id), counts and timings — never document text and never
secrets. A last processor drops any key that looks like it holds text or a credential, as a safety net.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog

_FORBIDDEN_KEYS = frozenset(
    {"text", "document", "content", "chunk_text", "prompt", "api_key", "password", "authorization", "token"}
)
_configured = False


def _scrub(_: Any, __: str, event: dict[str, Any]) -> dict[str, Any]:
    for key in list(event):
        if key.lower() in _FORBIDDEN_KEYS:
            event[key] = "[redacted]"
    return event


def configure_logging(level: str = "INFO", fmt: str = "json", stream: Any = None) -> None:
    """Route structlog and the standard library (Celery, kombu, uvicorn) through one renderer."""
    global _configured
    # JSON: an exception becomes an "exception" string (the traceback), not the repr of an exc_info tuple;
    # the console renderer formats exc_info itself
    final: list[Any] = (
        [structlog.processors.format_exc_info, structlog.processors.JSONRenderer()]
        if fmt == "json"
        else [structlog.dev.ConsoleRenderer(colors=False)]
    )
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _scrub,
    ]
    structlog.configure(
        # filter_by_level first: a debug call below the level costs a level check, not the whole chain
        processors=[structlog.stdlib.filter_by_level, *shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *final],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("httpx", "httpcore", "openai", "urllib3", "kubernetes"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    _configured = True


def get_logger(name: str = "humanizer") -> structlog.stdlib.BoundLogger:
    return structlog.stdlib.get_logger(name)
