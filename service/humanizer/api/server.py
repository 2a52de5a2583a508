"""Run the API under uvicorn: ``serve(host, port)`` (also ``python -m humanizer.api``)."""

from __future__ import annotations

import uvicorn

from humanizer.api.app import create_app
from humanizer.api.settings import get_api_settings
from humanizer.config import get_settings
from humanizer.logging import configure_logging


def serve(host: str | None = None, port: int | None = None, *, log_level: str | None = None) -> None:
    """Serve the API until SIGINT/SIGTERM. Raises ApiConfigError before binding if no token is configured."""
    settings = get_settings()
    api_settings = get_api_settings()
    configure_logging(log_level or settings.log_level, settings.log_format)
    app = create_app(settings, api_settings)
    config = uvicorn.Config(
        app,
        host=host or api_settings.host,
        port=port or api_settings.port,
        log_config=None,  # our structlog handlers (configure_logging) render uvicorn's records too
        access_log=False,  # one structured line per request comes from ObservabilityMiddleware
        proxy_headers=True,
        timeout_graceful_shutdown=10,
        server_header=False,
    )
    uvicorn.Server(config).run()
