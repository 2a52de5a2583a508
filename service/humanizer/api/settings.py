"""Settings of the HTTP API (env prefix ``HUMANIZER_API_``); the pipeline's own settings stay in config.py."""

from __future__ import annotations

import functools
from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class ApiConfigError(RuntimeError):
    """The API cannot start with these settings; the message says what to set."""


class ApiSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="HUMANIZER_API_", env_file=".env", extra="ignore")

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)

    # --- auth -----------------------------------------------------------------------------
    tokens: str | None = Field(default=None, description="comma-separated bearer tokens")
    tokens_file: Path | None = Field(
        default=None, description="file with bearer tokens (one per line or comma-separated)"
    )
    allow_anonymous: bool = False
    protect_ops_endpoints: bool = Field(default=False, description="require a token on /healthz, /readyz and /metrics")

    # --- limits ---------------------------------------------------------------------------
    max_body_bytes: int = Field(default=4 * 1024 * 1024, ge=1024)
    max_chunks: int | None = Field(default=None, ge=1, description="per job; default HUMANIZER_MAX_CHUNKS")
    max_active_jobs_per_token: int = Field(default=20, ge=1)
    retry_after_seconds: int = Field(default=5, ge=1)
    idempotency_ttl_seconds: int = Field(default=24 * 3600, ge=60)

    # --- streaming / health ---------------------------------------------------------------
    sse_poll_seconds: float = Field(default=0.25, gt=0, le=10)
    sse_heartbeat_seconds: float = Field(default=15.0, gt=0, le=300)
    readiness_cache_seconds: float = Field(default=5.0, ge=0, le=300)
    celery_ping_timeout: float = Field(default=1.0, gt=0, le=30)

    @field_validator("tokens_file", "max_chunks", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    def load_tokens(self) -> list[str]:
        """All configured tokens, from ``tokens`` and ``tokens_file`` (blank lines and ``#`` comments skipped)."""
        found: list[str] = []
        if self.tokens:
            found += [t.strip() for t in self.tokens.split(",") if t.strip()]
        if self.tokens_file is not None:
            try:
                content = self.tokens_file.read_text(encoding="utf-8")
            except OSError as exc:
                raise ApiConfigError(
                    f"HUMANIZER_API_TOKENS_FILE={self.tokens_file} cannot be read ({exc.strerror})"
                ) from None
            for line in content.splitlines():
                line = line.strip()
                if line and not line.startswith("#"):
                    found += [t.strip() for t in line.split(",") if t.strip()]
        return list(dict.fromkeys(found))

    def check(self) -> None:
        """Refuse to run an open API by accident."""
        if not self.load_tokens() and not self.allow_anonymous:
            raise ApiConfigError(
                "no API tokens configured: set HUMANIZER_API_TOKENS (comma-separated) or "
                "HUMANIZER_API_TOKENS_FILE (a mounted Secret file), or set HUMANIZER_API_ALLOW_ANONYMOUS=true "
                "to run the API without authentication"
            )


@functools.cache
def get_api_settings() -> ApiSettings:
    return ApiSettings()


def reset_api_settings_cache() -> None:
    get_api_settings.cache_clear()
