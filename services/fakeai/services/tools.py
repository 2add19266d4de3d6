"""Shell tools: replay a stream through the edge; export, import and delete recordings; migrate
a Redis to this key layout.

The Redis tools take a client from :func:`fakeai.streams.client.connect` (a single server or a
cluster, detected) and check the key layout first (:func:`fakeai.streams.client.check_layout`);
``migrate`` is the one tool that runs on the old layout. Each returns the process exit status
and prints its own errors as one line; a ``LayoutMismatch`` or an unreachable Redis is printed
by the CLI.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import httpx

from fakeai.config import Settings
from fakeai.streams import Keys
from fakeai.streams.client import RedisClient, check_layout, connect
from fakeai.streams.migrate import MigrationRefused, migrate
from fakeai.streams.recording import (
    RecordingError,
    delete_stream,
    export_stream,
    import_stream,
)

__all__ = ["delete_cmd", "export_cmd", "import_cmd", "migrate_cmd", "replay"]

T = TypeVar("T")


def replay(url: str, stream_id: str, *, pace: str, fmt: str, api_key: str | None = None) -> int:
    """Stream ``GET /v1/streams/{id}?pace=&format=`` to stdout as it arrives."""
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    params = {"pace": pace, "format": fmt}
    out = sys.stdout.buffer
    try:
        with (
            httpx.Client(
                base_url=url, headers=headers, timeout=httpx.Timeout(30.0, read=None)
            ) as c,
            c.stream("GET", f"/v1/streams/{stream_id}", params=params) as resp,
        ):
            if resp.status_code != 200:
                resp.read()
                print(f"replay: HTTP {resp.status_code}: {resp.text}", file=sys.stderr)
                return 1
            for piece in resp.iter_bytes():  # decoded: the edge gzips for httpx
                out.write(piece)
                out.flush()
    except httpx.HTTPError as e:
        print(f"replay: cannot reach {url}: {e}", file=sys.stderr)
        return 1
    if fmt == "text":
        out.write(b"\n")
    return 0


@contextlib.asynccontextmanager
async def _client(settings: Settings, *, layout: bool = True) -> AsyncIterator[RedisClient]:
    """A client for the tool's Redis; with ``layout``, the key layout checked first."""
    assert settings.redis_url
    client = await connect(settings.redis_url, cluster=settings.redis_cluster)
    try:
        if layout:
            await check_layout(client, Keys(settings.key_prefix))
        yield client
    finally:
        await client.aclose()


def _run(tool: str, work: Callable[[], Coroutine[Any, Any, T]]) -> T | None:
    """Run ``work``; a refusal (``RecordingError``, ``MigrationRefused``) is printed as
    ``<tool>: <message>`` and None returned."""
    try:
        return asyncio.run(work())
    except (RecordingError, MigrationRefused) as e:
        print(f"{tool}: {e}", file=sys.stderr)
        return None


def export_cmd(settings: Settings, stream_id: str) -> int:
    async def work() -> list[bytes]:
        async with _client(settings) as redis:
            return await export_stream(redis, Keys(settings.key_prefix), stream_id)

    lines = _run("export", work)
    if lines is None:
        return 1
    sys.stdout.buffer.writelines(lines)
    return 0


def import_cmd(
    settings: Settings, path: Path, *, retention_s: int = 0, replace: bool = False
) -> int:
    try:
        data = sys.stdin.buffer.read() if str(path) == "-" else path.read_bytes()
    except OSError as e:
        print(f"import: {e}", file=sys.stderr)
        return 1

    async def work() -> str:
        async with _client(settings) as redis:
            return await import_stream(
                redis,
                Keys(settings.key_prefix),
                data.splitlines(),
                retention_s=retention_s,
                replace=replace,
            )

    stream_id = _run("import", work)
    if stream_id is None:
        return 1
    print(stream_id)
    return 0


def delete_cmd(settings: Settings, stream_id: str, *, force: bool = False) -> int:
    async def work() -> str:
        async with _client(settings) as redis:
            gone = await delete_stream(redis, Keys(settings.key_prefix), stream_id, force=force)
        note = " (it was still running: a producer still generating it may write again)"
        return f"deleted {gone.stream_id} (status {gone.status}){note if gone.was_running else ''}"

    said = _run("delete", work)
    if said is None:
        return 1
    print(said)
    return 0


def migrate_cmd(settings: Settings, *, dry_run: bool = False, force: bool = False) -> int:
    def say(line: str) -> None:
        print(line, flush=True)

    async def work() -> bool:
        async with _client(settings, layout=False) as redis:
            keys = Keys(settings.key_prefix)
            await migrate(redis, keys, dry_run=dry_run, force=force, say=say)
            if not dry_run:
                await check_layout(redis, keys)  # what every service checks at start
        return True

    return 0 if _run("migrate", work) else 1
