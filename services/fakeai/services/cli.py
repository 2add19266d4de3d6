"""The `fakeai-streams` command: run the services, watch, replay, record, benchmark.

    fakeai-streams up          embedded Redis (unless FAKEAI_REDIS_URL) + producer + metrics + edge
    fakeai-streams edge        the HTTP edge alone
    fakeai-streams producer    one producer (run N for N replicas)
    fakeai-streams metrics     one metrics consumer
    fakeai-streams tail        print every chunk of every stream, live (own consumer group)
    fakeai-streams replay ID   print a recorded stream at its original pace (through the edge)
    fakeai-streams export ID   write a stream as JSON Lines to stdout
    fakeai-streams import FILE load a recording written by export
    fakeai-streams delete ID   delete a recorded stream (a running one only with --force)
    fakeai-streams migrate     move a Redis of key layout 1 to this version's layout
    fakeai-streams bench       load generator: TTFT / ITL / throughput from the client side
    fakeai-streams cluster     a Redis Cluster on loopback (3 masters) until Ctrl-C, to try one

Every flag has a ``FAKEAI_*`` environment variable (flag wins). Tools that talk to Redis find it
through ``--redis-url`` / ``FAKEAI_REDIS_URL``, else the URL that a running ``up`` wrote into its
state directory (``<state-dir>/redis.url``, readable by its owner only: it carries the embedded
Redis's password; ``migrate`` starts the state directory's embedded Redis itself when ``up`` is
not running). A Redis Cluster is detected by itself (``--redis-cluster`` /
``--no-redis-cluster`` force it).

Every command that uses Redis checks it first (:func:`fakeai.services.runtime.preflight`): a
Redis of another key layout, or (except for the services, which wait for Redis themselves) one
that does not answer, ends the command with one line on stderr and exit status 1.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Any

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from fakeai.config import Settings
from fakeai.streams.client import LayoutMismatch

__all__ = ["EXIT_BROKEN_PIPE", "main"]

logger = logging.getLogger(__name__)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--redis-url", help="external Redis (env FAKEAI_REDIS_URL or REDIS_URL)")
    p.add_argument("--key-prefix", help="prefix of every Redis key (default fakeai)")
    p.add_argument("--state-dir", type=Path, help="embedded Redis data and AOF directory")
    p.add_argument("--log-level", help="DEBUG, INFO, WARNING (default INFO)")
    p.add_argument(
        "--redis-cluster",
        action=argparse.BooleanOptionalAction,
        help="the Redis is a cluster, or not (default: detected; env FAKEAI_REDIS_CLUSTER)",
    )


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


def _edge_url() -> str:
    """The edge that ``up`` and ``edge`` would listen on, from the same environment."""
    host = os.environ.get("FAKEAI_HOST") or "127.0.0.1"
    port = os.environ.get("FAKEAI_PORT") or "8000"
    return f"http://{host}:{port}"


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


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
    p.add_argument("--limit", type=_positive, help="stop after N events")

    p = sub.add_parser("replay", help="print a stream through the edge, at its recorded pace")
    p.add_argument("stream_id")
    p.add_argument(
        "--url",
        default=_edge_url(),
        help="edge base URL (default: FAKEAI_HOST and FAKEAI_PORT, else http://127.0.0.1:8000)",
    )
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
    p.add_argument("--replace", action="store_true", help="delete a stream of that id first")

    p = sub.add_parser("delete", help="delete a recorded stream")
    _common(p)
    p.add_argument("stream_id")
    p.add_argument("--force", action="store_true", help="delete it even if it is still running")

    p = sub.add_parser("migrate", help="move a Redis of key layout 1 to this version's layout")
    _common(p)
    p.add_argument("--dry-run", action="store_true", help="print what it would do, change nothing")
    p.add_argument(
        "--force", action="store_true", help="migrate even while layout-1 services seem to run"
    )

    p = sub.add_parser("cluster", help="run a Redis Cluster on loopback until Ctrl-C")
    p.add_argument("--masters", type=_positive, default=3, help="master nodes (default 3)")
    p.add_argument(
        "--replicas", type=int, default=0, choices=range(0, 4), help="replicas per master"
    )

    p = sub.add_parser("bench", help="load-test an OpenAI-compatible server")
    from fakeai.services.bench.client import add_arguments

    add_arguments(p)
    return parser


_SETTING_FLAGS = (
    "redis_url",
    "redis_cluster",
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


EXIT_BROKEN_PIPE = 128 + signal.SIGPIPE
"""The exit status of a command whose reader went away (``replay ... | head``): that of a Unix
tool killed by SIGPIPE, as the shell reports it (141)."""


def main(argv: list[str] | None = None) -> int:
    """Run one command; its exit status.

    A reader that closes the output early (``| head``) ends the command quietly with
    :data:`EXIT_BROKEN_PIPE`, as ``cat`` would end; not with a traceback. (SIGPIPE is not
    restored to its default instead: it would kill ``tail`` before it removes its consumer
    groups, and any command writing to a socket whose peer left.)
    """
    try:
        return _main(argv)
    except BrokenPipeError:
        # Whatever is still buffered for stdout cannot be written: point stdout at /dev/null
        # so the interpreter's final flush does not report the same error again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return EXIT_BROKEN_PIPE


def _main(argv: list[str] | None) -> int:
    args = build_parser().parse_args(argv)
    cmd = args.command
    if cmd == "replay":
        from fakeai.services.tools import replay

        return replay(args.url, args.stream_id, pace=args.pace, fmt=args.fmt, api_key=args.api_key)
    if cmd == "bench":
        from fakeai.services.bench.client import main as bench_main

        return bench_main(args)
    if cmd == "cluster":
        return _cluster(args.masters, args.replicas)
    try:
        settings = settings_from_args(args)
    except ValueError as e:
        print(f"fakeai-streams: {e}", file=sys.stderr)
        return 2
    _setup_logging(settings.log_level)
    from fakeai.services.runtime import RedisUnusable

    try:
        return _run(cmd, args, settings)
    except (LayoutMismatch, RedisUnusable) as e:
        print(f"fakeai-streams: {e}", file=sys.stderr)
        return 1
    except (RedisConnectionError, RedisTimeoutError) as e:
        print(f"fakeai-streams: {cmd}: lost the connection to Redis: {e}", file=sys.stderr)
        return 1


def _run(cmd: str, args: argparse.Namespace, settings: Settings) -> int:
    if cmd == "up":
        from fakeai.services.supervisor import run_up

        return run_up(settings)
    if cmd in ("edge", "producer", "metrics"):
        return _service(cmd, args, _checked(settings, required=False))
    if cmd == "migrate":
        return _migrate(args, settings)
    settings = _checked(
        settings.model_copy(update={"redis_url": redis_url_for_tools(settings)}), required=True
    )
    if cmd == "tail":
        from fakeai.services.observer.tail import run as tail_run
        from fakeai.services.runtime import run_until_signalled

        # SIGINT and SIGTERM both end the run in order: a fresh group is destroyed.
        run_until_signalled(
            lambda stop: tail_run(
                settings,
                group=args.group,
                stream_id=args.stream_id,
                model=args.model,
                fmt=args.fmt,
                limit=args.limit,
                stop=stop,
            )
        )
        return 0
    from fakeai.services.tools import delete_cmd, export_cmd, import_cmd

    if cmd == "export":
        return export_cmd(settings, args.stream_id)
    if cmd == "import":
        return import_cmd(settings, args.file, retention_s=args.retention_s, replace=args.replace)
    if cmd == "delete":
        return delete_cmd(settings, args.stream_id, force=args.force)
    raise AssertionError(cmd)


def _checked(settings: Settings, *, required: bool, layout: bool = True) -> Settings:
    """``settings`` with ``redis_cluster`` as detected, after :func:`preflight` (which checks
    the key layout too, with ``layout``).

    A service (``required`` False) starts even when Redis does not answer yet: it waits for
    it. A layout mismatch always ends the command.
    """
    from fakeai.services.runtime import RedisUnusable, preflight

    if settings.redis_url is None:
        return settings  # the service says what it needs
    try:
        cluster = asyncio.run(preflight(settings, layout=layout))
    except RedisUnusable as e:
        if required:
            raise
        logger.warning("%s; starting anyway (the service waits for Redis)", e)
        return settings
    return settings.model_copy(update={"redis_cluster": cluster})


def _service(cmd: str, args: argparse.Namespace, settings: Settings) -> int:
    if cmd == "edge":
        from fakeai.services.edge.app import serve

        serve(settings, fd=args.fd)
    elif cmd == "producer":
        from fakeai.services.producer.service import main as producer_main

        producer_main(settings)
    else:
        from fakeai.services.metrics.service import main as metrics_main

        metrics_main(settings)
    return 0


def _migrate(args: argparse.Namespace, settings: Settings) -> int:
    """``migrate`` on the configured Redis, else on the one a running ``up`` announced, else on
    the state directory's embedded Redis, started for the migration (``up`` refuses to start on
    layout-1 data, so it cannot be the one to serve it)."""
    from fakeai.services.supervisor import embedded_redis
    from fakeai.services.tools import migrate_cmd

    announced = settings.state_dir / "redis.url"
    if settings.redis_url or announced.exists():
        settings = settings.model_copy(update={"redis_url": redis_url_for_tools(settings)})
        settings = _checked(settings, required=True, layout=False)
        return migrate_cmd(settings, dry_run=args.dry_run, force=args.force)
    data = settings.state_dir / "redis"
    if not data.exists():
        print(
            f"fakeai-streams: no Redis to migrate: pass --redis-url or set FAKEAI_REDIS_URL "
            f"(no embedded Redis data in {data})",
            file=sys.stderr,
        )
        return 1
    embedded = embedded_redis(settings)  # its data and password, as `up` runs it
    try:
        url = embedded.start()
    except RuntimeError as e:
        print(f"fakeai-streams: {e}", file=sys.stderr)
        return 1
    try:
        return migrate_cmd(
            settings.model_copy(update={"redis_url": url, "redis_cluster": False}),
            dry_run=args.dry_run,
            force=args.force,
        )
    finally:
        embedded.stop()


def _cluster(masters: int, replicas: int) -> int:
    """Run an :class:`~fakeai.embedded_cluster.EmbeddedCluster` until SIGINT/SIGTERM."""
    import threading

    from fakeai.embedded_cluster import EmbeddedCluster

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    with EmbeddedCluster(masters=masters, replicas=replicas) as cluster:
        ports = " ".join(str(n.port) for n in cluster.nodes)
        print(f"Redis Cluster ready: {cluster.url}  (nodes on 127.0.0.1: {ports})", flush=True)
        print(f"  FAKEAI_REDIS_URL={cluster.url} fakeai-streams up", flush=True)
        stop.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
