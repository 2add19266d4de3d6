"""`fakeai-streams bench`: load-test any OpenAI-compatible streaming server from the client side.

    fakeai-streams bench --url http://127.0.0.1:8000 --concurrency 100 --duration 10 \\
        --model gpt-4o --max-tokens 200 --no-latency [--resume-every 20] [--json]
    fakeai-streams bench --api responses ...     the same against POST /v1/responses

Closed loop: ``--concurrency`` workers each send streaming requests back to back, for
``--requests`` in total or for ``--duration`` seconds (requests started before the end run to
completion). It reports requests/s, chunks/s, output tokens/s, TTFT, ITL, end-to-end latency,
resume latency and gaps/duplicates with ``--resume-every``, its own CPU per chunk, and errors
by kind. Definitions: :mod:`fakeai.services.bench.stats`.

Exit code: 0 when every request succeeded, 1 when any failed (the counts are printed), 2 for
bad arguments. With ``--json`` the last line on stdout is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import sys
from collections.abc import Callable
from typing import Any

from fakeai.services.bench.config import DEFAULT_PROMPT, ENDPOINTS, BenchConfig

__all__ = ["BenchConfig", "add_arguments", "config_from_args", "main"]


def _number(kind: type[int] | type[float], minimum: float, name: str) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{name}: expected {'an integer' if kind is int else 'a number'}, got {text!r}"
            ) from None
        if not math.isfinite(value) or value < minimum:
            raise argparse.ArgumentTypeError(f"{name}: must be >= {minimum:g}, got {text}")
        return value

    return parse


def _header(text: str) -> tuple[str, str]:
    name, sep, value = text.partition(":")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(f"--header: expected 'Name: value', got {text!r}")
    return name.strip(), value.strip()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The bench's flags, on the parser of ``fakeai-streams bench``."""
    p = parser
    p.add_argument("--url", default="http://127.0.0.1:8000", help="server base URL")
    p.add_argument(
        "--concurrency",
        "-c",
        type=_number(int, 1, "--concurrency"),
        default=1,
        help="concurrent streams (closed loop)",
    )
    amount = p.add_mutually_exclusive_group()
    amount.add_argument(
        "--requests",
        "-n",
        type=_number(int, 1, "--requests"),
        help="requests in total (default 100 unless --duration)",
    )
    amount.add_argument(
        "--duration",
        "-d",
        type=_number(float, 0.001, "--duration"),
        help="seconds to keep starting requests",
    )
    p.add_argument(
        "--api",
        "--endpoint",
        dest="endpoint",
        choices=ENDPOINTS,
        default="chat",
        help="/v1/chat/completions, /v1/completions or /v1/responses (--max-tokens is then "
        "max_output_tokens, at least 16)",
    )
    p.add_argument("--model", default="gpt-4o")
    p.add_argument(
        "--max-tokens",
        type=_number(int, 1, "--max-tokens"),
        default=100,
        help="max_tokens (sent with ignore_eos: true)",
    )
    p.add_argument(
        "--no-latency",
        action="store_true",
        help="no simulated latency: X-FakeAI-TTFT-Ms: 0 and X-FakeAI-ITL-Ms: 0",
    )
    p.add_argument(
        "--ttft-ms",
        type=_number(float, 0, "--ttft-ms"),
        help="fixed TTFT override (X-FakeAI-TTFT-Ms)",
    )
    p.add_argument(
        "--itl-ms", type=_number(float, 0, "--itl-ms"), help="fixed ITL override (X-FakeAI-ITL-Ms)"
    )
    p.add_argument(
        "--api-key",
        default=os.environ.get("FAKEAI_API_KEY"),
        help="Bearer token (env FAKEAI_API_KEY)",
    )
    p.add_argument(
        "--timeout",
        type=_number(float, 0.001, "--timeout"),
        default=60.0,
        help="deadline of one request, resumes included, seconds",
    )
    p.add_argument(
        "--warmup",
        type=_number(int, 0, "--warmup"),
        default=0,
        help="requests sent first and not measured",
    )
    p.add_argument(
        "--ramp-s",
        type=_number(float, 0, "--ramp-s"),
        default=0.0,
        help="start the workers evenly over S seconds (default: all at once)",
    )
    p.add_argument(
        "--resume-every",
        type=_number(int, 1, "--resume-every"),
        help="drop the connection every K chunks and resume with Last-Event-ID (responses: "
        "with starting_after=<sequence_number>)",
    )
    p.add_argument(
        "--resume-delay-ms",
        type=_number(float, 0, "--resume-delay-ms"),
        default=0.0,
        help="with --resume-every: stay away this long before resuming (a network blip), so "
        "the resume has missed events to catch up on",
    )
    p.add_argument(
        "--no-verify",
        action="store_true",
        help="with --resume-every: skip comparing the text with a replay",
    )
    p.add_argument(
        "--prompt",
        default=DEFAULT_PROMPT,
        help="prompt text (a unique nonce is put in front of it)",
    )
    p.add_argument(
        "--header",
        type=_header,
        action="append",
        default=[],
        help="extra request header 'Name: value' (repeatable)",
    )
    p.add_argument(
        "--json",
        action="store_true",
        help="print one JSON object as the last line (no table, no progress bar)",
    )


def config_from_args(args: argparse.Namespace) -> BenchConfig:
    """The run's configuration; ``ValueError`` names the flags of a contradictory combination."""
    ttft, itl = args.ttft_ms, args.itl_ms
    if args.no_latency:
        if ttft is not None or itl is not None:
            raise ValueError("--no-latency means --ttft-ms 0 --itl-ms 0: pass one or the other")
        ttft = itl = 0.0
    if args.resume_delay_ms and args.resume_every is None:
        raise ValueError("--resume-delay-ms only applies with --resume-every")
    if args.no_verify and args.resume_every is None:
        raise ValueError("--no-verify only applies with --resume-every")
    if not args.url.startswith(("http://", "https://")):
        raise ValueError(f"--url: expected an http:// or https:// URL, got {args.url!r}")
    requests = args.requests
    if requests is None and args.duration is None:
        requests = 100
    return BenchConfig(
        url=args.url,
        concurrency=args.concurrency,
        requests=requests,
        duration_s=args.duration,
        endpoint=args.endpoint,
        model=args.model,
        max_tokens=args.max_tokens,
        ttft_ms=ttft,
        itl_ms=itl,
        api_key=args.api_key,
        timeout_s=args.timeout,
        warmup=args.warmup,
        ramp_s=args.ramp_s,
        resume_every=args.resume_every,
        resume_delay_ms=args.resume_delay_ms,
        verify=not args.no_verify,
        prompt=args.prompt,
        extra_headers=dict(args.header),
    )


def _run(coro: Any) -> dict[str, Any]:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop ships with uvicorn[standard]
        return asyncio.run(coro)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro)


def main(args: argparse.Namespace) -> int:
    """Run the bench; 0 when every request succeeded, 1 when any failed, 2 for bad arguments."""
    try:
        cfg = config_from_args(args)
    except ValueError as e:
        print(f"fakeai-streams bench: error: {e}", file=sys.stderr)
        return 2
    # Imported here so that building the CLI's parser never needs the HTTP client and rich.
    from fakeai.services.bench.report import json_line, progress_bar, render_table
    from fakeai.services.bench.runner import run_bench

    with progress_bar(
        not args.json, total_requests=cfg.requests, duration_s=cfg.duration_s
    ) as progress:
        result = _run(run_bench(cfg, progress))
    if args.json:
        print(json_line(result), flush=True)
    else:
        render_table(result)
    if result["errors"]:
        kinds = ", ".join(f"{k} {n}" for k, n in result["errors_by_kind"].items())
        print(
            f"fakeai-streams bench: {result['errors']} of {result['requests']} requests failed "
            f"({kinds})",
            file=sys.stderr,
        )
        return 1
    if result["requests_ok"] == 0:
        print("fakeai-streams bench: no request finished", file=sys.stderr)
        return 1
    return 0


def _cli(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fakeai-streams bench", description=__doc__)
    add_arguments(parser)
    return main(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(_cli())
