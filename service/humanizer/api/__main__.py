"""``python -m humanizer.api [--host H] [--port P]``: run the HTTP API."""

from __future__ import annotations

import argparse
import sys

from humanizer.api.settings import ApiConfigError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m humanizer.api", description="Run the Humanizer HTTP API.")
    parser.add_argument("--host", default=None, help="bind address (HUMANIZER_API_HOST, default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=None, help="port (HUMANIZER_API_PORT, default 8000)")
    parser.add_argument("--log-level", default=None, help="LOG_LEVEL")
    args = parser.parse_args(argv)
    from humanizer.api.server import serve

    try:
        serve(args.host, args.port, log_level=args.log_level)
    except ApiConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
