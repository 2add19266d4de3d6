"""Streams that carry audio and images, in every format of ``GET /v1/streams/{id}``, and
through export and import.

- JSON Lines: the events as they are, the binary base64 inside them (the speech deltas decode
  to the very bytes the raw audio answer sent).
- Text: a realtime response's text and transcript deltas; nothing for speech and images, with
  ``X-FakeAI-Text-Omitted`` naming what was left out.
- Export then import (after the stream's keys are gone) gives back the same log, byte for
  byte, and the same replay.
"""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import httpx
import pytest
import websockets
from tests.support.stack import Stack

from fakeai.streams import Keys
from fakeai.streams.client import connect
from fakeai.streams.recording import export_stream, import_stream

pytestmark = [pytest.mark.redis, pytest.mark.e2e]

FAST = {"X-FakeAI-TTFT-Ms": "0", "X-FakeAI-ITL-Ms": "0"}
TEXT = "Durable streams keep every word."


def _speech(http: httpx.Client) -> tuple[str, bytes]:
    body = {"model": "tts-1", "voice": "alloy", "input": TEXT, "response_format": "pcm"}
    r = http.post("/v1/audio/speech", json=body, headers=FAST)
    assert r.status_code == 200, r.text
    return r.headers["x-stream-id"], r.content


def _image(http: httpx.Client) -> str:
    body = {"model": "gpt-image-1", "prompt": "a log", "stream": True, "partial_images": 2}
    r = http.post("/v1/images/generations", json=body, headers=FAST)
    assert r.status_code == 200, r.text
    return str(r.headers["x-stream-id"])


def _realtime(stack: Stack) -> tuple[str, list[dict[str, Any]]]:
    url = stack.url.replace("http://", "ws://") + "/v1/realtime?model=gpt-realtime"

    async def main() -> tuple[str, list[dict[str, Any]]]:
        async with websockets.connect(url, additional_headers=FAST) as ws:
            await asyncio.wait_for(ws.recv(), 20)  # session.created
            await ws.send(json.dumps({"type": "response.create"}))
            events = []
            while not events or events[-1]["type"] != "response.done":
                events.append(json.loads(await asyncio.wait_for(ws.recv(), 20)))
            return events[0]["response"]["id"], events

    return asyncio.run(main())


def _jsonl(http: httpx.Client, sid: str) -> list[dict[str, Any]]:
    r = http.get(f"/v1/streams/{sid}", params={"format": "jsonl"})
    assert r.status_code == 200
    return [json.loads(line) for line in r.text.splitlines()]


def _events(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    assert lines[-1]["type"] == "done"
    return [line["data"] for line in lines if line["type"] == "chunk"]


def test_jsonl_carries_the_events_and_their_bytes_as_they_are(stack: Stack) -> None:
    with httpx.Client(base_url=stack.url, timeout=20) as http:
        sid, audio = _speech(http)
        speech = _events(_jsonl(http, sid))
        image = _events(_jsonl(http, _image(http)))
    assert speech[-1]["type"] == "speech.audio.done"
    deltas = [e for e in speech if e["type"] == "speech.audio.delta"]
    assert b"".join(base64.b64decode(e["audio"]) for e in deltas) == audio
    assert [e["type"] for e in image] == [
        "image_generation.partial_image",
        "image_generation.partial_image",
        "image_generation.completed",
    ]
    for e in image:
        assert base64.b64decode(e.get("b64_json") or e["partial_image_b64"]).startswith(
            b"\x89PNG\r\n\x1a\n"
        )


def test_text_gives_transcripts_or_nothing_and_says_what_it_left_out(stack: Stack) -> None:
    rt_sid, rt_events = _realtime(stack)
    with httpx.Client(base_url=stack.url, timeout=20) as http:
        speech_sid, _ = _speech(http)
        image_sid = _image(http)
        texts = {
            sid: http.get(f"/v1/streams/{sid}", params={"format": "text"})
            for sid in (speech_sid, image_sid, rt_sid)
        }
        chat = http.post(
            "/v1/chat/completions",
            json={"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}],
                  "stream": True, "max_tokens": 3},
            headers=FAST,
        )  # fmt: skip
        chat_text = http.get(
            f"/v1/streams/{chat.headers['x-stream-id']}", params={"format": "text"}
        )
    assert texts[speech_sid].text == ""
    assert texts[speech_sid].headers["x-fakeai-text-omitted"] == "audio"
    assert texts[image_sid].text == ""
    assert texts[image_sid].headers["x-fakeai-text-omitted"] == "image"
    spoken = "".join(
        e["delta"]
        for e in rt_events
        if e["type"] in ("response.output_text.delta", "response.output_audio_transcript.delta")
    )
    assert spoken
    assert texts[rt_sid].text == spoken
    assert texts[rt_sid].headers["x-fakeai-text-omitted"] == "audio"
    assert chat_text.text
    assert "x-fakeai-text-omitted" not in chat_text.headers


def test_export_then_import_of_audio_and_image_streams_is_exact(stack: Stack) -> None:
    with httpx.Client(base_url=stack.url, timeout=20) as http:
        sids = [_speech(http)[0], _image(http)]
        before = {sid: http.get(f"/v1/streams/{sid}", params={"format": "jsonl"}) for sid in sids}
    keys = Keys(stack.settings.key_prefix)
    assert stack.settings.redis_url

    async def round_trip(sid: str) -> tuple[list[Any], list[Any], str]:
        r = await connect(stack.settings.redis_url or "")
        try:
            log = await r.xrange(keys.chunks(sid))
            lines = await export_stream(r, keys, sid)
            await r.delete(keys.chunks(sid))
            await r.delete(keys.meta(sid))
            imported = await import_stream(r, keys, lines, retention_s=600)
            return log, await r.xrange(keys.chunks(sid)), imported
        finally:
            await r.aclose()

    for sid in sids:
        log, again, imported = asyncio.run(round_trip(sid))
        assert imported == sid
        assert again == log  # same ids, same times, the same bytes
    with httpx.Client(base_url=stack.url, timeout=20) as http:
        for sid in sids:
            after = http.get(f"/v1/streams/{sid}", params={"format": "jsonl"})
            assert after.status_code == 200
            assert after.content == before[sid].content
