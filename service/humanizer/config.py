"""All settings, read from the environment (and an optional ``.env``) with pydantic-settings.

Environment names from the product brief are kept as they are (``OPENAI_API_KEY``, ``REDIS_HOST``,
``CELERY_WORKER_CONCURRENCY`` ...); settings that are ours carry the ``HUMANIZER_`` prefix.
"""

from __future__ import annotations

import functools
import json
from typing import Literal
from urllib.parse import quote

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from humanizer.providers.targets import Target, check_unique, parse_also_on

DEFAULT_KEY_PREFIX = "hz"
QUEUE_NAMES = ("humanize", "control")  # the logical queues: chunk batches; merge and verify


def queue_name_for(key_prefix: str, logical: str) -> str:
    """``humanize``/``control`` with the default key prefix (as always), else ``<prefix>.humanize``..."""
    return logical if key_prefix == DEFAULT_KEY_PREFIX else f"{key_prefix}.{logical}"


def broker_key_prefix_for(key_prefix: str) -> str:
    """kombu's ``global_keyprefix``: none with the default key prefix, else ``<prefix>:``."""
    return "" if key_prefix == DEFAULT_KEY_PREFIX else f"{key_prefix}:"


def _env(*names: str) -> AliasChoices:
    return AliasChoices(*names)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore", populate_by_name=True)

    # --- provider -------------------------------------------------------------------------
    provider: Literal["offline", "openai", "echo"] = Field(
        "offline", validation_alias=_env("HUMANIZER_PROVIDER", "provider")
    )
    openai_api_key: SecretStr | None = Field(None, validation_alias=_env("OPENAI_API_KEY", "openai_api_key"))
    openai_base_url: str | None = Field(None, validation_alias=_env("OPENAI_BASE_URL", "openai_base_url"))
    openai_model: str = Field("gpt-4o-mini", validation_alias=_env("OPENAI_MODEL", "openai_model"))
    openai_max_tokens: int = Field(
        1024, ge=1, le=128_000, validation_alias=_env("OPENAI_MAX_TOKENS", "openai_max_tokens")
    )
    openai_temperature: float = Field(
        0.7, ge=0.0, le=2.0, validation_alias=_env("OPENAI_TEMPERATURE", "openai_temperature")
    )
    openai_timeout: float = Field(60.0, gt=0, validation_alias=_env("OPENAI_TIMEOUT", "openai_timeout"))
    openai_sdk_max_retries: int = Field(
        0, ge=0, le=1, validation_alias=_env("OPENAI_SDK_MAX_RETRIES", "openai_sdk_max_retries")
    )

    max_tokens_ratio: float = Field(
        1.5, ge=0.0, le=20.0, validation_alias=_env("HUMANIZER_MAX_TOKENS_RATIO", "max_tokens_ratio"),
        description="max_tokens per call = ceil(ratio x the chunk's input tokens) + margin, at most "
        "OPENAI_MAX_TOKENS (or the job's max_tokens); 0: always ask for that cap",
    )
    max_tokens_margin: int = Field(
        64, ge=0, le=32_000, validation_alias=_env("HUMANIZER_MAX_TOKENS_MARGIN", "max_tokens_margin")
    )

    # --- fallback chain (docs/providers.md) -------------------------------------------------
    fallback_targets: list[Target] = Field(
        default_factory=list, validation_alias=_env("HUMANIZER_FALLBACK_TARGETS", "fallback_targets"),
        description="JSON list of fallback targets tried in order after the job's own provider and model "
        "('primary'): name, provider, model, base_url, api_key_env (the variable that holds the key), rpm, tpm, "
        "price_in, price_out, timeout",
    )
    fallback_also_on: str = Field(
        "", validation_alias=_env("HUMANIZER_FALLBACK_ALSO_ON", "fallback_also_on"),
        description="comma-separated error kinds that also fall over (at once): auth, permission, "
        "quota_exhausted, content_policy, not_found; by default they never do",
    )
    fallback_retries: int | None = Field(
        None, ge=0, le=100, validation_alias=_env("HUMANIZER_FALLBACK_RETRIES", "fallback_retries"),
        description="retries of a chunk on one target of a chain before it falls over (default "
        "CELERY_TASK_MAX_RETRIES)",
    )
    breaker_failures: int = Field(
        5, ge=0, le=10_000, validation_alias=_env("HUMANIZER_BREAKER_FAILURES", "breaker_failures"),
        description="consecutive failures (5xx, timeouts, connection errors) that open a target's circuit "
        "breaker in a chain (0: no breaker)",
    )
    breaker_cooldown_seconds: float = Field(
        30.0, gt=0.0, le=86_400, validation_alias=_env("HUMANIZER_BREAKER_COOLDOWN_SECONDS",
                                                       "breaker_cooldown_seconds"),
        description="seconds an open breaker skips its target before one half-open probe call",
    )

    @field_validator("fallback_targets", mode="before")
    @classmethod
    def _targets_json(cls, v: object) -> object:
        """JSON text as well (what the environment holds; a ConfigMap's data validated as it is)."""
        if isinstance(v, str):
            return json.loads(v) if v.strip() else []
        return v

    @field_validator("fallback_targets")
    @classmethod
    def _unique_targets(cls, v: list[Target]) -> list[Target]:
        check_unique(v)
        return v

    @field_validator("fallback_also_on")
    @classmethod
    def _known_kinds(cls, v: str) -> str:
        return ",".join(parse_also_on(v))

    # --- the targeted second pass (worker/second_pass.py) ------------------------------------
    second_pass: Literal["auto", "on", "off"] = Field(
        "auto", validation_alias=_env("HUMANIZER_SECOND_PASS", "second_pass"),
        description="one more call, naming what to fix, for a chunk whose rewrite dropped or changed a fact or "
        "still reads machine-written; auto: on for model providers (openai), off for offline and echo. A job's "
        "second_pass option wins",
    )
    second_pass_tell_threshold: float = Field(
        35.0, ge=0.0, le=100.0,
        validation_alias=_env("HUMANIZER_SECOND_PASS_TELL_THRESHOLD", "second_pass_tell_threshold"),
        description="a rewrite whose AI-tell score (0-100) is at least this gets a second pass; 100: never for tells",
    )
    second_pass_max_chunk_ratio: float = Field(
        0.25, ge=0.0, le=1.0,
        validation_alias=_env("HUMANIZER_SECOND_PASS_MAX_CHUNK_RATIO", "second_pass_max_chunk_ratio"),
        description="budget: at most this fraction of a job's model chunks (rounded up) get a second pass",
    )
    second_pass_max_tokens: int = Field(
        0, ge=0, validation_alias=_env("HUMANIZER_SECOND_PASS_MAX_TOKENS", "second_pass_max_tokens"),
        description="budget: at most this many tokens (input + output) of second passes per job (0: no cap "
        "beyond the chunk ratio)",
    )

    offline_latency: float = Field(
        0.0, ge=0.0, le=30.0, validation_alias=_env("HUMANIZER_OFFLINE_LATENCY", "offline_latency")
    )

    # --- redis ----------------------------------------------------------------------------
    redis_url: str | None = Field(None, validation_alias=_env("REDIS_URL", "redis_url"))
    redis_host: str = Field("127.0.0.1", validation_alias=_env("REDIS_HOST", "redis_host"))
    redis_port: int = Field(6379, ge=1, le=65535, validation_alias=_env("REDIS_PORT", "redis_port"))
    redis_db: int = Field(0, ge=0, le=15, validation_alias=_env("REDIS_DB", "redis_db"))
    redis_password: SecretStr | None = Field(None, validation_alias=_env("REDIS_PASSWORD", "redis_password"))

    # --- celery ---------------------------------------------------------------------------
    celery_worker_concurrency: int = Field(
        8, ge=1, le=1024, validation_alias=_env("CELERY_WORKER_CONCURRENCY", "celery_worker_concurrency"),
        description="batch tasks a worker process holds at once (pool threads); about 2 x worker_calls / "
        "batch_size keeps the next batches ready when call slots free up",
    )
    celery_worker_pool: Literal["threads", "prefork", "solo"] = Field(
        "threads", validation_alias=_env("CELERY_WORKER_POOL", "celery_worker_pool")
    )
    celery_task_max_retries: int = Field(
        5, ge=0, le=100, validation_alias=_env("CELERY_TASK_MAX_RETRIES", "celery_task_max_retries")
    )
    celery_task_retry_delay: float = Field(
        1.0, ge=0, validation_alias=_env("CELERY_TASK_RETRY_DELAY", "celery_task_retry_delay")
    )
    celery_task_retry_max_delay: float = Field(
        60.0, ge=0, validation_alias=_env("CELERY_TASK_RETRY_MAX_DELAY", "celery_task_retry_max_delay")
    )
    celery_task_soft_time_limit: float = Field(
        240.0, gt=0, validation_alias=_env("CELERY_TASK_SOFT_TIME_LIMIT", "celery_task_soft_time_limit")
    )
    celery_task_time_limit: float = Field(
        300.0, gt=0, validation_alias=_env("CELERY_TASK_TIME_LIMIT", "celery_task_time_limit")
    )
    celery_visibility_timeout: int = Field(
        3600, gt=0, validation_alias=_env("CELERY_VISIBILITY_TIMEOUT", "celery_visibility_timeout")
    )

    # --- reliability ---------------------------------------------------------------------
    max_redeliveries: int = Field(
        3, ge=0, le=100, validation_alias=_env("HUMANIZER_MAX_REDELIVERIES", "max_redeliveries"),
        description="starts of a chunk's call that never reported back (the worker died) before it is poison",
    )
    reconcile_interval_seconds: float = Field(
        15.0, ge=0.0, validation_alias=_env("HUMANIZER_RECONCILE_INTERVAL_SECONDS", "reconcile_interval_seconds"),
        description="how often a worker looks for stalled jobs (0 = never)",
    )
    stall_seconds: float = Field(
        300.0, gt=0.0, validation_alias=_env("HUMANIZER_STALL_SECONDS", "stall_seconds"),
        description="a job without progress for this long is re-driven from what Redis holds",
    )
    fair_scheduling: bool = Field(
        True, validation_alias=_env("HUMANIZER_FAIR_SCHEDULING", "fair_scheduling"),
        description="release each job's batches a window at a time, fairly across jobs (false: every batch "
        "is queued at submission, first come first served)",
    )
    tenant_weights: dict[str, float] = Field(
        default_factory=dict, validation_alias=_env("HUMANIZER_TENANT_WEIGHTS", "tenant_weights"),
        description="shares of the workers per tenant (JSON, e.g. {\"ns:team-a\": 2}); tenants are "
        "'token:<token id>' for API jobs, 'ns:<namespace>' for HumanizeJobs, 'default' for the rest; default 1",
    )
    scheduler_stale_seconds: float = Field(
        900.0, gt=0.0, validation_alias=_env("HUMANIZER_SCHEDULER_STALE_SECONDS", "scheduler_stale_seconds"),
        description="a released batch that has not reported back for this long stops counting against the "
        "window (its message was lost; the reconciler re-drives its job)",
    )
    rate_limit_rpm: float = Field(0.0, ge=0.0, validation_alias=_env("HUMANIZER_RATE_LIMIT_RPM", "rate_limit_rpm"))
    rate_limit_tpm: float = Field(0.0, ge=0.0, validation_alias=_env("HUMANIZER_RATE_LIMIT_TPM", "rate_limit_tpm"))
    rate_limit_burst_seconds: float = Field(
        0.0, ge=0.0, validation_alias=_env("HUMANIZER_RATE_LIMIT_BURST_SECONDS", "rate_limit_burst_seconds")
    )
    rate_limit_headroom: float = Field(
        0.02, ge=0.0, le=0.5, validation_alias=_env("HUMANIZER_RATE_LIMIT_HEADROOM", "rate_limit_headroom"),
        description="fraction kept below the configured limits: requests reach the provider with jitter, and "
        "a provider counting them in a sliding window would otherwise see an occasional excess (a 429)",
    )
    worker_calls: int = Field(
        64, ge=0, le=10_000, validation_alias=_env("HUMANIZER_WORKER_CALLS", "worker_calls"),
        description="provider calls in flight per worker process (0: no cap, concurrency x batch_size)",
    )
    batch_size: int = Field(
        16, ge=1, le=256, validation_alias=_env("HUMANIZER_BATCH_SIZE", "batch_size"),
        description="chunks per worker task (one message); their calls share the process's call slots",
    )
    chunk_cache_ttl_seconds: int = Field(
        7 * 24 * 3600, ge=0, validation_alias=_env("HUMANIZER_CHUNK_CACHE_TTL_SECONDS", "chunk_cache_ttl_seconds"),
        description="how long rewritten chunks are reused for identical requests (0 = no cache)",
    )
    model_prices: dict[str, tuple[float, float]] = Field(
        default_factory=lambda: {
            "gpt-4o-mini": (0.15, 0.60),
            "gpt-4o": (2.50, 10.00),
            "gpt-4.1-nano": (0.10, 0.40),
            "gpt-4.1-mini": (0.40, 1.60),
            "gpt-4.1": (2.00, 8.00),
        },
        validation_alias=_env("HUMANIZER_MODEL_PRICES", "model_prices"),
        description="USD per million input and output tokens, per model (JSON)",
    )

    # --- jobs -----------------------------------------------------------------------------
    style: str = Field("neutral", validation_alias=_env("HUMANIZER_STYLE", "style"))
    chunk_max_tokens: int = Field(
        400, ge=16, le=32_000, validation_alias=_env("HUMANIZER_CHUNK_MAX_TOKENS", "chunk_max_tokens")
    )
    max_document_bytes: int = Field(
        2_000_000, ge=1, validation_alias=_env("HUMANIZER_MAX_DOCUMENT_BYTES", "max_document_bytes")
    )
    max_chunks: int = Field(5000, ge=1, validation_alias=_env("HUMANIZER_MAX_CHUNKS", "max_chunks"))
    result_ttl_seconds: int = Field(
        7 * 24 * 3600, ge=60, validation_alias=_env("HUMANIZER_RESULT_TTL_SECONDS", "result_ttl_seconds")
    )
    key_prefix: str = Field(
        DEFAULT_KEY_PREFIX, pattern=r"^[A-Za-z0-9_.-]{1,64}$",
        validation_alias=_env("HUMANIZER_KEY_PREFIX", "key_prefix"),
        description="prefix of every Redis key (job store, limiter) and, other than the default 'hz', of the "
        "Celery queues ('<prefix>.humanize', '<prefix>.control') and of kombu's keys ('<prefix>:'): "
        "releases sharing one Redis database need different prefixes",
    )

    # --- logs -----------------------------------------------------------------------------
    log_level: str = Field("INFO", validation_alias=_env("LOG_LEVEL", "log_level"))
    log_format: Literal["json", "console"] = Field("json", validation_alias=_env("LOG_FORMAT", "log_format"))

    def model_post_init(self, __context: object) -> None:
        longest = max(self.celery_task_time_limit, self.celery_task_retry_max_delay)
        if self.celery_visibility_timeout <= longest:
            raise ValueError(
                "CELERY_VISIBILITY_TIMEOUT must exceed both CELERY_TASK_TIME_LIMIT and "
                f"CELERY_TASK_RETRY_MAX_DELAY ({longest:g}s), or Redis redelivers tasks that are still running"
            )
        if self.celery_task_soft_time_limit >= self.celery_task_time_limit:
            raise ValueError("CELERY_TASK_SOFT_TIME_LIMIT must be below CELERY_TASK_TIME_LIMIT")
        bad = sorted(t for t, w in self.tenant_weights.items() if not w > 0)
        if bad:
            raise ValueError(f"HUMANIZER_TENANT_WEIGHTS: weights must be positive (tenants {', '.join(bad)})")

    @property
    def fallback_also_on_kinds(self) -> tuple[str, ...]:
        return parse_also_on(self.fallback_also_on)

    def fallback_target(self, name: str) -> Target | None:
        return next((t for t in self.fallback_targets if t.name == name), None)

    @property
    def retries_per_target(self) -> int:
        return self.celery_task_max_retries if self.fallback_retries is None else self.fallback_retries

    @property
    def calls_per_worker(self) -> int:
        """Provider calls one worker process has in flight at most."""
        held = self.celery_worker_concurrency * self.batch_size
        return min(self.worker_calls, held) if self.worker_calls > 0 else held

    def queue_name(self, logical: str) -> str:
        """The Celery queue of a logical queue (``humanize`` or ``control``) for this key prefix."""
        return queue_name_for(self.key_prefix, logical)

    @property
    def chunk_queue(self) -> str:
        return self.queue_name("humanize")

    @property
    def control_queue(self) -> str:
        return self.queue_name("control")

    @property
    def broker_key_prefix(self) -> str:
        """kombu's ``global_keyprefix`` (every broker key: queues, unacked, bindings, pidbox channels)."""
        return broker_key_prefix_for(self.key_prefix)

    def resolve_queues(self, names: object) -> list[str]:
        """Queue names as given (``control,humanize``, a list, logical or full names) -> this prefix's names.

        Raises ValueError for a name that is neither, which would leave a worker idle."""
        items = names.split(",") if isinstance(names, str) else list(names)  # type: ignore[call-overload]
        known = {self.queue_name(q): self.queue_name(q) for q in QUEUE_NAMES} | {
            q: self.queue_name(q) for q in QUEUE_NAMES
        }
        out: list[str] = []
        for raw in items:
            name = str(raw).strip()
            if not name:
                continue
            if name not in known:
                raise ValueError(
                    f"unknown queue {name!r}: the queues of key prefix {self.key_prefix!r} are "
                    + ", ".join(self.queue_name(q) for q in QUEUE_NAMES)
                )
            if known[name] not in out:
                out.append(known[name])
        if not out:
            raise ValueError("no queue given")
        return out

    @property
    def redis_dsn(self) -> str:
        """The Redis URL (``REDIS_URL`` wins; otherwise built from host/port/db/password)."""
        if self.redis_url:
            return self.redis_url
        auth = ""
        if self.redis_password is not None:
            auth = ":" + quote(self.redis_password.get_secret_value(), safe="") + "@"
        return f"redis://{auth}{self.redis_host}:{self.redis_port}/{self.redis_db}"

    @property
    def redis_dsn_redacted(self) -> str:
        """The Redis URL safe for logs and error messages."""
        dsn = self.redis_dsn
        if "@" in dsn:
            scheme, rest = dsn.split("://", 1)
            dsn = f"{scheme}://***@{rest.split('@', 1)[1]}"
        return dsn


@functools.cache
def get_settings() -> Settings:
    return Settings()


def reset_settings_cache() -> None:
    get_settings.cache_clear()
