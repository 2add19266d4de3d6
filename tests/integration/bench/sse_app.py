"""A tiny OpenAI-like SSE server for the bench tests, with switchable misbehaviours.

Every stream is deterministic: ``tokens`` content chunks ``"t0 "``, ``"t1 "``, ... after a role
chunk, then a finish chunk and ``[DONE]``. Events carry ``id: <ms>-<seq>`` (seq 1 = role chunk,
the ``[DONE]`` event has the last seq), like the project's edge, so ``GET /v1/streams/{id}`` with
``Last-Event-ID`` can resume. Delays are fixed: ``ttft_s`` before the first content chunk (the
role chunk goes with it), ``itl_s`` before each further one.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Literal

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

Mode = Literal[
    "ok",  # well-behaved
    "json",  # answers 200 application/json (not streaming)
    "fail_every_3rd",  # every third POST answers HTTP 500
    "no_done",  # the stream ends without [DONE]
    "error_frame",  # an error frame after two content chunks
    "stall",  # sends the role chunk, then nothing
    "no_stream_id",  # no X-Stream-Id header
    "resume_dup",  # a resume repeats the last event the client had
    "resume_gap",  # a resume skips one event
]

_MS = 1_700_000_000_000


@dataclass
class AppState:
    mode: Mode = "ok"
    tokens: int = 5
    ttft_s: float = 0.0
    itl_s: float = 0.0
    posts: int = 0
    resumes: int = 0
    replays: int = 0
    stream_ids: list[str] = field(default_factory=list)


def _events(sid: str, tokens: int) -> list[tuple[int, bytes]]:
    """(seq, data) of one whole stream, [DONE] included."""
    base = {"id": sid, "object": "chat.completion.chunk", "created": 0, "model": "m"}
    out: list[tuple[int, bytes]] = []

    def chunk(delta: dict[str, str], finish: str | None = None) -> bytes:
        body = {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
        return json.dumps(body).encode()

    out.append((1, chunk({"role": "assistant", "content": ""})))
    for i in range(tokens):
        out.append((i + 2, chunk({"content": f"t{i} "})))
    out.append((tokens + 2, chunk({}, "length")))
    out.append((tokens + 3, b"[DONE]"))
    return out


def _sse(seq: int, data: bytes) -> bytes:
    return b"id: %d-%d\ndata: %s\n\n" % (_MS, seq, data)


def create_app(state: AppState) -> Starlette:
    async def post(request: Request) -> Response:
        await request.body()
        state.posts += 1
        if state.mode == "fail_every_3rd" and state.posts % 3 == 0:
            return JSONResponse({"error": {"message": "boom", "type": "server_error"}}, 500)
        if state.mode == "json":
            return JSONResponse({"object": "chat.completion", "choices": []})
        sid = f"chatcmpl-{secrets.token_hex(12)}"
        state.stream_ids.append(sid)
        events = _events(sid, state.tokens)

        async def body() -> AsyncIterator[bytes]:
            for seq, data in events:
                if seq == 2:
                    await asyncio.sleep(state.ttft_s)
                elif seq > 2 and seq < state.tokens + 2:
                    await asyncio.sleep(state.itl_s)
                if state.mode == "stall" and seq == 2:
                    await asyncio.Event().wait()
                if state.mode == "no_done" and data == b"[DONE]":
                    return
                if state.mode == "error_frame" and seq == 4:
                    yield b'data: {"error": {"message": "failed", "code": "x"}}\n\ndata: [DONE]\n\n'
                    return
                yield _sse(seq, data)

        headers = {} if state.mode == "no_stream_id" else {"X-Stream-Id": sid}
        return StreamingResponse(body(), media_type="text/event-stream", headers=headers)

    async def stream(request: Request) -> Response:
        sid = request.path_params["sid"]
        if sid not in state.stream_ids:
            return JSONResponse({"error": {"message": "unknown stream"}}, 404)
        raw = request.headers.get("last-event-id")
        events = _events(sid, state.tokens)
        if raw is None:
            state.replays += 1
            start = 0
        else:
            state.resumes += 1
            start = int(raw.split("-")[1])  # seq of the last event the client had
            if state.mode == "resume_dup":
                start -= 1
            elif state.mode == "resume_gap" and start + 1 < len(events):
                start += 1

        async def body() -> AsyncIterator[bytes]:
            yield b"id: %d-%d\nretry: 1000\n\n" % (_MS, start)  # priming event, no data
            for seq, data in events[start:]:
                yield _sse(seq, data)

        return StreamingResponse(body(), media_type="text/event-stream")

    return Starlette(
        routes=[
            Route("/v1/chat/completions", post, methods=["POST"]),
            Route("/v1/completions", post, methods=["POST"]),
            Route("/v1/streams/{sid}", stream, methods=["GET"]),
        ]
    )
