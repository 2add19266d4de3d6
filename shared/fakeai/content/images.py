"""Deterministic fake image generation (``POST /v1/images/generations``): PNGs and their stream.

An image is a mosaic of colour blocks whose colours follow seeded gradients: a valid PNG
(RGB, 8 bits; written here with ``zlib`` and ``struct``, :func:`png_bytes`) that any viewer
opens. A partial image is the same picture at a coarser block size, so a stream refines one
picture: ``partial_images: N`` (0-3) gives N partials, each at half the block size of the one
before, then the final image at :data:`FINAL_BLOCK` pixels.

Events, as OpenAI streams them (``stream: true``), for each of the ``n`` images::

    {"type": "image_generation.partial_image", "b64_json", "created_at", "size", "quality",
     "background", "output_format", "partial_image_index"}                 x partial_images
    {"type": "image_generation.completed", "b64_json", "created_at", "size", "quality",
     "background", "output_format", "usage"}

Each event stands for :data:`STEP_TOKENS` output tokens, so the model's ITL paces the
refinement. ``response`` is the non-streaming answer (``created``, ``data: [{"b64_json"}]``,
``usage``, and the request's ``size``, ``quality``, ``background``, ``output_format``).
The Responses API's image tool (:mod:`.image_tool`) draws its pictures with the same
:func:`refinements`.
"""

from __future__ import annotations

import base64
import random
import struct
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fakeai.content.built import BuiltResponse
from fakeai.content.responses import InvalidRequestValue
from fakeai.content.tokenizer import count_tokens

__all__ = [
    "FINAL_BLOCK",
    "MAX_IMAGES",
    "MAX_PARTIAL_IMAGES",
    "OUTPUT_FORMATS",
    "SIZES",
    "STEP_TOKENS",
    "ImageOptions",
    "build_images",
    "image_options",
    "png_bytes",
    "refinements",
]

SIZES = ("1024x1024", "1536x1024", "1024x1536", "512x512", "256x256")
"""Sizes served; ``auto`` is the first."""
OUTPUT_FORMATS = ("png",)
QUALITIES = ("auto", "low", "medium", "high", "standard", "hd")
MAX_PARTIAL_IMAGES = 3
MAX_IMAGES = 4
STEP_TOKENS = 16
FINAL_BLOCK = 16
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _chunk(tag: bytes, data: bytes) -> bytes:
    """One PNG chunk: length, type, data, CRC-32 of type and data (PNG spec section 5.3)."""
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))


def png_bytes(width: int, height: int, scanlines: bytes) -> bytes:
    """A PNG of 8-bit RGB ``scanlines`` (each row: filter byte 0, then ``3 * width`` bytes)."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        _PNG_SIGNATURE
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", zlib.compress(scanlines, 6))
        + _chunk(b"IEND", b"")
    )


class _Picture:
    """The seeded colour field one image samples at every block size."""

    def __init__(self, rng: random.Random) -> None:
        self.base = [rng.randrange(256) for _ in range(3)]
        self.dx = [rng.uniform(-200, 200) for _ in range(3)]
        self.dy = [rng.uniform(-200, 200) for _ in range(3)]

    def colour(self, u: float, v: float) -> bytes:
        return bytes(
            int(b + dx * u + dy * v) % 256
            for b, dx, dy in zip(self.base, self.dx, self.dy, strict=True)
        )

    def png(self, width: int, height: int, block: int) -> bytes:
        rows: list[bytes] = []
        for top in range(0, height, block):
            v = (top + block / 2) / height
            row = b"\x00" + b"".join(
                self.colour((left + block / 2) / width, v) * min(block, width - left)
                for left in range(0, width, block)
            )
            rows.append(row * min(block, height - top))
        return png_bytes(width, height, b"".join(rows))


def refinements(key: str, size: str, partials: int) -> list[str]:
    """One seeded picture (``key`` seeds its colours) as base64 PNGs of ``size``: ``partials``
    partial images, coarse to fine (each at half the block size of the one before), then the
    final image at :data:`FINAL_BLOCK` pixels."""
    width, height = (int(x) for x in size.split("x"))
    picture = _Picture(random.Random(key))
    blocks = [FINAL_BLOCK << (partials - k) for k in range(partials)] + [FINAL_BLOCK]
    return [base64.b64encode(picture.png(width, height, b)).decode("ascii") for b in blocks]


def _option(body: Mapping[str, Any], name: str, allowed: tuple[str, ...], default: str) -> str:
    value = body.get(name)
    if value is None or (value == "auto" and name != "quality"):
        return default
    if value not in allowed:
        raise InvalidRequestValue(
            name,
            f"{name} {value!r} is not supported by this server; supported: {', '.join(allowed)}",
        )
    return str(value)


def _count(body: Mapping[str, Any], name: str, low: int, high: int, default: int) -> int:
    value = body.get(name, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidRequestValue(name, f"{name} must be an integer from {low} to {high}")
    return value


@dataclass(frozen=True, slots=True)
class ImageOptions:
    size: str
    output_format: str
    quality: str
    background: str
    n: int
    partials: int
    """Partial images per image (0 unless the request streams)."""


def image_options(body: Mapping[str, Any]) -> ImageOptions:
    """The request's options, checked: an :class:`InvalidRequestValue` naming the first
    value this server does not serve."""
    partials = _count(body, "partial_images", 0, MAX_PARTIAL_IMAGES, 0)
    return ImageOptions(
        size=_option(body, "size", SIZES, SIZES[0]),
        output_format=_option(body, "output_format", OUTPUT_FORMATS, "png"),
        quality=_option(body, "quality", QUALITIES, "auto"),
        background=str(body.get("background") or "auto"),
        n=_count(body, "n", 1, MAX_IMAGES, 1),
        partials=partials if body.get("stream") else 0,
    )


def build_images(
    body: Mapping[str, Any], *, image_id: str, created: int, seed: int | None
) -> BuiltResponse:
    """The images ``body`` asks for, as events (module docstring)."""
    prompt = body.get("prompt")
    if not isinstance(prompt, str) or not prompt:
        raise InvalidRequestValue("prompt", "prompt must be a non-empty string")
    opts = image_options(body)
    n, partials, size = opts.n, opts.partials, opts.size
    common = {
        "size": size,
        "quality": opts.quality,
        "background": opts.background,
        "output_format": opts.output_format,
    }
    input_tokens = count_tokens(prompt)
    per_image = STEP_TOKENS * (partials + 1)
    usage = {
        "input_tokens": input_tokens,
        "input_tokens_details": {"text_tokens": input_tokens, "image_tokens": 0},
        "output_tokens": per_image * n,
        "total_tokens": input_tokens + per_image * n,
    }
    events: list[dict[str, Any]] = []
    data: list[dict[str, Any]] = []
    key = seed if seed is not None else image_id
    for index in range(n):
        *coarse, b64 = refinements(f"{key}:{index}", size, partials)
        for k, partial in enumerate(coarse):
            events.append(
                {
                    "type": "image_generation.partial_image",
                    "b64_json": partial,
                    "created_at": created,
                    **common,
                    "partial_image_index": k,
                }
            )
        data.append({"b64_json": b64})
        events.append(
            {
                "type": "image_generation.completed",
                "b64_json": b64,
                "created_at": created,
                **common,
                "usage": usage,
            }
        )
    response = {"created": created, "data": data, "usage": usage, **common}
    return BuiltResponse(response=response, events=events, tokens=[STEP_TOKENS] * len(events))
