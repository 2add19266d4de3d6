"""Checking the PNGs the image endpoints send, without an imaging library."""

from __future__ import annotations

import base64
import struct
import zlib

__all__ = ["png_size", "png_size_b64"]


def png_size(data: bytes) -> tuple[int, int]:
    """(width, height) of a PNG, after checking its signature, every chunk's CRC, that it ends
    with IEND, and that the image data inflates to exactly one filter byte plus 3 bytes per
    pixel per row (8-bit RGB)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, header, tag = 8, b"", b"", b""
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


def png_size_b64(b64: str) -> tuple[int, int]:
    """:func:`png_size` of a base64-encoded PNG, as the OpenAI events carry them."""
    return png_size(base64.b64decode(b64, validate=True))
