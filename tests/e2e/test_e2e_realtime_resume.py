"""Resuming a realtime response that is still running (single Redis and cluster): a client
loses its WebSocket in the middle of a response, connects again, sends ``response.resume``
with the last event id it got, and receives exactly the rest of the response, live, then
``response.done``; its two parts together are the response's whole log."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
import websockets
from httpx_sse import connect_sse
from tests.support.sse import timing
from tests.support.stack import Stack

pytestmark = [pytest.mark.redis, pytest.mark.e2e]

MODEL = "gpt-realtime"
PACED = {**timing(0, 25), "X-FakeAI-Seed": "26"}
"""25 ms between tokens, and a seed whose answer runs past :data:`TOKENS` tokens: the response
runs for about 5 s, so the client is back long before it ends, and it always ends capped
(``incomplete``), not by its natural length."""
TOKENS = 200
HEAD = 8
"""Events the first connection takes before it is lost."""


def _ws_url(stack: Stack) -> str:
    return stack.url.replace("http://", "ws://") + f"/v1/realtime?model={MODEL}"


async def _recv(ws: Any) -> dict[str, Any]:
    event: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), 30))
    return event


async def _until_done(ws: Any) -> list[dict[str, Any]]:
    seen = [await _recv(ws)]
    while seen[-1]["type"] != "response.done":
        seen.append(await _recv(ws))
    return seen


def _seq(event: dict[str, Any]) -> int:
    """The log entry seq an event's ``event_id`` (``event_<ms>-<seq>``) names."""
    return int(event["event_id"].rsplit("-", 1)[1])


def test_reconnect_mid_response_and_resume_gets_exactly_the_rest(start_stack: Any) -> None:
    with start_stack() as stack:

        async def first_connection() -> list[dict[str, Any]]:
            async with websockets.connect(_ws_url(stack), additional_headers=PACED) as ws:
                assert (await _recv(ws))["type"] == "session.created"
                params = {"output_modalities": ["text"], "max_output_tokens": TOKENS}
                await ws.send(json.dumps({"type": "response.create", "response": params}))
                return [await _recv(ws) for _ in range(HEAD)]
            # leaving the block closes the connection: not a cancel

        head = asyncio.run(first_connection())
        assert head[0]["type"] == "response.created"
        sid = head[0]["response"]["id"]

        with httpx.Client(base_url=stack.url, timeout=30) as http:
            info = http.get(f"/v1/streams/{sid}/info").json()
            assert info["status"] == "running"  # the client comes back mid-response
            logged_at_resume = info["chunks"]

            async def second_connection() -> list[dict[str, Any]]:
                async with websockets.connect(_ws_url(stack), additional_headers=PACED) as ws:
                    assert (await _recv(ws))["type"] == "session.created"
                    resume = {
                        "type": "response.resume",
                        "response_id": sid,
                        "after_event_id": head[-1]["event_id"],
                    }
                    await ws.send(json.dumps(resume))
                    return await _until_done(ws)

            tail = asyncio.run(second_connection())
            with connect_sse(http, "GET", f"/v1/streams/{sid}") as source:
                whole = [json.loads(s.data) for s in source.iter_sse()]

    assert [_seq(e) for e in head + tail] == list(range(1, len(head) + len(tail) + 1))
    assert head + tail == whole  # exactly the rest: no gap, no duplicate
    assert len(whole) > logged_at_resume  # part of the rest was written after the resume
    done = tail[-1]
    assert done["response"]["status"] == "incomplete"
    assert done["response"]["status_details"]["reason"] == "max_output_tokens"
    text = "".join(e["delta"] for e in whole if e["type"] == "response.output_text.delta")
    assert text == done["response"]["output"][0]["content"][0]["text"]
