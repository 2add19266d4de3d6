"""The Responses API through the whole pipeline with the official ``openai`` SDK (producer +
edge under real uvicorn, on a single Redis and on a 3-master cluster): create, stream, the
event sequence and its numbering, max_output_tokens, errors."""

from __future__ import annotations

import json
import time

import httpx
import openai
import pytest
from httpx_sse import connect_sse
from tests.support.sse import timing
from tests.support.stack import Stack

pytestmark = [pytest.mark.redis, pytest.mark.e2e]

MODEL = "gpt-4o"


def _client(stack: Stack) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{stack.url}/v1", api_key="x", max_retries=0, timeout=20)


def test_create_non_streaming_text(stack: Stack) -> None:
    with _client(stack) as client:
        r = client.responses.create(
            model=MODEL,
            input="Tell me about durable streams.",
            instructions="Be brief.",
            metadata={"run": "7"},
        )
    assert r.id.startswith("resp_")
    assert r.object == "response"
    assert r.status == "completed"
    assert r.metadata == {"run": "7"}
    assert r.instructions == "Be brief."
    (message,) = r.output
    assert message.type == "message"
    assert r.output_text
    assert r.usage is not None
    assert r.usage.input_tokens > 0
    assert r.usage.output_tokens > 0
    assert r.usage.total_tokens == r.usage.input_tokens + r.usage.output_tokens
    assert r.usage.output_tokens_details.reasoning_tokens == 0


def test_create_streaming_events_in_openai_order(stack: Stack) -> None:
    with _client(stack) as client:
        events = list(
            client.responses.create(model=MODEL, input="Hello", stream=True, max_output_tokens=16)
        )
    types = [e.type for e in events]
    assert types[:4] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ]
    assert types[-4:] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.incomplete",
    ]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    deltas = [e for e in events if e.type == "response.output_text.delta"]
    assert len(deltas) == 16  # one token piece per delta, capped
    final = events[-1].response
    assert final.status == "incomplete"
    assert final.incomplete_details is not None
    assert final.incomplete_details.reason == "max_output_tokens"
    assert final.output_text == "".join(d.delta for d in deltas)
    assert final.usage is not None
    assert final.usage.output_tokens == 16


def test_stream_helper_final_response(stack: Stack) -> None:
    with (
        _client(stack) as client,
        client.responses.stream(
            model=MODEL,
            input=[{"role": "user", "content": [{"type": "input_text", "text": "Hi there"}]}],
        ) as stream,
    ):
        text = "".join(e.delta for e in stream if e.type == "response.output_text.delta")
        final = stream.get_final_response()
    assert final.status == "completed"
    assert final.output_text == text
    assert text


def test_sse_wire_format(stack: Stack) -> None:
    """``event:`` names the type, ``id:`` is the entry id (seq = sequence_number + 1), and
    there is no ``[DONE]``."""
    body = {"model": MODEL, "input": "Hi", "stream": True, "max_output_tokens": 16}
    with (
        httpx.Client(base_url=stack.url, timeout=20) as http,
        connect_sse(http, "POST", "/v1/responses", json=body) as source,
    ):
        assert source.response.status_code == 200
        sid = source.response.headers["x-stream-id"]
        events = list(source.iter_sse())
    assert sid.startswith("resp_")
    assert all(e.data != "[DONE]" for e in events)
    for ev in events:
        data = json.loads(ev.data)
        assert ev.event == data["type"]
        assert int(ev.id.split("-")[1]) == data["sequence_number"] + 1
    assert json.loads(events[0].data)["response"]["id"] == sid
    assert json.loads(events[-1].data)["type"] == "response.incomplete"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": MODEL, "input": "x", "max_output_tokens": 5}, "max_output_tokens"),
        ({"model": MODEL, "input": "x", "background": True, "store": False}, "background"),
        ({"model": MODEL, "input": 5}, "input"),
        ({"model": MODEL, "input": "x", "tool_choice": "sometimes"}, "tool_choice"),
        (
            {"model": MODEL, "input": "x", "previous_response_id": "resp_nope"},
            "previous_response_id",
        ),
    ],
)
def test_bad_requests_are_openai_errors(stack: Stack, body: dict[str, object], param: str) -> None:
    with httpx.Client(timeout=20) as http:
        resp = http.post(f"{stack.url}/v1/responses", json=body)
    assert resp.status_code == 400
    error = resp.json()["error"]
    assert error["param"] == param
    assert error["type"] == "invalid_request_error"
    assert set(error) == {"message", "type", "param", "code"}


def test_unknown_model_is_404(stack: Stack) -> None:
    with _client(stack) as client, pytest.raises(openai.NotFoundError):
        client.responses.create(model="no-such-model", input="x")


def test_timing_headers_pace_deltas_not_structure(stack: Stack) -> None:
    """Structural events are due at acceptance; the first delta waits for the TTFT.

    Both deadlines count from acceptance, so a producer that picks the request up late (a
    loaded machine) sends both late and closer together: the TTFT is long enough that only
    structural events paced like deltas make the gap shorter than a second."""
    arrivals: dict[str, float] = {}
    start = time.monotonic()
    with _client(stack) as client:
        for event in client.responses.create(
            model=MODEL, input="Hi", stream=True, extra_headers=timing(2500, 0)
        ):
            arrivals.setdefault(event.type, time.monotonic())
    assert arrivals["response.output_text.delta"] - start >= 2.5
    assert arrivals["response.output_text.delta"] - arrivals["response.created"] >= 1.0
