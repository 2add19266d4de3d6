"""The `fakeai-streams` command: run the services, watch, replay, record, benchmark.

    fakeai-streams up          embedded Redis (unless FAKEAI_REDIS_URL) + producer + metrics + edge
    fakeai-streams edge        the HTTP edge alone
    fakeai-streams producer    one producer (run N for N replicas)
    fakeai-streams metrics     one metrics consumer
    fakeai-streams tail        print every chunk of every stream, live (own consumer group)
    fakeai-streams replay ID   print a recorded stream at its original pace (through the edge)
    fakeai-streams export ID   write a stream as JSON Lines to stdout
    fakeai-streams import FILE load a recording written by export
    fakeai-streams bench       load generator: TTFT / ITL / throughput from the client side

Every flag has a ``FAKEAI_*`` environment variable (flag wins). Tools that talk to Redis find it
through ``--redis-url`` / ``FAKEAI_REDIS_URL``, else the URL that a running ``up`` wrote into its
state directory.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path
from typing import Any

from fakeai.config import Settings

__all__ = ["main"]

logger = logging.getLogger(__name__)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--redis-url", help="external Redis (env FAKEAI_REDIS_URL or REDIS_URL)")
    p.add_argument("--key-prefix", help="prefix of every Redis key (default fakeai)")
    p.add_argument("--state-dir", type=Path, help="embedded Redis data and AOF directory")
    p.add_argument("--log-level", help="DEBUG, INFO, WARNING (default INFO)")


def _server(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", help="listen address (default 127.0.0.1)")
    p.add_argument("--port", type=int, help="listen port (default 8000)")
    p.add_argument(
        "--retention",
        dest="retention_s",
        type=int,
        help="keep finished streams S seconds (0 = forever)",
    )
    p.add_argument("--heartbeat", dest="heartbeat_s", type=float, help="SSE ping interval, seconds")
    p.add_argument("--api-key", help="require Authorization: Bearer <key>")
    p.add_argument(
        "--no-latency",
        dest="latency_simulation",
        action="store_const",
        const=False,
        help="serve every request as fast as possible",
    )  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fakeai-streams",
        description="OpenAI-compatible fake LLM server with durable, resumable token streams.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("up", help="start everything (embedded Redis unless one is configured)")
    _common(p)
    _server(p)
    p.add_argument("--edge-workers", type=int, help="edge processes sharing the port")
    p.add_argument("--producer-workers", type=int, help="producer processes")

    p = sub.add_parser("edge", help="run the HTTP edge")
    _common(p)
    _server(p)
    p.add_argument("--fd", type=int, help=argparse.SUPPRESS)  # listening socket from `up`

    for name, text in (("producer", "run one producer"), ("metrics", "run one metrics consumer")):
        p = sub.add_parser(name, help=text)
        _common(p)
        if name == "producer":
            p.add_argument(
                "--no-latency", dest="latency_simulation", action="store_const", const=False
            )
            p.add_argument("--retention", dest="retention_s", type=int)

    p = sub.add_parser("tail", help="print every chunk of every stream, live")
    _common(p)
    p.add_argument("--group", help="consumer group (default: a fresh one for this run)")
    p.add_argument("--stream-id", help="only this stream")
    p.add_argument("--model", help="only this model")
    p.add_argument("--format", dest="fmt", choices=["text", "jsonl"], default="text")
    p.add_argument("--limit", type=int, help="stop after N events")

    p = sub.add_parser("replay", help="print a stream through the edge, at its recorded pace")
    p.add_argument("stream_id")
    p.add_argument("--url", default="http://127.0.0.1:8000", help="edge base URL")
    p.add_argument("--pace", default="original", help="original, fast, or a speed factor")
    p.add_argument("--format", dest="fmt", choices=["text", "sse", "jsonl"], default="text")
    p.add_argument("--api-key")

    p = sub.add_parser("export", help="write a stream as JSON Lines to stdout")
    _common(p)
    p.add_argument("stream_id")

    p = sub.add_parser("import", help="load a recording written by export")
    _common(p)
    p.add_argument("file", type=Path, help="JSON Lines file, or - for stdin")
    p.add_argument("--retention", dest="retention_s", type=int, default=0)

    p = sub.add_parser("bench", help="load-test an OpenAI-compatible server")
    from fakeai.services.bench.client import add_arguments

    add_arguments(p)
    return parser


_SETTING_FLAGS = (
    "redis_url",
    "key_prefix",
    "state_dir",
    "log_level",
    "host",
    "port",
    "retention_s",
    "heartbeat_s",
    "api_key",
    "latency_simulation",
    "edge_workers",
    "producer_workers",
)


def settings_from_args(args: argparse.Namespace) -> Settings:
    overrides: dict[str, Any] = {k: getattr(args, k, None) for k in _SETTING_FLAGS}
    return Settings.from_env(**overrides)


def _setup_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def redis_url_for_tools(settings: Settings) -> str:
    """The Redis a tool should use: configured, or the one a running `up` announced."""
    if settings.redis_url:
        return settings.redis_url
    announced = settings.state_dir / "redis.url"
    if announced.exists():
        return announced.read_text().strip()
    raise SystemExit(
        "no Redis: pass --redis-url or set FAKEAI_REDIS_URL (or start `fakeai-streams up`, "
        f"which announces its embedded Redis in {announced})"
    )


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    cmd = args.command
    if cmd == "replay":
        from fakeai.services.tools import replay

        return replay(args.url, args.stream_id, pace=args.pace, fmt=args.fmt, api_key=args.api_key)
    if cmd == "bench":
        from fakeai.services.bench.client import main as bench_main

        return bench_main(args)
    try:
        settings = settings_from_args(args)
    except ValueError as e:
        print(f"fakeai-streams: {e}", file=sys.stderr)
        return 2
    _setup_logging(settings.log_level)

    if cmd == "up":
        from fakeai.services.supervisor import run_up

        return run_up(settings)
    if cmd == "edge":
        from fakeai.services.edge.app import serve

        serve(settings, fd=args.fd)
        return 0
    if cmd == "producer":
        from fakeai.services.producer.service import main as producer_main

        producer_main(settings)
        return 0
    if cmd == "metrics":
        from fakeai.services.metrics.service import main as metrics_main

        metrics_main(settings)
        return 0

    settings = settings.model_copy(update={"redis_url": redis_url_for_tools(settings)})
    if cmd == "tail":
        from fakeai.services.observer.tail import run as tail_run

        try:
            asyncio.run(
                tail_run(
                    settings,
                    group=args.group,
                    stream_id=args.stream_id,
                    model=args.model,
                    fmt=args.fmt,
                    limit=args.limit,
                )
            )
        except KeyboardInterrupt:
            pass
        return 0
    from fakeai.services.tools import export_cmd, import_cmd

    if cmd == "export":
        return export_cmd(settings, args.stream_id)
    if cmd == "import":
        return import_cmd(settings, args.file, retention_s=args.retention_s)
    raise AssertionError(cmd)


if __name__ == "__main__":
    sys.exit(main())
