"""What a worker process builds once and keeps: the job store, a provider per (provider, model) and per
fallback target, the shared rate limiters and circuit breakers (each cached per process)."""

from __future__ import annotations

import asyncio
import functools
import os
import time

from humanizer import metrics
from humanizer.config import Settings, get_settings
from humanizer.jobs.store import JobStore
from humanizer.logging import get_logger
from humanizer.providers import Provider, RewriteRequest, RewriteResult, build_provider
from humanizer.providers.breaker import BreakerConfig, CircuitBreaker
from humanizer.providers.openai_provider import NO_KEY_PLACEHOLDER
from humanizer.ratelimit import Limits, RateLimiter
from humanizer.redis_client import get_redis

log = get_logger("humanizer.worker")


def get_store(settings: Settings | None = None) -> JobStore:
    s = settings or get_settings()
    return _store(s.redis_identity, s.key_prefix, s.result_ttl_seconds, tuple(sorted(s.model_prices.items())))


@functools.cache
def _store(dsn: str, prefix: str, ttl: int, prices: tuple[tuple[str, tuple[float, float]], ...]) -> JobStore:
    return JobStore(get_redis(get_settings()), prefix=prefix, ttl_seconds=ttl, prices=dict(prices))


@functools.cache
def provider_for(name: str, model: str) -> Provider:
    """One provider object per worker process and (provider, model)."""
    s = get_settings()
    if name == "openai":
        return build_provider(
            "openai",
            api_key=s.openai_api_key.get_secret_value() if s.openai_api_key else None,
            base_url=s.openai_base_url,
            model=model,
            temperature=s.openai_temperature,
            max_tokens=s.openai_max_tokens,
            timeout=min(s.openai_timeout, s.celery_task_soft_time_limit),
            max_retries=s.openai_sdk_max_retries,
        )
    provider = build_provider(name)
    if name == "offline" and s.offline_latency > 0:
        return DelayedProvider(provider, s.offline_latency)
    return provider


@functools.cache
def limiter_for(name: str, model: str) -> RateLimiter:
    s = get_settings()
    keep = 1.0 - s.rate_limit_headroom  # stay a little under the provider's limit: arrival jitter is not ours
    limits = Limits(s.rate_limit_rpm * keep, s.rate_limit_tpm * keep, s.rate_limit_burst_seconds)
    return RateLimiter(get_redis(s), f"{name}:{model}", limits, prefix=s.key_prefix)


@functools.cache
def target_provider(name: str) -> Provider:
    """The provider of fallback target ``name`` (HUMANIZER_FALLBACK_TARGETS), one per worker process."""
    s = get_settings()
    t = s.fallback_target(name)
    if t is None:
        raise KeyError(name)
    if t.provider != "openai":
        return build_provider(t.provider)
    if t.api_key_env:
        key = os.environ.get(t.api_key_env) or None  # unset: the call fails as auth (no key configured)
    elif t.base_url:
        key = NO_KEY_PLACEHOLDER  # a self-hosted server: never send OPENAI_API_KEY to another host
    else:
        key = s.openai_api_key.get_secret_value() if s.openai_api_key else None
    return build_provider(
        "openai", api_key=key, base_url=t.base_url, model=t.model or s.openai_model,
        temperature=s.openai_temperature, max_tokens=s.openai_max_tokens,
        timeout=min(t.timeout or s.openai_timeout, s.celery_task_soft_time_limit), max_retries=s.openai_sdk_max_retries,
    )


@functools.cache
def target_limiter(name: str) -> RateLimiter:
    s = get_settings()
    t = s.fallback_target(name)
    keep = 1.0 - s.rate_limit_headroom
    limits = Limits((t.rpm if t else 0.0) * keep, (t.tpm if t else 0.0) * keep, s.rate_limit_burst_seconds)
    return RateLimiter(get_redis(s), f"target:{name}", limits, prefix=s.key_prefix)


def _on_breaker(target: str, old: str, new: str) -> None:
    metrics.observe_breaker(target, new)
    log.warning("breaker.transition", target=target, from_state=old, to_state=new)


@functools.cache
def breaker_for(target: str, key_id: str, timeout: float) -> CircuitBreaker:
    s = get_settings()
    cfg = BreakerConfig(s.breaker_failures, s.breaker_cooldown_seconds, probe_lease=timeout + 5.0)
    return CircuitBreaker(get_redis(s), target, key_id, cfg, prefix=s.key_prefix, on_transition=_on_breaker)




class DelayedProvider:
    """The offline rewriter with a fixed simulated latency (demo only, so the fan-out is visible)."""

    def __init__(self, inner: Provider, seconds: float) -> None:
        self.inner, self.seconds, self.name = inner, seconds, inner.name

    def rewrite(self, request: RewriteRequest) -> RewriteResult:
        time.sleep(self.seconds)
        return self.inner.rewrite(request)

    async def arewrite(self, request: RewriteRequest) -> RewriteResult:
        await asyncio.sleep(self.seconds)
        return self.inner.rewrite(request)
