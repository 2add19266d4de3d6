"""Durable Responses through the whole pipeline with the ``openai`` SDK: background mode, cut
and resume with ``starting_after``, retrieve, cancel, delete, input items (single Redis and
cluster)."""

from __future__ import annotations

import random

import httpx
import openai
import pytest
from tests.support.servers import wait_until
from tests.support.sse import timing
from tests.support.stack import Stack

pytestmark = [pytest.mark.redis, pytest.mark.e2e]

MODEL = "gpt-4o"
SLOW = timing(0, 5)
"""Paced deltas (5 ms apart), so a cut lands while the response is still generating."""


def _client(stack: Stack) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{stack.url}/v1", api_key="x", max_retries=0, timeout=20)


def _text(events: list[object]) -> str:
    return "".join(
        getattr(e, "delta", "")
        for e in events
        if getattr(e, "type", "") == "response.output_text.delta"
    )


def test_background_cut_after_event_10_and_resume(stack: Stack) -> None:
    with _client(stack) as client:
        stream = client.responses.create(
            model=MODEL, input="Durable?", background=True, stream=True, extra_headers=SLOW
        )
        head = []
        for event in stream:
            head.append(event)
            if event.sequence_number == 10:
                break
        stream.close()
        rid = head[0].response.id  # type: ignore[union-attr]
        with client.responses.stream(response_id=rid, starting_after=10) as resumed:
            tail = list(resumed)
            final = resumed.get_final_response()
        server_side = list(client.responses.retrieve(rid, stream=True, starting_after=10))
    assert [e.sequence_number for e in head] == list(range(11))
    assert [e.sequence_number for e in tail] == list(range(11, 11 + len(tail)))
    assert [e.sequence_number for e in server_side] == [e.sequence_number for e in tail]
    assert final.status == "completed"
    assert _text(head) + _text(tail) == final.output_text


def test_random_cuts_resume_without_gaps_or_duplicates(stack: Stack) -> None:
    rng = random.Random(11)
    with _client(stack) as client:
        for _ in range(100):
            stream = client.responses.create(
                model=MODEL,
                input="Cut me anywhere.",
                background=True,
                stream=True,
                max_output_tokens=40,
                extra_headers=timing(0, 1),
            )
            cut = rng.randint(0, 30)
            seen = []
            for event in stream:
                seen.append(event)
                if event.sequence_number == cut:
                    break
            stream.close()
            rid = seen[0].response.id  # type: ignore[union-attr]
            seen += list(client.responses.retrieve(rid, stream=True, starting_after=cut))
            numbers = [e.sequence_number for e in seen]
            assert numbers == list(range(len(numbers)))  # no gap, no duplicate
            final = client.responses.retrieve(rid)
            assert _text(seen) == final.output_text


def test_background_create_retrieve_and_input_items(stack: Stack) -> None:
    with _client(stack) as client:
        created = client.responses.create(
            model=MODEL,
            input=[
                {"role": "user", "content": "first"},
                {"role": "user", "content": [{"type": "input_text", "text": "second"}]},
            ],
            background=True,
        )
        assert created.status in ("queued", "in_progress")
        done = wait_until(
            lambda: (r := client.responses.retrieve(created.id)).status == "completed" and r
        )
        items = client.responses.input_items.list(created.id, order="asc")
    assert done.output_text
    assert done.background is True
    texts = [i.content[0].text for i in items.data]  # type: ignore[union-attr]
    assert texts == ["first", "second"]
    assert all(i.id for i in items.data)


def test_cancel_a_running_background_response(stack: Stack) -> None:
    with _client(stack) as client:
        created = client.responses.create(
            model=MODEL,
            input="Long, please.",
            background=True,
            extra_headers=timing(0, 50),
        )
        cancelled = client.responses.cancel(created.id)
        assert cancelled.status == "cancelled"
        final = wait_until(
            lambda: (r := client.responses.retrieve(created.id)).status == "cancelled" and r
        )
        again = client.responses.cancel(created.id)  # idempotent, as OpenAI answers it
        assert again.status == "cancelled"
        done = client.responses.create(model=MODEL, input="Quick.", background=True)
        wait_until(lambda: client.responses.retrieve(done.id).status == "completed")
        with pytest.raises(openai.BadRequestError):
            client.responses.cancel(done.id)
    assert final.status == "cancelled"


def test_delete_then_404(stack: Stack) -> None:
    with _client(stack) as client:
        r = client.responses.create(model=MODEL, input="Hi")
        client.responses.delete(r.id)
        with pytest.raises(openai.NotFoundError):
            client.responses.retrieve(r.id)
        with pytest.raises(openai.NotFoundError):
            client.responses.delete(r.id)


def test_store_false_is_not_retrievable(stack: Stack) -> None:
    with _client(stack) as client:
        r = client.responses.create(model=MODEL, input="Hi", store=False)
        assert r.status == "completed"
        with pytest.raises(openai.NotFoundError):
            client.responses.retrieve(r.id)


@pytest.mark.parametrize("query", ["starting_after=-1", "starting_after=x", "starting_after=999"])
def test_bad_starting_after_is_400(stack: Stack, query: str) -> None:
    with _client(stack) as client:
        r = client.responses.create(model=MODEL, input="Hi", max_output_tokens=16)
    with httpx.Client(timeout=20) as http:
        resp = http.get(f"{stack.url}/v1/responses/{r.id}?stream=true&{query}")
    assert resp.status_code == 400
    assert resp.json()["error"]["param"] == "starting_after"


def test_unknown_response_is_404(stack: Stack) -> None:
    with _client(stack) as client:
        for rid in ("resp_nothing", "resp_" + "0" * 35, "chatcmpl-" + "0" * 35):
            with pytest.raises(openai.NotFoundError):
                client.responses.retrieve(rid)


def test_the_stream_endpoint_serves_the_same_events(stack: Stack) -> None:
    with _client(stack) as client:
        events = list(client.responses.create(model=MODEL, input="Hi", stream=True))
    rid = events[0].response.id  # type: ignore[union-attr]
    with httpx.Client(timeout=20) as http:
        replay = http.get(f"{stack.url}/v1/streams/{rid}", params={"format": "text"})
    assert replay.status_code == 200
    assert replay.text == _text(events)
