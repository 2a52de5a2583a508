"""Health checks and an operational snapshot of the whole system: Redis, Celery, the provider, the host.

``get_monitoring_service().health_check()`` returns::

    {"overall_status": "healthy" | "degraded" | "unhealthy", "timestamp": ..., "services": {
        "redis":  {"status", "message", "response_time_ms", "details"},
        "celery": {...}, "openai": {...}, "system": {...}}}

Every check has short timeouts of its own (a down Redis or an absent worker answers within seconds,
never hangs). The overall status is ``unhealthy`` when Redis or Celery is unhealthy, ``degraded`` when
any check is not healthy, else ``healthy``.
"""

from __future__ import annotations

import concurrent.futures
import functools
import shutil
import threading
import time
from collections.abc import Callable
from typing import Any, Literal

import psutil
import redis
from celery import Celery

from humanizer.config import Settings, get_settings
from humanizer.monitoring.queues import queue_depths, unacked_count
from humanizer.monitoring.throughput import throughput
from humanizer.redis_client import connect

Status = Literal["healthy", "degraded", "unhealthy"]
QUEUES = ("humanize", "control")
CRITICAL = ("redis", "celery")


def _result(status: Status, message: str, started: float, details: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "status": status,
        "message": message,
        "response_time_ms": round((time.perf_counter() - started) * 1000, 2),
        "details": details or {},
    }


def monitor_celery_app(settings: Settings) -> Celery:
    """A Celery app of our own for control commands, with short broker timeouts and few retries."""
    from humanizer.broker import celery_config

    app = Celery("humanizer-monitor", set_as_current=False)
    conf = celery_config(settings)
    transport = dict(conf.get("broker_transport_options") or {})  # type: ignore[call-overload]
    transport.update(socket_timeout=2.0, socket_connect_timeout=1.0, max_retries=1)
    conf.update(
        broker_connection_max_retries=1,
        broker_connection_timeout=1.0,
        broker_connection_retry=False,
        broker_transport_options=transport,
        include=[],
    )
    app.conf.update(conf)
    return app


class MonitoringService:
    def __init__(
        self,
        settings: Settings | None = None,
        *,
        control_timeout: float = 1.0,
        provider_cache_seconds: float = 60.0,
        queues: tuple[str, ...] = QUEUES,
    ) -> None:
        self.settings = settings or get_settings()
        self.control_timeout = control_timeout
        self.provider_cache_seconds = provider_cache_seconds
        self.queues = queues
        self._redis: redis.Redis | None = None
        self._celery: Celery | None = None
        self._provider_cache: tuple[float, dict[str, Any]] | None = None
        self._lock = threading.Lock()
        psutil.cpu_percent(interval=None)  # prime: the first reading is always 0

    # ---- clients ---------------------------------------------------------------------------
    @property
    def redis(self) -> redis.Redis:
        if self._redis is None:
            self._redis = connect(
                self.settings, decode_responses=True, socket_connect_timeout=1.0, socket_timeout=2.0,
            )
        return self._redis

    @property
    def celery(self) -> Celery:
        if self._celery is None:
            self._celery = monitor_celery_app(self.settings)
        return self._celery

    # ---- redis ------------------------------------------------------------------------------
    def check_redis(self) -> dict[str, Any]:
        started = time.perf_counter()
        try:
            t0 = time.perf_counter()
            self.redis.ping()
            latency_ms = (time.perf_counter() - t0) * 1000
            info: dict[str, Any] = self.redis.info()
        except redis.AuthenticationError:
            return _result("unhealthy", f"Redis at {self.settings.redis_dsn_redacted} rejected the password", started)
        except redis.RedisError as exc:
            return _result(
                "unhealthy", f"Redis unreachable at {self.settings.redis_dsn_redacted} ({type(exc).__name__})", started
            )
        policy = info.get("maxmemory_policy")
        if policy is None:
            try:
                policy = (self.redis.config_get("maxmemory-policy") or {}).get("maxmemory-policy")
            except redis.RedisError:
                policy = "unknown"
        details = {
            "version": info.get("redis_version"),
            "latency_ms": round(latency_ms, 3),
            "used_memory_bytes": info.get("used_memory"),
            "used_memory_human": info.get("used_memory_human"),
            "maxmemory_bytes": info.get("maxmemory"),
            "maxmemory_policy": policy,
            "aof_enabled": bool(info.get("aof_enabled")),
            "aof_last_write_status": info.get("aof_last_write_status"),
            "aof_rewrite_in_progress": bool(info.get("aof_rewrite_in_progress")),
            "connected_clients": info.get("connected_clients"),
            "uptime_seconds": info.get("uptime_in_seconds"),
        }
        problems = []
        if not details["aof_enabled"]:
            problems.append("AOF is off (queued tasks are lost on a restart)")
        elif details["aof_last_write_status"] not in (None, "ok"):
            problems.append(f"AOF last write {details['aof_last_write_status']}")
        if policy != "noeviction":
            problems.append(f"maxmemory-policy is {policy}, not noeviction (Redis may drop task messages)")
        if problems:
            return _result("degraded", "; ".join(problems), started, details)
        return _result("healthy", f"Redis {details['version']} answers in {latency_ms:.1f} ms", started, details)

    # ---- celery -----------------------------------------------------------------------------
    def ping_workers(self, timeout: float | None = None, attempts: int = 2) -> list[str]:
        """Node names of the workers that answer a broadcast ping (asked again once if none answers:
        a busy or just-started worker can miss one short window)."""
        for _ in range(max(1, attempts)):
            replies = self.celery.control.ping(timeout=timeout or self.control_timeout) or []
            if replies:
                return sorted(name for reply in replies for name in reply)
        return []

    def check_celery(self) -> dict[str, Any]:
        started = time.perf_counter()
        try:
            s, broker = self.settings, self.settings.broker_key_prefix
            real = queue_depths(self.redis, [s.queue_name(q) for q in self.queues], key_prefix=broker)
            depths = {q: real[s.queue_name(q)] for q in self.queues}  # by logical name
            unacked = unacked_count(self.redis, key_prefix=broker)
        except redis.RedisError as exc:
            return _result("unhealthy", f"broker unreachable ({type(exc).__name__})", started)
        details: dict[str, Any] = {"queue_depth": depths, "unacked": unacked}
        try:
            workers = self.ping_workers()
        except Exception as exc:
            return _result("unhealthy", f"cannot reach workers ({type(exc).__name__})", started, details)
        details.update(workers_online=len(workers), workers=workers)
        if workers:
            inspect = self.celery.control.inspect(timeout=self.control_timeout, limit=len(workers))
            try:
                active = inspect.active() or {}
                reserved = inspect.reserved() or {}
            except Exception:
                active, reserved = {}, {}
            details["active_tasks"] = sum(len(v or []) for v in active.values())
            details["reserved_tasks"] = sum(len(v or []) for v in reserved.values())
            details["inspect_replies"] = len(active)
            waiting = sum(depths.values())
            return _result(
                "healthy", f"{len(workers)} worker(s) online, {waiting} message(s) queued, {unacked} unacked",
                started, details,
            )
        details.update(active_tasks=0, reserved_tasks=0)
        pending = sum(depths.values()) + unacked
        if pending:
            return _result("unhealthy", f"no worker online and {pending} message(s) waiting", started, details)
        return _result("degraded", "no worker online (nothing is queued; new jobs will wait)", started, details)

    # ---- provider ---------------------------------------------------------------------------
    def check_provider(self) -> dict[str, Any]:
        started = time.perf_counter()
        s = self.settings
        if s.provider != "openai":
            return _result(
                "healthy", f"provider '{s.provider}' runs locally and needs no network", started,
                {"provider": s.provider, "configured": True},
            )
        base = {"provider": "openai", "base_url": s.openai_base_url or "https://api.openai.com/v1",
                "model": s.openai_model}
        if s.openai_api_key is None and not s.openai_base_url:
            return _result("unhealthy", "OPENAI_API_KEY is not set", started, {**base, "configured": False})
        with self._lock:
            cached = self._provider_cache
        if cached and time.monotonic() < cached[0]:
            out = dict(cached[1])
            out["details"] = {**out["details"], "cached": True}
            return out
        out = self._probe_openai(started, base)
        ttl = self.provider_cache_seconds if out["status"] == "healthy" else min(15.0, self.provider_cache_seconds)
        with self._lock:
            self._provider_cache = (time.monotonic() + ttl, out)
        return out

    def _probe_openai(self, started: float, base: dict[str, Any]) -> dict[str, Any]:
        import openai

        s = self.settings
        client = openai.OpenAI(
            api_key=s.openai_api_key.get_secret_value() if s.openai_api_key else "not-needed",
            base_url=s.openai_base_url or None,
            timeout=3.0,
            max_retries=0,
        )
        details = {**base, "configured": True, "cached": False}
        try:
            page = client.models.list()
            count = len(getattr(page, "data", []) or [])
            return _result("healthy", f"reachable, key accepted ({count} models listed)", started,
                           {**details, "models_listed": count})
        except openai.AuthenticationError:
            return _result("unhealthy", "the provider rejected the API key (401)", started, details)
        except openai.PermissionDeniedError:
            return _result("unhealthy", "the provider denied access (403)", started, details)
        except openai.NotFoundError:
            return _result("healthy", "reachable, key accepted (no /models endpoint on this server)", started,
                           details)
        except openai.RateLimitError:
            return _result("degraded", "reachable but rate limited (429)", started, details)
        except openai.APIStatusError as exc:
            return _result("degraded", f"reachable but /models answered {exc.status_code}", started, details)
        except openai.APIConnectionError as exc:
            return _result("unhealthy", f"unreachable ({type(exc).__name__})", started, details)
        finally:
            client.close()

    # ---- system -----------------------------------------------------------------------------
    def check_system(self) -> dict[str, Any]:
        started = time.perf_counter()
        mem = psutil.virtual_memory()
        disk = shutil.disk_usage("/")
        disk_pct = round(100.0 * disk.used / disk.total, 1) if disk.total else 0.0
        try:
            load = [round(x, 2) for x in psutil.getloadavg()]
        except (AttributeError, OSError):
            load = []
        details = {
            "cpu_percent": psutil.cpu_percent(interval=None),
            "cpu_count": psutil.cpu_count(),
            "load_average": load,
            "memory_percent": mem.percent,
            "memory_available_bytes": mem.available,
            "disk_percent": disk_pct,
            "disk_free_bytes": disk.free,
            "process_rss_bytes": psutil.Process().memory_info().rss,
        }
        worst = max(mem.percent, disk_pct)
        if worst >= 98:
            return _result("unhealthy", f"memory {mem.percent:.0f}%, disk {disk_pct:.0f}% used", started, details)
        if worst >= 90:
            return _result("degraded", f"memory {mem.percent:.0f}%, disk {disk_pct:.0f}% used", started, details)
        return _result("healthy", f"CPU {details['cpu_percent']:.0f}%, memory {mem.percent:.0f}%, "
                                  f"disk {disk_pct:.0f}%", started, details)

    # ---- together ---------------------------------------------------------------------------
    def _run_checks(self, checks: dict[str, Callable[[], dict[str, Any]]], budget: float) -> dict[str, Any]:
        """Run checks in parallel; one that overruns ``budget`` seconds reports unhealthy instead of hanging."""
        out: dict[str, Any] = {}
        pool = concurrent.futures.ThreadPoolExecutor(max_workers=len(checks), thread_name_prefix="health")
        try:
            futures = {name: pool.submit(fn) for name, fn in checks.items()}
            deadline = time.monotonic() + budget
            for name, fut in futures.items():
                started = time.perf_counter()
                try:
                    out[name] = fut.result(timeout=max(0.0, deadline - time.monotonic()))
                except concurrent.futures.TimeoutError:
                    out[name] = _result("unhealthy", f"check timed out after {budget:.0f}s", started)
                except Exception as exc:
                    out[name] = _result("unhealthy", f"check failed ({type(exc).__name__})", started)
        finally:
            pool.shutdown(wait=False, cancel_futures=True)
        return out

    def health_check(self) -> dict[str, Any]:
        services = self._run_checks(
            {"redis": self.check_redis, "celery": self.check_celery, "openai": self.check_provider,
             "system": self.check_system},
            budget=10.0,
        )
        overall: Status = "healthy"
        if any(services[name]["status"] == "unhealthy" for name in CRITICAL):
            overall = "unhealthy"
        elif any(svc["status"] != "healthy" for svc in services.values()):
            overall = "degraded"
        return {"overall_status": overall, "timestamp": time.time(), "services": services}

    def get_metrics(self) -> dict[str, Any]:
        """An operational snapshot: workers, tasks, queues, throughput, jobs, dead letters, host."""
        health = self.health_check()
        services = health["services"]
        celery_details = services["celery"]["details"]
        prefix = self.settings.key_prefix
        rates: dict[str, Any] = {"throughput_per_minute": None, "error_rate": None}
        jobs: dict[str, Any] = {}
        dead_letters = None
        try:
            rates = throughput(self.redis, prefix)
            dead_letters = int(self.redis.zcard(f"{prefix}:dlq:index"))
            jobs = self._recent_jobs(prefix)
        except redis.RedisError:
            pass
        return {
            "timestamp": health["timestamp"],
            "overall_status": health["overall_status"],
            "celery_metrics": {
                "active_workers": celery_details.get("workers_online", 0),
                "workers": celery_details.get("workers", []),
                "active_tasks": celery_details.get("active_tasks", 0),
                "reserved_tasks": celery_details.get("reserved_tasks", 0),
                "queue_depth": celery_details.get("queue_depth", {}),
                "unacked": celery_details.get("unacked", 0),
                **rates,
            },
            "jobs": jobs,
            "dead_letters": dead_letters,
            "redis_metrics": services["redis"]["details"],
            "provider": services["openai"],
            "system_metrics": services["system"]["details"],
            "services": services,
        }

    def _recent_jobs(self, prefix: str, limit: int = 200) -> dict[str, Any]:
        from humanizer.jobs.store import JobStore

        store = JobStore(self.redis, prefix=prefix)
        by_status: dict[str, int] = {}
        for (st,) in store.fields_of(store.recent_job_ids(limit), ["status"]):
            if st:
                by_status[st] = by_status.get(st, 0) + 1
        return {"recent": sum(by_status.values()), "by_status": by_status}


@functools.cache
def _service_for(dsn: str, provider: str) -> MonitoringService:
    return MonitoringService(get_settings())


def get_monitoring_service(settings: Settings | None = None) -> MonitoringService:
    """One service per Redis URL and provider (its caches live as long as the process)."""
    if settings is not None:
        return MonitoringService(settings)
    s = get_settings()
    return _service_for(s.redis_identity, s.provider)
