"""Responses API streams through the whole pipeline (single Redis and cluster): the edge's
timing samples start at the first delta, ``completed_at``, and injected faults in the
Responses shapes."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import openai
import pytest
from httpx_sse import ServerSentEvent, connect_sse
from tests.support.servers import wait_until
from tests.support.sse import timing
from tests.support.stack import Stack

from fakeai.services.edge.faults import FAULT_CODE

pytestmark = [pytest.mark.redis, pytest.mark.e2e]

MODEL = "gpt-4o"
BODY = {"model": MODEL, "input": "Time me.", "stream": True, "max_output_tokens": 16}


def _client(stack: Stack) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{stack.url}/v1", api_key="x", max_retries=0, timeout=20)


def _events(c: httpx.Client, headers: dict[str, str] | None = None) -> list[ServerSentEvent]:
    with connect_sse(c, "POST", "/v1/responses", json=BODY, headers=headers or {}) as source:
        assert source.response.status_code == 200
        return list(source.iter_sse())


def test_edge_ttft_of_a_response_is_taken_at_its_first_delta(stack: Stack) -> None:
    """response.created is due at acceptance, the first delta after the TTFT: edge_ttft and
    the first write's pipeline_lag are sampled at the delta, so edge_ttft is at least the
    TTFT (it was about 0 when taken at response.created)."""
    ttft_s = 0.4
    with httpx.Client(base_url=stack.url, timeout=20) as c:
        for _ in range(2):
            events = _events(c, timing(int(ttft_s * 1000), 0))
            assert events[-1].event == "response.incomplete"

        def edge_ttft() -> dict[str, Any]:
            body = c.get("/v1/metrics/latency", params={"model": MODEL, "window": 60}).json()
            summary: dict[str, Any] = body["models"].get(MODEL, {}).get("edge_ttft", {})
            return summary if summary.get("count", 0) >= 2 else {}

        summary = wait_until(edge_ttft, timeout_s=10)
    assert summary["count"] == 2  # one sample per response, not one per write
    assert summary["p50"] >= ttft_s * 0.95  # seconds


def test_completed_at_is_set_on_completed_responses_only(stack: Stack) -> None:
    with _client(stack) as client:
        before = int(time.time())
        done = client.responses.create(model=MODEL, input="Finish.")
        events = list(
            client.responses.create(model=MODEL, input="Cap me.", stream=True, max_output_tokens=16)
        )
        stored = client.responses.retrieve(done.id)
    assert done.status == "completed"
    assert done.completed_at is not None
    assert before <= done.completed_at <= time.time() + 1
    assert done.completed_at >= done.created_at
    assert stored.completed_at == done.completed_at
    created = events[0]
    assert created.type == "response.created"
    assert created.response.completed_at is None  # type: ignore[union-attr]
    final = events[-1]
    assert final.type == "response.incomplete"
    assert final.response.completed_at is None  # type: ignore[union-attr]


def test_injected_error_is_a_responses_error_event_and_resumable(stack: Stack) -> None:
    with httpx.Client(base_url=stack.url, timeout=20) as c:
        events = _events(c, {"X-FakeAI-Fault": "error_after=5"})
        whole = _events(c)
    assert len(events) == 6
    head, error = events[:5], events[5]
    assert [e.event for e in head[:2]] == ["response.created", "response.in_progress"]
    assert [json.loads(e.data)["sequence_number"] for e in head] == list(range(5))
    assert error.event == "error"
    body = json.loads(error.data)
    assert body["type"] == "error"
    assert body["code"] == FAULT_CODE
    assert "starting_after" in body["message"]
    assert "choices" not in error.data
    assert "[DONE]" not in error.data
    assert whole[-1].event == "response.incomplete"


def test_injected_error_through_the_sdk_then_resume(stack: Stack) -> None:
    with _client(stack) as client:
        stream = client.responses.create(
            model=MODEL,
            input="Fail, then go on.",
            stream=True,
            background=True,
            max_output_tokens=24,
            extra_headers={"X-FakeAI-Fault": "error_after=8", **timing(0, 2)},
        )
        seen = list(stream)
        assert seen[-1].type == "error"
        assert seen[-1].code == FAULT_CODE  # type: ignore[union-attr]
        head = seen[:-1]
        assert [e.sequence_number for e in head] == list(range(8))
        rid = head[0].response.id  # type: ignore[union-attr]
        tail = list(client.responses.retrieve(rid, stream=True, starting_after=7))
        final = client.responses.retrieve(rid)
    numbers = [e.sequence_number for e in head + tail]
    assert numbers == list(range(len(numbers)))
    text = "".join(
        e.delta  # type: ignore[union-attr]
        for e in head + tail
        if e.type == "response.output_text.delta"
    )
    assert text == final.output_text


def test_injected_malformed_event_is_a_responses_event_cut_short(stack: Stack) -> None:
    with httpx.Client(base_url=stack.url, timeout=20) as c:
        events = _events(c, {"X-FakeAI-Fault": "malformed_after=4"})
    bad = events[4]
    assert bad.event == "response.output_text.delta"
    assert bad.data.startswith('{"type":"response.output_text.delta"')
    with pytest.raises(json.JSONDecodeError):
        json.loads(bad.data)
    assert bad.id == events[3].id  # Last-Event-ID does not move
    good = [json.loads(e.data) for e in events[:4] + events[5:]]
    assert [e["sequence_number"] for e in good] == list(range(len(good)))
    assert events[-1].event == "response.incomplete"


def test_injected_cut_ends_a_response_stream_without_an_end(stack: Stack) -> None:
    with httpx.Client(base_url=stack.url, timeout=20) as c:
        events = _events(c, {"X-FakeAI-Fault": "cut_after=3"})
    assert [json.loads(e.data)["sequence_number"] for e in events] == [0, 1, 2]
    assert all(e.event != "error" for e in events)


def test_a_fault_on_a_resumed_response_is_a_responses_event_too(stack: Stack) -> None:
    """``GET /v1/streams/{resp_id}`` with a fault header answers in the stream's own shapes,
    as ``POST /v1/responses`` does (a malformed event is a cut-short Responses event)."""
    with httpx.Client(base_url=stack.url, timeout=20) as c:
        whole = _events(c)
        sid = json.loads(whole[0].data)["response"]["id"]
        with connect_sse(
            c, "GET", f"/v1/streams/{sid}", headers={"X-FakeAI-Fault": "malformed_after=4"}
        ) as source:
            assert source.response.status_code == 200
            events = list(source.iter_sse())
    bad = events[4]
    assert bad.event == "response.output_text.delta"
    assert bad.data.startswith('{"type":"response.output_text.delta"')
    with pytest.raises(json.JSONDecodeError):
        json.loads(bad.data)
    assert [e.data for e in events[:4] + events[5:]] == [e.data for e in whole]
