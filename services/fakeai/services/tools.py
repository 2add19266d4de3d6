"""Shell tools: replay a stream through the edge, export and import recordings."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import httpx
import redis.asyncio as aredis

from fakeai.config import Settings
from fakeai.streams import Keys
from fakeai.streams.recording import RecordingError, export_stream, import_stream

__all__ = ["export_cmd", "import_cmd", "replay"]


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
            for piece in resp.iter_raw():
                out.write(piece)
                out.flush()
    except httpx.HTTPError as e:
        print(f"replay: cannot reach {url}: {e}", file=sys.stderr)
        return 1
    if fmt == "text":
        out.write(b"\n")
    return 0


async def _export(settings: Settings, stream_id: str) -> list[bytes]:
    assert settings.redis_url
    client = aredis.Redis.from_url(settings.redis_url)
    try:
        return await export_stream(client, Keys(settings.key_prefix), stream_id)
    finally:
        await client.aclose()


def export_cmd(settings: Settings, stream_id: str) -> int:
    try:
        lines = asyncio.run(_export(settings, stream_id))
    except RecordingError as e:
        print(f"export: {e}", file=sys.stderr)
        return 1
    sys.stdout.buffer.writelines(lines)
    return 0


async def _import(settings: Settings, lines: list[bytes], retention_s: int) -> str:
    assert settings.redis_url
    client = aredis.Redis.from_url(settings.redis_url)
    try:
        return await import_stream(
            client, Keys(settings.key_prefix), lines, retention_s=retention_s
        )
    finally:
        await client.aclose()


def import_cmd(settings: Settings, path: Path, *, retention_s: int = 0) -> int:
    try:
        data = sys.stdin.buffer.read() if str(path) == "-" else path.read_bytes()
    except OSError as e:
        print(f"import: {e}", file=sys.stderr)
        return 1
    try:
        stream_id = asyncio.run(_import(settings, data.splitlines(), retention_s))
    except RecordingError as e:
        print(f"import: {e}", file=sys.stderr)
        return 1
    print(stream_id)
    return 0
