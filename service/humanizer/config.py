"""All settings, read from the environment (and an optional ``.env``) with pydantic-settings.

Environment names from the product brief are kept as they are (``OPENAI_API_KEY``, ``REDIS_HOST``,
``CELERY_WORKER_CONCURRENCY`` ...); settings that are ours carry the ``HUMANIZER_`` prefix.
"""

from __future__ import annotations

import functools
import json
from typing import Literal
from urllib.parse import quote, unquote, urlsplit, urlunsplit

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
    redis_username: str | None = Field(
        None, validation_alias=_env("REDIS_USERNAME", "redis_username"),
        description="ACL user name (AUTH <user> <password>); empty: the default user",
    )
    redis_tls: bool = Field(
        False, validation_alias=_env("REDIS_TLS", "redis_tls"),
        description="connect with TLS (as a rediss:// REDIS_URL does); the server's certificate is verified",
    )
    redis_tls_ca_file: str | None = Field(
        None, validation_alias=_env("REDIS_TLS_CA_FILE", "redis_tls_ca_file"),
        description="PEM CA bundle that signed the server's certificate (empty: the system's CAs)",
    )
    redis_tls_cert_file: str | None = Field(
        None, validation_alias=_env("REDIS_TLS_CERT_FILE", "redis_tls_cert_file"),
        description="client certificate (PEM) for servers that require one (tls-auth-clients yes)",
    )
    redis_tls_key_file: str | None = Field(
        None, validation_alias=_env("REDIS_TLS_KEY_FILE", "redis_tls_key_file"),
        description="the client certificate's private key (PEM)",
    )
    redis_tls_check_hostname: bool = Field(
        True, validation_alias=_env("REDIS_TLS_CHECK_HOSTNAME", "redis_tls_check_hostname"),
        description="the server's certificate must name the host connected to",
    )
    redis_sentinels: str = Field(
        "", validation_alias=_env("REDIS_SENTINELS", "redis_sentinels"),
        description="comma-separated Sentinel addresses host:port (port default 26379): the primary is asked "
        "of them and followed across failovers; REDIS_HOST, REDIS_PORT and REDIS_URL are then not used",
    )
    redis_sentinel_master: str = Field(
        "mymaster", min_length=1, validation_alias=_env("REDIS_SENTINEL_MASTER", "redis_sentinel_master"),
        description="the name the Sentinels monitor the primary under",
    )
    redis_sentinel_username: str | None = Field(
        None, validation_alias=_env("REDIS_SENTINEL_USERNAME", "redis_sentinel_username")
    )
    redis_sentinel_password: SecretStr | None = Field(
        None, validation_alias=_env("REDIS_SENTINEL_PASSWORD", "redis_sentinel_password"),
        description="the Sentinels' own password (requirepass in sentinel.conf), if they have one",
    )

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
        self._check_redis_connection()
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

    # ---- Redis connection (redis_client.py builds every client from these) ----------------------
    def _check_redis_connection(self) -> None:
        if bool(self.redis_tls_cert_file) != bool(self.redis_tls_key_file):
            raise ValueError("REDIS_TLS_CERT_FILE and REDIS_TLS_KEY_FILE go together (a client certificate, its key)")
        files = [n for n, v in (("REDIS_TLS_CA_FILE", self.redis_tls_ca_file),
                                ("REDIS_TLS_CERT_FILE", self.redis_tls_cert_file)) if v]
        if files and not self.redis_tls_enabled:
            raise ValueError(f"{files[0]} is set but TLS is off: set REDIS_TLS=true (or use a rediss:// REDIS_URL)")
        if self.redis_sentinels:
            if self.redis_url:
                raise ValueError("REDIS_SENTINELS and REDIS_URL exclude each other: with Sentinels, set REDIS_DB, "
                                 "REDIS_USERNAME and REDIS_PASSWORD for the primary")
            self.sentinel_hosts  # noqa: B018 - parses, raising ValueError for a bad address

    @property
    def redis_tls_enabled(self) -> bool:
        return self.redis_tls or (self.redis_url or "").startswith("rediss://")

    @property
    def sentinel_mode(self) -> bool:
        return bool(self.redis_sentinels.strip())

    @property
    def sentinel_hosts(self) -> list[tuple[str, int]]:
        """``REDIS_SENTINELS`` as (host, port) pairs; ``[::1]:26379`` for IPv6."""
        out: list[tuple[str, int]] = []
        for raw in self.redis_sentinels.split(","):
            item = raw.strip()
            if not item:
                continue
            host, port = item, 26379
            if item.startswith("["):
                host, _, rest = item[1:].partition("]")
                if rest.startswith(":"):
                    port = _port(rest[1:], item)
            elif item.count(":") == 1:
                host, _, p = item.partition(":")
                port = _port(p, item)
            if not host:
                raise ValueError(f"REDIS_SENTINELS: {item!r} is not host:port")
            out.append((host, port))
        return out

    def _url_parts(self) -> tuple[str, int, int, str | None, str | None]:
        """host, port, db, username, password of the direct connection (REDIS_URL or REDIS_HOST...)."""
        password = self.redis_password.get_secret_value() if self.redis_password is not None else None
        if not self.redis_url:
            return self.redis_host, self.redis_port, self.redis_db, self.redis_username or None, password
        u = urlsplit(self.redis_url)
        path = u.path.strip("/")
        return (
            u.hostname or "127.0.0.1",
            u.port or 6379,
            int(path) if path.isdigit() else 0,
            unquote(u.username) if u.username else (self.redis_username or None),
            unquote(u.password) if u.password is not None else password,
        )

    @property
    def redis_dsn(self) -> str:
        """The Redis URL of a direct connection: ``REDIS_URL`` wins (``rediss://`` with REDIS_TLS, and
        REDIS_USERNAME when the URL names no user), else built from host/port/db/username/password.

        With Sentinels this is kombu's form of the Sentinel list (``sentinel://h1:p1;sentinel://h2:p2/db``),
        which only Celery understands: make clients with :func:`humanizer.redis_client.connect`."""
        if self.sentinel_mode:
            return self.celery_redis_url()
        if self.redis_url:
            u = urlsplit(self.redis_url)
            scheme = "rediss" if self.redis_tls and u.scheme == "redis" else u.scheme
            netloc = u.netloc
            if self.redis_username and not u.username and "@" in netloc:  # ":password@host" -> user added
                netloc = quote(self.redis_username, safe="") + netloc
            elif self.redis_username and "@" not in netloc:
                netloc = quote(self.redis_username, safe="") + "@" + netloc
            return urlunsplit((scheme, netloc, u.path, u.query, u.fragment))
        return self._build_url("rediss" if self.redis_tls else "redis", self.redis_host, self.redis_port)

    def _build_url(self, scheme: str, host: str, port: int) -> str:
        _, _, db, username, password = self._url_parts()
        auth = ""
        if username or password is not None:
            secret = ":" + quote(password, safe="") if password is not None else ""
            auth = quote(username or "", safe="") + secret + "@"
        host = f"[{host}]" if ":" in host else host
        return f"{scheme}://{auth}{host}:{port}/{db}"

    def celery_redis_url(self) -> str:
        """The broker/result-backend URL for kombu and Celery: plain ``redis://`` (TLS comes from
        ``broker_use_ssl``/``redis_backend_use_ssl``), or one ``sentinel://`` per Sentinel joined by ``;``."""
        if self.sentinel_mode:
            return ";".join(self._build_url("sentinel", h, p) for h, p in self.sentinel_hosts)
        host, port, *_ = self._url_parts()
        return self._build_url("redis", host, port)

    @property
    def redis_identity(self) -> str:
        """One string per distinct Redis connection configuration (cache key of clients; contains secrets)."""
        sentinel_pw = self.redis_sentinel_password.get_secret_value() if self.redis_sentinel_password else ""
        return "|".join(map(str, (
            self.redis_dsn, self.redis_tls_enabled, self.redis_tls_ca_file, self.redis_tls_cert_file,
            self.redis_tls_key_file, self.redis_tls_check_hostname, self.redis_sentinel_master,
            self.redis_sentinel_username, sentinel_pw,
        )))

    @property
    def redis_dsn_redacted(self) -> str:
        """Where Redis is, safe for logs and error messages (no password)."""
        if self.sentinel_mode:
            hosts = ",".join(f"{h}:{p}" for h, p in self.sentinel_hosts)
            tls = ", TLS" if self.redis_tls_enabled else ""
            return f"primary {self.redis_sentinel_master!r} of Sentinels {hosts} (db {self.redis_db}{tls})"
        dsn = self.redis_dsn
        if "@" in dsn:
            scheme, rest = dsn.split("://", 1)
            auth, host = rest.rsplit("@", 1)
            user = auth.split(":", 1)[0] if ":" in auth else auth
            dsn = f"{scheme}://{user + ':' if user else ''}***@{host}"
        return dsn


def _port(text: str, item: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ValueError(f"REDIS_SENTINELS: {item!r} is not host:port")
    return int(text)


@functools.cache
def get_settings() -> Settings:
    return Settings()


def reset_settings_cache() -> None:
    get_settings.cache_clear()
