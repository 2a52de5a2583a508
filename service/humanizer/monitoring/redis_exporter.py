"""A small Redis exporter, drop-in for the chart's redis_exporter sidecar where that image cannot be had.

The chart's default sidecar is the official ``oliver006/redis_exporter`` image. Where it cannot be
pulled or built (its Go module is refused by the module proxy here), this module serves the metrics our
dashboards and alerts use, under the same names and configured by the same environment variables:

* ``REDIS_ADDR`` (``redis://127.0.0.1:6379``), ``REDIS_PASSWORD``, ``REDIS_USER`` (ACL user name);
* ``REDIS_EXPORTER_WEB_LISTEN_ADDRESS`` (``:9121``); ``/metrics`` and ``/health`` like the original.

Metrics: ``redis_up``, ``redis_memory_used_bytes``, ``redis_memory_max_bytes``,
``redis_connected_clients``, ``redis_commands_processed_total``, ``redis_uptime_in_seconds``,
``redis_db_keys{db}``, ``redis_exporter_scrape_duration_seconds``. Redis is asked once per scrape
(``INFO``); when it cannot be reached ``redis_up`` is 0 and the rest is left out.

Standard library only, so it runs in any image with Python:
``python -m humanizer.monitoring.redis_exporter``.
"""

from __future__ import annotations

import os
import socket
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlparse

GAUGES = {
    "used_memory": ("redis_memory_used_bytes", "gauge", "Bytes allocated by Redis (INFO used_memory)."),
    "maxmemory": ("redis_memory_max_bytes", "gauge", "Redis' maxmemory setting in bytes (0: no limit)."),
    "connected_clients": ("redis_connected_clients", "gauge", "Client connections."),
    "total_commands_processed": ("redis_commands_processed_total", "counter", "Commands processed."),
    "uptime_in_seconds": ("redis_uptime_in_seconds", "gauge", "Seconds since the server started."),
}


def _command(sock: socket.socket, *parts: str) -> bytes:
    """Send one RESP command; return the reply's payload (bulk string, or the status line)."""
    payload = f"*{len(parts)}\r\n" + "".join(f"${len(p.encode())}\r\n{p}\r\n" for p in parts)
    sock.sendall(payload.encode())
    reader = sock.makefile("rb")  # one reader per command: each command reads its whole reply
    head = reader.readline()
    if head.startswith(b"-"):
        raise ConnectionError(head[1:].decode(errors="replace").strip())
    if head.startswith(b"$"):
        size = int(head[1:])
        return reader.read(size + 2)[:size] if size >= 0 else b""
    return head[1:].strip()


def read_info(addr: str, password: str | None, user: str | None, timeout: float = 3.0) -> dict[str, str]:
    """INFO of the Redis at ``addr`` (redis:// URL or host:port) as a flat dict."""
    url = urlparse(addr if "://" in addr else f"redis://{addr}")
    with socket.create_connection((url.hostname or "127.0.0.1", url.port or 6379), timeout=timeout) as sock:
        secret = password or url.password
        name = user or url.username
        if secret:
            _command(sock, "AUTH", *([name] if name else []), secret)
        text = _command(sock, "INFO").decode(errors="replace")
    info: dict[str, str] = {}
    for line in text.splitlines():
        if ":" in line and not line.startswith("#"):
            key, _, value = line.partition(":")
            info[key.strip()] = value.strip()
    return info


def _number(value: str) -> str:
    """An INFO value as exposition text, exact for integers (bytes counts exceed float's %g digits)."""
    try:
        return str(int(value))
    except ValueError:
        return repr(float(value))


def render(info: dict[str, str] | None, took: float) -> str:
    """The exposition text for one scrape (``info`` None: Redis unreachable)."""
    out = ["# HELP redis_up Whether Redis answered INFO.", "# TYPE redis_up gauge", f"redis_up {1 if info else 0}"]
    for key, (name, kind, help_text) in GAUGES.items():
        if info and key in info:
            out += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}", f"{name} {_number(info[key])}"]
    dbs = [(k, v) for k, v in (info or {}).items() if k.startswith("db") and k[2:].isdigit()]
    if dbs:
        out += ["# HELP redis_db_keys Keys per database.", "# TYPE redis_db_keys gauge"]
        for db, value in dbs:
            fields = dict(part.split("=", 1) for part in value.split(",") if "=" in part)
            out.append(f'redis_db_keys{{db="{db}"}} {int(fields.get("keys", 0))}')
    out += ["# HELP redis_exporter_scrape_duration_seconds Time of the last scrape.",
            "# TYPE redis_exporter_scrape_duration_seconds gauge", f"redis_exporter_scrape_duration_seconds {took:.6f}"]
    return "\n".join(out) + "\n"


class _Handler(BaseHTTPRequestHandler):
    server_version = "humanizer-redis-exporter"

    def do_GET(self) -> None:
        if self.path == "/health":
            self._send(200, "ok\n", "text/plain")
        elif self.path.split("?")[0] == "/metrics":
            t0 = time.perf_counter()
            try:
                info: dict[str, str] | None = read_info(
                    os.environ.get("REDIS_ADDR", "redis://127.0.0.1:6379"),
                    os.environ.get("REDIS_PASSWORD") or None, os.environ.get("REDIS_USER") or None,
                )
            except (OSError, ConnectionError, ValueError):
                info = None  # no detail in the output: it could carry the address or a password error
            self._send(200, render(info, time.perf_counter() - t0), "text/plain; version=0.0.4")
        else:
            self._send(404, "not found\n", "text/plain")

    def _send(self, status: int, body: str, ctype: str) -> None:
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        return  # no access log (scrapes every few seconds)


def main() -> int:
    listen = os.environ.get("REDIS_EXPORTER_WEB_LISTEN_ADDRESS", ":9121")
    host, _, port = listen.rpartition(":")
    server = ThreadingHTTPServer((host or "0.0.0.0", int(port)), _Handler)
    print(f"redis exporter on {listen} for {urlparse(os.environ.get('REDIS_ADDR', '')).hostname}", file=sys.stderr)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
