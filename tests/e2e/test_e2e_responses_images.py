"""The Responses API's image generation tool through the whole pipeline with the official SDK
(single Redis and cluster): the streamed call (partial images, then the item with its result),
the non-streaming answer and retrieve, a resume with ``starting_after`` in the middle of the
partial images, and an option the server does not serve."""

from __future__ import annotations

from typing import Any

import openai
import pytest
from tests.support.png import png_size_b64
from tests.support.sse import timing
from tests.support.stack import Stack

pytestmark = [pytest.mark.redis, pytest.mark.e2e]

MODEL = "gpt-4o"
TOOL: dict[str, Any] = {
    "type": "image_generation",
    "partial_images": 2,
    "size": "1024x1536",
    "output_format": "png",
}
IG = "response.image_generation_call."


def _client(stack: Stack) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{stack.url}/v1", api_key="x", max_retries=0, timeout=30)


def test_stream_carries_the_call_then_the_text(stack: Stack) -> None:
    with _client(stack) as client:
        events = list(
            client.responses.create(
                model=MODEL,
                input="A lighthouse at dusk",
                tools=[TOOL],  # type: ignore[list-item]
                tool_choice={"type": "image_generation"},
                stream=True,
            )
        )
    types = [e.type for e in events]
    done_at = types.index("response.output_item.done")
    assert types[: done_at + 1] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        IG + "in_progress",
        IG + "generating",
        IG + "partial_image",
        IG + "partial_image",
        IG + "completed",
        "response.output_item.done",
    ]
    assert types[done_at + 1] == "response.output_item.added"  # then the text
    assert "response.output_text.delta" in types
    assert types[-1] == "response.completed"
    assert [e.sequence_number for e in events] == list(range(len(events)))
    added, done = events[2].item, events[done_at].item  # type: ignore[union-attr]
    assert added.type == done.type == "image_generation_call"
    assert added.id == done.id
    assert added.id.startswith("ig_")
    partials = [e for e in events if e.type == IG + "partial_image"]
    assert [p.partial_image_index for p in partials] == [0, 1]  # type: ignore[union-attr]
    assert {p.item_id for p in partials} == {added.id}  # type: ignore[union-attr]
    images = [p.partial_image_b64 for p in partials] + [done.result]  # type: ignore[union-attr]
    assert [png_size_b64(b) for b in images] == [(1024, 1536)] * 3
    assert len(set(images)) == 3
    assert done.status == "completed"
    assert done.revised_prompt == "A lighthouse at dusk"
    final = events[-1].response  # type: ignore[union-attr]
    assert final.output[0] == done
    assert final.output[1].type == "message"


def test_non_streaming_call_and_retrieve(stack: Stack) -> None:
    with _client(stack) as client:
        response = client.responses.create(
            model=MODEL,
            input="Draw a small cat",
            tools=[{"type": "image_generation", "size": "256x256"}],
        )
        retrieved = client.responses.retrieve(response.id)
    assert response.status == "completed"
    call = response.output[0]
    assert call.type == "image_generation_call"
    assert call.status == "completed"
    assert call.result is not None
    assert png_size_b64(call.result) == (256, 256)
    assert response.output[1].type == "message"
    assert response.tool_usage is not None
    assert response.tool_usage.image_gen.output_tokens > 0
    assert retrieved.model_dump() == response.model_dump()


def test_resume_after_the_first_partial_image(stack: Stack) -> None:
    """Cut right after the first partial image (the stream paced 5 ms per token, so it is
    usually still drawing), then ``starting_after`` gives exactly the rest."""
    with _client(stack) as client:
        stream = client.responses.create(
            model=MODEL,
            input="Draw the sea",
            tools=[{**TOOL, "size": "256x256"}],  # type: ignore[list-item]
            stream=True,
            max_output_tokens=16,
            extra_headers=timing(0, 5),
        )
        head = []
        for event in stream:
            head.append(event)
            if event.type == IG + "partial_image":
                break
        stream.close()
        rid = head[0].response.id  # type: ignore[union-attr]
        cut = head[-1].sequence_number
        tail = list(client.responses.retrieve(rid, stream=True, starting_after=cut))
        whole = list(client.responses.retrieve(rid, stream=True))
    assert [e.sequence_number for e in tail] == list(range(cut + 1, cut + 1 + len(tail)))
    assert [e.model_dump() for e in head + tail] == [e.model_dump() for e in whole]
    partials = [e for e in tail if e.type == IG + "partial_image"]
    assert [p.partial_image_index for p in partials] == [1]  # type: ignore[union-attr]
    assert tail[-1].type == "response.incomplete"  # the text's max_output_tokens, not the image's


BAD_TOOL = {"type": "image_generation", "output_format": "jpeg"}


def test_an_option_the_server_does_not_serve_is_a_400(stack: Stack) -> None:
    with _client(stack) as client, pytest.raises(openai.BadRequestError) as e:
        client.responses.create(
            model=MODEL,
            input="Draw",
            tools=[BAD_TOOL],  # type: ignore[list-item]
            tool_choice="required",
        )
    body = e.value.body
    assert isinstance(body, dict)
    assert body["param"] == "tools.0.output_format"
    assert "png" in body["message"]
