"""Operator settings from the environment (pydantic-settings).

The autoscaler's names are the chart's (``HUMANIZER_AUTOSCALE_*``, ``HUMANIZER_WORKER_DEPLOYMENT``);
the worker call slots, batch size, visibility timeout and the provider rate limits come from
:class:`humanizer.config.Settings` (``HUMANIZER_WORKER_CALLS``, ``CELERY_WORKER_CONCURRENCY``,
``HUMANIZER_BATCH_SIZE``, ``CELERY_VISIBILITY_TIMEOUT``, ``HUMANIZER_RATE_LIMIT_RPM``/``_TPM``/``_HEADROOM``),
as do Redis and the provider.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Callable
from typing import Annotated, cast

from pydantic import AliasChoices, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


def _env(name: str, field: str) -> AliasChoices:
    return AliasChoices(name, field)


class OperatorSettings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    # --- autoscaler -----------------------------------------------------------------------
    autoscale_enabled: bool = Field(True, validation_alias=_env("HUMANIZER_AUTOSCALE_ENABLED", "autoscale_enabled"))
    min_replicas: int = Field(
        1, ge=0, le=1000, validation_alias=_env("HUMANIZER_AUTOSCALE_MIN_REPLICAS", "min_replicas")
    )
    max_replicas: int = Field(
        10, ge=1, le=1000, validation_alias=_env("HUMANIZER_AUTOSCALE_MAX_REPLICAS", "max_replicas")
    )
    target_per_worker: int = Field(
        64, ge=1, le=100_000, validation_alias=_env("HUMANIZER_AUTOSCALE_TARGET_PER_WORKER", "target_per_worker"),
        description="queued + in-flight chunks one worker pod is expected to handle (a pod runs "
        "HUMANIZER_WORKER_CALLS of them at once, 64 by default)",
    )
    scale_down_stabilization_seconds: float = Field(
        300.0, ge=0, validation_alias=_env(
            "HUMANIZER_AUTOSCALE_SCALE_DOWN_STABILIZATION_SECONDS", "scale_down_stabilization_seconds"
        ),
    )
    scale_to_zero: bool = Field(False, validation_alias=_env("HUMANIZER_AUTOSCALE_SCALE_TO_ZERO", "scale_to_zero"))
    interval_seconds: float = Field(
        1.0, gt=0, le=300, validation_alias=_env("HUMANIZER_AUTOSCALE_INTERVAL_SECONDS", "interval_seconds")
    )
    worker_deployment: str = Field(
        "humanizer-worker", validation_alias=_env("HUMANIZER_WORKER_DEPLOYMENT", "worker_deployment")
    )
    worker_namespace: str = Field(
        "", validation_alias=_env("HUMANIZER_WORKER_NAMESPACE", "worker_namespace"),
        description="namespace of the worker Deployment (default: POD_NAMESPACE, else 'default')",
    )
    queues: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["humanize", "control"],
        validation_alias=_env("HUMANIZER_AUTOSCALE_QUEUES", "queues"),
    )
    tokens_per_chunk: float = Field(
        0.0, ge=0, le=1_000_000,
        validation_alias=_env("HUMANIZER_AUTOSCALE_TOKENS_PER_CHUNK", "tokens_per_chunk"),
        description="tokens (prompt + reply) one chunk's provider calls use, for the HUMANIZER_RATE_LIMIT_TPM "
        "cap until the running jobs' token counts measure it; 0: 2 x HUMANIZER_CHUNK_MAX_TOKENS + 200, what "
        "the workers' limiter reserves for a full-size chunk",
    )
    pod_deletion_cost: bool = Field(
        True, validation_alias=_env("HUMANIZER_AUTOSCALE_POD_DELETION_COST", "pod_deletion_cost"),
        description="before a scale-down, set controller.kubernetes.io/pod-deletion-cost on each worker pod "
        "from the chunks it runs, so idle pods go first (needs list and patch on pods)",
    )
    inspect_timeout_seconds: float = Field(
        1.0, gt=0, le=30,
        validation_alias=_env("HUMANIZER_AUTOSCALE_INSPECT_TIMEOUT_SECONDS", "inspect_timeout_seconds"),
        description="how long a scale-down waits for the workers' answers to Celery's 'inspect active'",
    )

    # --- HumanizeJob handling ---------------------------------------------------------------
    status_interval_seconds: float = Field(
        2.0, gt=0, le=300,
        validation_alias=_env("HUMANIZER_OPERATOR_STATUS_INTERVAL_SECONDS", "status_interval_seconds"),
        description="seconds between two passes of the status loop over every watched HumanizeJob (the "
        "shortest time between two status patches of one job; unchanged status is not patched)",
    )
    max_output_bytes: int = Field(
        1_000_000, ge=1024, le=1_048_576,
        validation_alias=_env("HUMANIZER_OPERATOR_MAX_OUTPUT_BYTES", "max_output_bytes"),
        description="largest output ConfigMap payload written (ConfigMaps hold at most 1 MiB)",
    )
    namespaces: Annotated[list[str], NoDecode] = Field(
        default_factory=list, validation_alias=_env("HUMANIZER_OPERATOR_NAMESPACES", "namespaces"),
        description="namespaces to watch when no --namespace/--all-namespaces is given (JSON list or a,b,c)",
    )
    metrics_port: int = Field(0, ge=0, le=65535, validation_alias=_env("MONITORING_PROMETHEUS_PORT", "metrics_port"))

    @model_validator(mode="after")
    def _check(self) -> OperatorSettings:
        if self.min_replicas > self.max_replicas:
            raise ValueError("HUMANIZER_AUTOSCALE_MIN_REPLICAS must not exceed HUMANIZER_AUTOSCALE_MAX_REPLICAS")
        if not self.worker_namespace:
            self.worker_namespace = os.environ.get("POD_NAMESPACE", "") or "default"
        return self

    @field_validator("queues", "namespaces", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        """``a,b,c`` or a JSON list."""
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                return json.loads(text)
            return [part.strip() for part in text.split(",") if part.strip()]
        return value


@functools.cache
def get_operator_settings() -> OperatorSettings:
    # values come from the environment; the cast keeps mypy (without the pydantic plugin) quiet
    return cast(Callable[[], OperatorSettings], OperatorSettings)()


def reset_operator_settings() -> None:
    get_operator_settings.cache_clear()
