"""Image generation through the whole pipeline with the official SDK (single Redis and cluster):
partial images then the completed one, every one a PNG that decodes (header, chunk CRCs,
zlib data of the declared size), and the non-streaming answer."""

from __future__ import annotations

import base64
import struct
import zlib

import openai
import pytest
from tests.support.stack import Stack

pytestmark = [pytest.mark.redis, pytest.mark.e2e]


def _png_size(data: bytes) -> tuple[int, int]:
    """(width, height) of a PNG, after checking every chunk's CRC and that the image data
    inflates to exactly one filter byte plus 3 bytes per pixel per row (8-bit RGB)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, header = 8, b"", b""
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        tag, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])
        assert crc == zlib.crc32(tag + body), tag
        if tag == b"IHDR":
            header = body
        elif tag == b"IDAT":
            idat += body
        pos += 12 + length
    assert tag == b"IEND"
    width, height, depth, colour = struct.unpack(">IIBB", header[:10])
    assert (depth, colour) == (8, 2)
    assert len(zlib.decompress(idat)) == height * (1 + 3 * width)
    return width, height


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
        assert _png_size(base64.b64decode(e.b64_json)) == (1024, 1536)
    assert len({e.b64_json for e in events}) == 3  # each partial refines the picture
    assert events[-1].usage.output_tokens > 0


def test_non_streaming_images(stack: Stack) -> None:
    with _client(stack) as client:
        result = client.images.generate(model="gpt-image-1", prompt="a cat", n=2, size="256x256")
    assert result.data is not None
    assert len(result.data) == 2
    for image in result.data:
        assert image.b64_json is not None
        assert _png_size(base64.b64decode(image.b64_json)) == (256, 256)


def test_unsupported_output_format_is_a_400(stack: Stack) -> None:
    with _client(stack) as client, pytest.raises(openai.BadRequestError) as e:
        client.images.generate(model="gpt-image-1", prompt="x", output_format="jpeg")
    body = e.value.body
    assert isinstance(body, dict)
    assert body["param"] == "output_format"
    assert "png" in body["message"]
