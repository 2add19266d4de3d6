"""The HTTP/1.1 response framing of the bench's client (:mod:`.http`), without sockets: the
status line and headers, the body's delimitation (RFC 9112 §6.3: ``Transfer-Encoding:
chunked``, else ``Content-Length``, else until the connection closes), the chunked coding fed
any split of the bytes, the ``Content-Encoding`` inflater, the request target; and the
transport's exceptions (:class:`HTTPError` and its subclasses, listed in :mod:`.http`).
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from typing import Any, NamedTuple
from urllib.parse import urlencode, urlsplit

__all__ = [
    "Chunked",
    "ConnectError",
    "ConnectTimeout",
    "Framing",
    "HTTPError",
    "Head",
    "Length",
    "PayloadError",
    "ProtocolError",
    "ReadTimeout",
    "UntilClose",
    "framing",
    "inflater",
    "parse_head",
    "target",
]

_MAX_LINE = 1024
_HEX = b"0123456789abcdefABCDEF"


class HTTPError(Exception):
    """Every failure of a request on this transport."""


class ConnectError(HTTPError):
    pass


class ConnectTimeout(HTTPError, TimeoutError):
    pass


class ReadTimeout(HTTPError, TimeoutError):
    pass


class ProtocolError(HTTPError):
    pass


class PayloadError(HTTPError):
    pass


class Head(NamedTuple):
    """A parsed status line and header block; header names lowercased, repeats joined with
    ", " (RFC 9110 §5.3)."""

    version: str
    status: int
    headers: dict[str, str]


def parse_head(block: bytes) -> Head:
    """The status line and headers of ``block`` (without the final empty line)."""
    lines = block.decode("latin-1").split("\r\n")
    version, _, rest = lines[0].partition(" ")
    code = rest[:3]
    if version not in ("HTTP/1.1", "HTTP/1.0") or len(code) != 3 or not code.isdigit():
        raise ProtocolError(f"bad status line {lines[0][:100]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            raise ProtocolError(f"bad header line {line[:100]!r}")
        key = name.lower()
        value = value.strip()
        headers[key] = f"{headers[key]}, {value}" if key in headers else value
    return Head(version, int(code), headers)


class Length:
    """A ``Content-Length`` body."""

    __slots__ = ("done", "extra", "left")

    def __init__(self, length: int) -> None:
        self.left = length
        self.done = length == 0
        self.extra = b""

    def feed(self, data: bytes) -> bytes:
        """The body bytes of ``data``; bytes past the body's end go to :attr:`extra`."""
        n = self.left
        if len(data) < n:
            self.left = n - len(data)
            return data
        self.left = 0
        self.done = True
        self.extra = data[n:]
        return data[:n]


class UntilClose:
    """A body that ends when the connection does."""

    __slots__ = ("done", "extra")

    def __init__(self) -> None:
        self.done = False
        self.extra = b""

    def feed(self, data: bytes) -> bytes:
        return data


class Chunked:
    """The chunked transfer coding (RFC 9112 §7.1), fed any split of the bytes; chunk
    extensions and trailer fields are skipped; :class:`PayloadError` on broken framing."""

    __slots__ = ("_buf", "_left", "_trailer", "done", "extra")

    def __init__(self) -> None:
        self._buf = b""
        self._left = -1
        """Data bytes of the current chunk still to come; 0: its CRLF; -1: a size line."""
        self._trailer = False
        self.done = False
        self.extra = b""

    def feed(self, data: bytes) -> bytes:
        """The body bytes of ``data``; bytes past the body's end go to :attr:`extra`."""
        if self._buf:
            data = self._buf + data
            self._buf = b""
        elif self._left < 0 and not self._trailer:
            # The common read: exactly one whole chunk (an SSE edge writes one per event).
            nl = data.find(b"\r\n", 0, 17)
            if nl > 0:
                line = data[:nl]
                if not line.translate(None, _HEX):
                    end = nl + 2 + int(line, 16)
                    if end + 2 == len(data) and end > nl + 2 and data[end:] == b"\r\n":
                        return data[nl + 2 : end]
        out: list[bytes] = []
        pos, n = 0, len(data)
        while pos < n:
            left = self._left
            if left < 0:  # a size line (or, after the last chunk, a trailer line)
                nl = data.find(b"\r\n", pos)
                if nl < 0:
                    if n - pos > _MAX_LINE:
                        raise PayloadError("chunk-size line too long")
                    self._buf = data[pos:]
                    break
                line = data[pos:nl]
                pos = nl + 2
                if self._trailer:
                    if not line:
                        self.done = True
                        self.extra = data[pos:]
                        break
                    continue
                size = _chunk_size(line)
                if not size:
                    self._trailer = True
                    continue
                end = pos + size
                if end + 2 <= n:  # the whole chunk and its CRLF: the usual case
                    if data[end : end + 2] != b"\r\n":
                        raise PayloadError("chunk data not followed by CRLF")
                    out.append(data[pos:end])
                    pos = end + 2
                else:
                    self._left = size
            elif left > 0:
                end = pos + left
                if end > n:
                    out.append(data[pos:] if pos else data)
                    self._left = end - n
                    break
                out.append(data[pos:end])
                pos = end
                self._left = 0
            else:  # the CRLF after chunk data
                if n - pos < 2:
                    self._buf = data[pos:]
                    break
                if data[pos : pos + 2] != b"\r\n":
                    raise PayloadError("chunk data not followed by CRLF")
                pos += 2
                self._left = -1
        return out[0] if len(out) == 1 else b"".join(out)


def _chunk_size(line: bytes) -> int:
    """The size on a chunk-size line (hex digits, then any ``;`` extensions)."""
    if line.translate(None, _HEX) or len(line) > 15:  # extensions, or not a size at all
        size = line.partition(b";")[0].rstrip(b" \t")
        if not size or len(size) > 15 or size.translate(None, _HEX):
            raise PayloadError(f"bad chunk-size line {line[:40]!r}")
        return int(size, 16)
    if not line:
        raise PayloadError("empty chunk-size line")
    return int(line, 16)


Framing = Length | UntilClose | Chunked


def framing(head: Head, method: str) -> Framing | None:
    """How the body of this response is delimited; None when it has none (RFC 9112 §6.3)."""
    status, headers = head.status, head.headers
    if method == "HEAD" or status in (204, 304) or status < 200:
        return None
    te = headers.get("transfer-encoding")
    if te is not None:
        return Chunked() if te.rsplit(",", 1)[-1].strip().lower() == "chunked" else UntilClose()
    length = headers.get("content-length")
    if length is None:
        return UntilClose()
    if not length.isdigit():
        raise ProtocolError(f"bad Content-Length {length!r}")
    return Length(int(length))


def inflater(head: Head) -> Any:
    """A ``zlib`` decompressor for the response's ``Content-Encoding``; None for identity."""
    coding = head.headers.get("content-encoding", "identity").strip().lower()
    if coding in ("identity", ""):
        return None
    if coding in ("gzip", "x-gzip"):
        return zlib.decompressobj(16 + zlib.MAX_WBITS)
    if coding == "deflate":
        return zlib.decompressobj()
    raise ProtocolError(f"unsupported Content-Encoding {coding!r}")


def target(url: str, params: Mapping[str, str] | None = None) -> str:
    """The request target (path and query) of ``url``, with ``params`` added to its query."""
    parts = urlsplit(url)
    query = "&".join(q for q in (parts.query, urlencode(params or {})) if q)
    return (parts.path or "/") + (f"?{query}" if query else "")
