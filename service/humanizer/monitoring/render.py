"""Rich renderables for ``humanizer health`` and ``humanizer monitor``.

>>> from rich.console import Console
>>> Console().print(render_health(get_monitoring_service().health_check()))
"""

from __future__ import annotations

from typing import Any

from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

STYLE = {"healthy": "bold green", "degraded": "bold yellow", "unhealthy": "bold red"}
ICON = {"healthy": "●", "degraded": "▲", "unhealthy": "✖"}


def status_text(status: str) -> Text:
    return Text(f"{ICON.get(status, '?')} {status}", style=STYLE.get(status, "bold"))


def _fmt_bytes(value: Any) -> str:
    if not isinstance(value, (int, float)):
        return "-"
    size = float(value)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return "-"


def _key_details(name: str, details: dict[str, Any]) -> str:
    if name == "redis" and details:
        return (f"latency {details.get('latency_ms', '-')} ms · memory {details.get('used_memory_human', '-')} · "
                f"AOF {'on' if details.get('aof_enabled') else 'off'} · {details.get('maxmemory_policy', '-')}")
    if name == "celery" and details:
        depth = details.get("queue_depth", {})
        queues = ", ".join(f"{q} {n}" for q, n in depth.items())
        return (f"{details.get('workers_online', 0)} workers · active {details.get('active_tasks', 0)} · "
                f"reserved {details.get('reserved_tasks', 0)} · queued {queues or '-'} · "
                f"unacked {details.get('unacked', 0)}")
    if name == "system" and details:
        return (f"CPU {details.get('cpu_percent', '-')}% · memory {details.get('memory_percent', '-')}% · "
                f"disk {details.get('disk_percent', '-')}%")
    if name == "openai" and details:
        return " · ".join(str(details[k]) for k in ("provider", "base_url", "model") if details.get(k))
    return ""


def render_health(health: dict[str, Any]) -> RenderableType:
    """A table: one row per service (status, message, response time, key details)."""
    overall = str(health.get("overall_status", "unknown"))
    table = Table(title="Humanizer health", title_justify="left", expand=False)
    table.add_column("service", style="bold")
    table.add_column("status")
    table.add_column("message", overflow="fold")
    table.add_column("ms", justify="right")
    table.add_column("details", overflow="fold", style="dim")
    for name, svc in health.get("services", {}).items():
        table.add_row(name, status_text(svc.get("status", "?")), svc.get("message", ""),
                      f"{svc.get('response_time_ms', 0):.0f}", _key_details(name, svc.get("details", {})))
    return Group(table, Text.assemble("overall: ", status_text(overall)))


def render_metrics(snapshot: dict[str, Any]) -> RenderableType:
    """``humanizer monitor``: workers and queues, throughput, jobs, Redis and the host, in panels."""
    cm = snapshot.get("celery_metrics", {})
    workers = Table.grid(padding=(0, 2))
    workers.add_row("workers online", str(cm.get("active_workers", 0)))
    workers.add_row("active tasks", str(cm.get("active_tasks", 0)))
    workers.add_row("reserved tasks", str(cm.get("reserved_tasks", 0)))
    for queue, depth in (cm.get("queue_depth") or {}).items():
        workers.add_row(f"queue {queue}", str(depth))
    workers.add_row("unacked", str(cm.get("unacked", 0)))

    rates = Table.grid(padding=(0, 2))
    tput = cm.get("throughput_per_minute")
    err = cm.get("error_rate")
    rates.add_row("chunks / minute", "-" if tput is None else f"{tput:.1f}")
    rates.add_row("error rate", "-" if err is None else f"{100 * err:.1f}%")
    rates.add_row("dead letters", str(snapshot.get("dead_letters", "-")))
    for status, count in sorted((snapshot.get("jobs") or {}).get("by_status", {}).items()):
        rates.add_row(f"jobs {status.lower()}", str(count))

    rm = snapshot.get("redis_metrics", {})
    sm = snapshot.get("system_metrics", {})
    infra = Table.grid(padding=(0, 2))
    infra.add_row("redis memory", rm.get("used_memory_human") or _fmt_bytes(rm.get("used_memory_bytes")))
    infra.add_row("redis latency", f"{rm.get('latency_ms', '-')} ms")
    infra.add_row("AOF", "on" if rm.get("aof_enabled") else "off")
    infra.add_row("CPU", f"{sm.get('cpu_percent', '-')}%")
    infra.add_row("memory", f"{sm.get('memory_percent', '-')}%")
    infra.add_row("disk", f"{sm.get('disk_percent', '-')}%")

    overall = str(snapshot.get("overall_status", "unknown"))
    row = Table.grid(expand=True, padding=(0, 1))
    for _ in range(3):
        row.add_column(ratio=1)
    row.add_row(Panel(workers, title="Celery"), Panel(rates, title="Throughput"), Panel(infra, title="Redis / host"))
    return Group(Text.assemble("Humanizer monitor — overall: ", status_text(overall)), row)
