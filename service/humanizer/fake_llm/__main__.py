"""``python -m humanizer.fake_llm`` — prints ``FAKE_LLM_URL=http://HOST:PORT/v1`` once it listens."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from pydantic import ValidationError

from humanizer.fake_llm.config import FakeLLMConfig, parse_fault
from humanizer.fake_llm.server import run


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m humanizer.fake_llm", description=__doc__)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8089, help="0 picks a free port")
    p.add_argument("--latency", type=float, default=None, help="mean seconds to each response (reply work included)")
    p.add_argument("--jitter", type=float, default=None, help="± seconds (uniform)")
    p.add_argument("--api-key", default=None, help="require this bearer key (401 otherwise)")
    p.add_argument("--rpm", type=int, default=None, help="requests per minute; 429 with Retry-After beyond")
    p.add_argument("--mode", choices=["rewrite", "echo", "drop-number", "nonce"], default=None)
    p.add_argument("--pad-tokens", type=int, default=None, help="pad replies to about N tokens")
    p.add_argument("--cut-at-max-tokens", action="store_true", default=None,
                   help="cut replies longer than the request's max_tokens (finish_reason length)")
    p.add_argument("--model", default=None, help="model id reported by /v1/models")
    p.add_argument("--seed", type=int, default=None, help="seed for latency jitter and fault probabilities")
    p.add_argument(
        "--fault", action="append", default=[], metavar="SPEC",
        help="KIND[:name=value...], e.g. 429:probability=0.5:retry_after=2, timeout:first_n=1:hang=5, "
        "400:match=FAULT-400, 500:times_per_text=1, length:min_tokens=200, drop_number:times_per_text=1 (repeatable)",
    )
    p.add_argument("--config-json", default=None, help="a whole config as JSON (flags override it)")
    return p


def config_from_args(args: argparse.Namespace) -> FakeLLMConfig:
    data = json.loads(args.config_json) if args.config_json else {}
    for name in ("latency", "jitter", "api_key", "rpm", "mode", "pad_tokens", "cut_at_max_tokens", "model", "seed"):
        value = getattr(args, name)
        if value is not None:
            data[name] = value
    if args.fault:
        data["faults"] = [*data.get("faults", []), *(parse_fault(f).model_dump() for f in args.fault)]
    return FakeLLMConfig.model_validate(data)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        config = config_from_args(args)
    except (ValueError, ValidationError) as exc:
        print(f"fake-llm: bad configuration: {exc}", file=sys.stderr)
        return 2
    try:
        run(args.host, args.port, config)
    except OSError as exc:
        print(f"fake-llm: cannot listen on {args.host}:{args.port}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # pragma: no cover
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
