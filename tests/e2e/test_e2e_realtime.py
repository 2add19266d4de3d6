"""The Realtime API over WebSocket through the whole pipeline (producer + edge under real
uvicorn, single Redis and 3-master cluster): the official SDK's realtime client, the raw
protocol with ``websockets``, durability (an observer tails the log over SSE), resume after a
lost connection, cancel, and the handshake's refusals."""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import httpx
import openai
import pytest
import websockets
from httpx_sse import connect_sse
from tests.support.stack import Stack

pytestmark = [pytest.mark.redis, pytest.mark.e2e]

MODEL = "gpt-realtime"
FAST = {"X-FakeAI-TTFT-Ms": "0", "X-FakeAI-ITL-Ms": "0"}


def _ws_url(stack: Stack, model: str = MODEL) -> str:
    return stack.url.replace("http://", "ws://") + f"/v1/realtime?model={model}"


async def _recv(ws: Any) -> dict[str, Any]:
    event: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), 20))
    return event


async def _until(ws: Any, type_: str) -> list[dict[str, Any]]:
    """Every event up to and including the first of ``type_``."""
    seen = []
    while True:
        event = await _recv(ws)
        seen.append(event)
        if event["type"] == type_:
            return seen


def test_sdk_realtime_client_text_and_audio(stack: Stack) -> None:
    async def main() -> None:
        client = openai.AsyncOpenAI(base_url=f"{stack.url}/v1", api_key="x", max_retries=0)
        async with client.realtime.connect(model=MODEL, extra_headers=FAST) as conn:
            created = await conn.recv()
            assert created.type == "session.created"
            await conn.session.update(session={"type": "realtime", "output_modalities": ["text"]})
            updated = await conn.recv()
            assert updated.type == "session.updated"
            assert updated.session.output_modalities == ["text"]
            await conn.conversation.item.create(
                item={
                    "type": "message",
                    "role": "user",
                    "content": [{"type": "input_text", "text": "Say hello"}],
                }
            )
            added = await conn.recv()
            assert added.type == "conversation.item.added"
            assert (await conn.recv()).type == "conversation.item.done"
            await conn.response.create()
            text, done = "", None
            async for event in conn:
                if event.type == "response.output_text.delta":
                    text += event.delta
                if event.type == "response.done":
                    done = event
                    break
            assert done is not None
            assert done.response.status == "completed"
            assert text
            assert done.response.output[0].content[0].text == text
            assert done.response.usage.output_tokens > 0

            # Audio: the transcript and the audio deltas that speak it (24 kHz PCM16).
            await conn.response.create(response={"output_modalities": ["audio"]})
            transcript, audio = "", b""
            async for event in conn:
                if event.type == "response.output_audio_transcript.delta":
                    transcript += event.delta
                elif event.type == "response.output_audio.delta":
                    audio += base64.b64decode(event.delta)
                elif event.type == "response.done":
                    assert event.response.status == "completed"
                    break
            assert transcript
            assert len(audio) > 0
            assert len(audio) % 2 == 0  # whole 16-bit samples
        await client.close()

    asyncio.run(main())


def test_raw_protocol_errors_keep_the_connection(stack: Stack) -> None:
    async def main() -> None:
        async with websockets.connect(_ws_url(stack), additional_headers=FAST) as ws:
            assert (await _recv(ws))["type"] == "session.created"
            await ws.send("not json")
            assert (await _recv(ws))["error"]["code"] == "invalid_json"
            await ws.send(json.dumps({"type": "no.such.event", "event_id": "c1"}))
            err = await _recv(ws)
            assert err["type"] == "error"
            assert err["error"]["event_id"] == "c1"
            await ws.send(json.dumps({"type": "input_audio_buffer.commit"}))
            assert (await _recv(ws))["error"]["code"] == "input_audio_buffer_commit_empty"
            await ws.send(json.dumps({"type": "response.cancel"}))
            assert (await _recv(ws))["error"]["code"] == "response_cancel_not_active"
            pcm = base64.b64encode(b"\x00\x01" * 24_000).decode()
            await ws.send(json.dumps({"type": "input_audio_buffer.append", "audio": pcm}))
            await ws.send(json.dumps({"type": "input_audio_buffer.commit"}))
            committed = await _recv(ws)
            assert committed["type"] == "input_audio_buffer.committed"
            added = await _recv(ws)
            assert added["item"]["id"] == committed["item_id"]
            assert added["item"]["content"] == [{"type": "input_audio", "transcript": None}]

    asyncio.run(main())


def test_observer_tails_the_response_and_a_client_resumes_it(stack: Stack) -> None:
    """The response's events are its log: SSE on /v1/streams gives them all, and a second
    connection resumes after any event id with the rest, exactly once."""

    async def first_part() -> tuple[str, list[dict[str, Any]]]:
        async with websockets.connect(_ws_url(stack), additional_headers=FAST) as ws:
            await _recv(ws)
            await ws.send(json.dumps({"type": "response.create"}))
            events = await _until(ws, "response.done")
            return events[0]["response"]["id"], events

    sid, events = asyncio.run(first_part())
    assert sid.startswith("rtresp_")
    assert events[0]["type"] == "response.created"
    created = events[0]["event_id"].removeprefix("event_").split("-")[0]
    assert [e["event_id"] for e in events] == [
        f"event_{created}-{seq}" for seq in range(1, len(events) + 1)
    ]  # each event names its log entry

    with (
        httpx.Client(base_url=stack.url, timeout=20) as http,
        connect_sse(http, "GET", f"/v1/streams/{sid}") as source,
    ):
        tailed = [(s.event, json.loads(s.data)) for s in source.iter_sse()]
    assert [data for _, data in tailed] == events
    assert [name for name, _ in tailed] == [e["type"] for e in events]

    cut = len(events) // 2

    async def resume() -> list[dict[str, Any]]:
        async with websockets.connect(_ws_url(stack), additional_headers=FAST) as ws:
            await _recv(ws)
            resume_event = {
                "type": "response.resume",
                "response_id": sid,
                "after_event_id": events[cut - 1]["event_id"],
            }
            await ws.send(json.dumps(resume_event))
            return await _until(ws, "response.done")

    assert asyncio.run(resume()) == events[cut:]


def test_cancel_ends_with_response_done_cancelled(start_stack: Any) -> None:
    slow = {"X-FakeAI-TTFT-Ms": "0", "X-FakeAI-ITL-Ms": "200"}
    with start_stack() as stack:

        async def main() -> list[dict[str, Any]]:
            async with websockets.connect(_ws_url(stack), additional_headers=slow) as ws:
                await _recv(ws)
                await ws.send(json.dumps({"type": "response.create"}))
                await _until(ws, "response.output_audio.delta")
                await ws.send(json.dumps({"type": "response.cancel"}))
                return await _until(ws, "response.done")

        done = asyncio.run(main())[-1]
    assert done["response"]["status"] == "cancelled"


def test_handshake_refusals(start_stack: Any) -> None:
    with start_stack(latency_simulation=False, api_key="sk-admin") as stack:

        async def main() -> None:
            with pytest.raises(websockets.InvalidStatus) as denied:
                async with websockets.connect(_ws_url(stack)):
                    pass
            assert denied.value.response.status_code == 401
            assert json.loads(denied.value.response.body)["error"]["code"] == "invalid_api_key"
            auth = {"Authorization": "Bearer sk-admin"}
            with pytest.raises(websockets.InvalidStatus) as unknown:
                async with websockets.connect(
                    _ws_url(stack, "no-such-model"), additional_headers=auth
                ):
                    pass
            assert unknown.value.response.status_code == 404
            protocols = ["realtime", "openai-insecure-api-key.sk-admin"]
            async with websockets.connect(_ws_url(stack), subprotocols=protocols) as ws:  # type: ignore[arg-type]
                assert ws.subprotocol == "realtime"
                assert (await _recv(ws))["type"] == "session.created"

        asyncio.run(main())


def test_a_handler_that_fails_is_an_error_event_and_the_session_goes_on(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Any failure inside a client event's handler (a bug, Redis failing) is a server_error
    event naming the client's event; the connection stays open for the next event."""
    from fakeai.services.edge import realtime

    async def broken(conn: Any, event: dict[str, Any]) -> None:
        raise RuntimeError("boom")

    monkeypatch.setitem(realtime._HANDLERS, "session.update", broken)

    async def main() -> None:
        async with websockets.connect(_ws_url(stack), additional_headers=FAST) as ws:
            assert (await _recv(ws))["type"] == "session.created"
            await ws.send(json.dumps({"type": "session.update", "event_id": "c7", "session": {}}))
            err = await _recv(ws)
            assert err["type"] == "error"
            assert err["error"]["code"] == "server_error"
            assert err["error"]["event_id"] == "c7"
            await ws.send(json.dumps({"type": "response.cancel"}))
            assert (await _recv(ws))["error"]["code"] == "response_cancel_not_active"

    asyncio.run(main())
