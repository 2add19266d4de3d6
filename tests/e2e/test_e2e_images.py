"""Image generation through the whole pipeline with the official SDK (single Redis and cluster):
partial images then the completed one, every one a PNG that decodes (header, chunk CRCs,
zlib data of the declared size), and the non-streaming answer."""

from __future__ import annotations

import base64

import openai
import pytest
from tests.support.png import png_size
from tests.support.stack import Stack

pytestmark = [pytest.mark.redis, pytest.mark.e2e]


def _client(stack: Stack) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{stack.url}/v1", api_key="x", max_retries=0, timeout=30)


def test_stream_partial_images_then_completed(stack: Stack) -> None:
    with _client(stack) as client:
        events = list(
            client.images.generate(
                model="gpt-image-1",
                prompt="a lighthouse",
                size="1024x1536",
                stream=True,
                partial_images=2,
            )
        )
    assert [e.type for e in events] == [
        "image_generation.partial_image",
        "image_generation.partial_image",
        "image_generation.completed",
    ]
    assert [e.partial_image_index for e in events[:2]] == [0, 1]
    for e in events:
        assert png_size(base64.b64decode(e.b64_json)) == (1024, 1536)
    assert len({e.b64_json for e in events}) == 3  # each partial refines the picture
    assert events[-1].usage.output_tokens > 0


def test_non_streaming_images(stack: Stack) -> None:
    with _client(stack) as client:
        result = client.images.generate(model="gpt-image-1", prompt="a cat", n=2, size="256x256")
    assert result.data is not None
    assert len(result.data) == 2
    for image in result.data:
        assert image.b64_json is not None
        assert png_size(base64.b64decode(image.b64_json)) == (256, 256)


def test_unsupported_output_format_is_a_400(stack: Stack) -> None:
    with _client(stack) as client, pytest.raises(openai.BadRequestError) as e:
        client.images.generate(model="gpt-image-1", prompt="x", output_format="jpeg")
    body = e.value.body
    assert isinstance(body, dict)
    assert body["param"] == "output_format"
    assert "png" in body["message"]
