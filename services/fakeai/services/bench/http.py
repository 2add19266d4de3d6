"""A lean HTTP/1.1 client for the bench's streaming requests: one keep-alive connection per
worker, body bytes handed from ``data_received`` straight to the caller's sink.

The framing (status line, headers, body delimitation, chunked coding, inflater) lives in
:mod:`.http_framing`; this module is the connection.

Why not aiohttp: per read, aiohttp's ``StreamReader``, ``iter_any``, chunked-transfer parser and
a coroutine resume cost more client CPU than the SSE parsing they feed (figures: the runner's
module docstring). Here one :class:`asyncio.Protocol` parses the status line, the headers and
the body framing (RFC 9112 §6.3: ``Transfer-Encoding: chunked``, else ``Content-Length``, else
until the connection closes), inflates a ``gzip`` or ``deflate`` ``Content-Encoding`` with
:func:`zlib.decompressobj`, and calls ``sink(body_bytes, now)`` synchronously, with ONE
:func:`time.perf_counter` per read.

Contract of :class:`Client` (one request at a time):

- :meth:`Client.request` sends a request and returns the :class:`Response` head. Body bytes that
  came with the head are kept, with the time they arrived, for :meth:`Response.stream` or
  :meth:`Response.read`.
- ``stream(sink)`` returns the first value other than None that the sink returns (the rest of
  the body is then read and discarded, so that the connection can serve the next request), or
  None when the body ended. :meth:`Response.drop` closes the connection instead.
- A connection is reused when its last response ended and allowed it (HTTP/1.1 without
  ``Connection: close``, a framed body). The next request waits up to :data:`_DRAIN_S` for a
  discarded body to end, then opens a new connection. A reused connection that closes before
  any byte of the answer (an idle keep-alive timeout racing the request) is retried once on a
  new connection, as urllib3 does.
- Timeouts: the connect, and the read: no byte for ``read_timeout_s`` while a response is
  outstanding (aiohttp's ``sock_read``).

Exceptions::

    HTTPError
     +-- ConnectError     the TCP (or TLS) connect failed: refused, unreachable, DNS
     +-- ConnectTimeout   (also a TimeoutError) the connect took longer than connect_timeout_s
     +-- ReadTimeout      (also a TimeoutError) no byte for read_timeout_s mid-response
     +-- ProtocolError    a malformed status line or header, an unsupported Content-Encoding
     +-- PayloadError     the connection closed, or the body's framing broke, before its end
"""

from __future__ import annotations

import asyncio
import ssl
import time
import zlib
from collections.abc import Callable, Mapping
from typing import Any, TypeVar, cast
from urllib.parse import urlsplit

from fakeai.services.bench.http_framing import (
    Chunked,
    ConnectError,
    ConnectTimeout,
    Framing,
    Head,
    HTTPError,
    PayloadError,
    ProtocolError,
    ReadTimeout,
    UntilClose,
    framing,
    inflater,
    parse_head,
    target,
)

__all__ = [
    "Chunked",
    "Client",
    "ConnectError",
    "ConnectTimeout",
    "HTTPError",
    "Head",
    "PayloadError",
    "ProtocolError",
    "ReadTimeout",
    "Response",
    "parse_head",
    "target",
]

T = TypeVar("T")
Sink = Callable[[bytes, float], T | None]
"""``sink(body_bytes, now)``: a value other than None stops the reading and is returned."""

_DRAIN_S = 1.0
"""How long the next request waits for the rest of a discarded body (normally only the
terminating zero-size chunk, already on its way) before it gives up the connection."""
_MAX_HEAD = 65536
_IDLE, _HEAD, _BODY, _CLOSED = range(4)


class _Wire(asyncio.Protocol):
    """One TCP connection: at most one response in flight, parsed as its bytes arrive."""

    def __init__(self, loop: asyncio.AbstractEventLoop, read_timeout_s: float) -> None:
        self._loop = loop
        self._read_timeout = read_timeout_s
        self._transport: asyncio.Transport | None = None
        self.phase = _IDLE
        self.keep_alive = False
        self.requests = 0
        self.received = False
        """A byte of the current response has arrived."""
        self.ended = False
        """The current response's body is complete."""
        self.head_at = 0.0
        """The :func:`time.perf_counter` of the read that completed the current head."""
        self._method = "GET"
        self._head = b""
        self._framing: Framing | None = None
        self._inflate: Any = None
        self._sink: Callable[[bytes, float], Any] | None = None
        self._pending: list[tuple[bytes, float]] = []
        self._discard = False
        self._waiter: asyncio.Future[Any] | None = None
        self._idle: asyncio.Future[None] | None = None
        self.exc: Exception | None = None
        self._last_read = 0.0
        self._timer: asyncio.TimerHandle | None = None

    # -- asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        now = time.perf_counter()
        self._last_read = now
        try:
            if self.phase == _BODY:
                self._body(data, now)
            elif self.phase == _HEAD:
                self.received = True
                self._head_bytes(data, now)
            else:
                raise ProtocolError(f"{len(data)} bytes received with no request in flight")
        except Exception as e:  # a broken response, or the sink's own failure: the caller's
            self._fail(e)

    def connection_lost(self, exc: Exception | None) -> None:
        phase, self.phase = self.phase, _CLOSED
        self._stop_timer()
        if phase == _BODY and isinstance(self._framing, UntilClose) and exc is None:
            self._end()
        elif phase in (_HEAD, _BODY) and not self._discard:
            where = "mid-body" if phase == _BODY else "before the response's head"
            self._fail(PayloadError(f"the server closed the connection {where} ({exc or 'EOF'})"))
        self._wake_idle()

    # -- parsing

    def _head_bytes(self, data: bytes, now: float) -> None:
        buf = self._head + data
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            if len(buf) > _MAX_HEAD:
                raise ProtocolError(f"response head longer than {_MAX_HEAD} bytes")
            self._head = buf
            return
        self._head = b""
        head = parse_head(buf[:end])
        rest = buf[end + 4 :]
        if 100 <= head.status < 200:  # an interim response: the final one follows
            if rest:
                self._head_bytes(rest, now)
            return
        body = framing(head, self._method)
        self._inflate = inflater(head)
        conn = head.headers.get("connection", "").lower()
        self.keep_alive = (
            "close" not in conn
            and (head.version == "HTTP/1.1" or "keep-alive" in conn)
            and not isinstance(body, UntilClose)
        )
        self._framing = body
        self.head_at = now
        self._resolve(head)
        if body is None or body.done:
            self._end()
            if rest:
                raise ProtocolError(f"{len(rest)} bytes after the response")
            return
        self.phase = _BODY
        if rest:
            self._body(rest, now)

    def _body(self, data: bytes, now: float) -> None:
        body_framing = self._framing
        assert body_framing is not None
        payload = body_framing.feed(data)
        if self._inflate is not None and payload:
            try:
                payload = self._inflate.decompress(payload)
            except zlib.error as e:
                raise PayloadError(f"the compressed body does not inflate: {e}") from e
        if payload and not self._discard:
            sink = self._sink
            if sink is None:
                self._pending.append((payload, now))
            else:
                stop = sink(payload, now)
                if stop is not None:
                    self._sink = None
                    self._discard = True
                    self._resolve(stop)
        if body_framing.done:
            self._end()
            if body_framing.extra:
                raise ProtocolError(f"{len(body_framing.extra)} bytes after the response")

    def _end(self) -> None:
        self.ended = True
        self.phase = _IDLE
        self._sink = None
        self._resolve(None)
        if not self.keep_alive:
            self.close()
        self._wake_idle()

    # -- the caller's side

    def send(self, method: str, raw: bytes) -> asyncio.Future[Any]:
        """Write one request; the future gets its :class:`Head`."""
        assert self._transport is not None
        assert self.phase == _IDLE
        self.requests += 1
        self.phase = _HEAD
        self._method = method
        self.received = False
        self.ended = self._discard = False
        self.exc = None
        self._pending.clear()
        self._last_read = time.perf_counter()
        if self._timer is None:
            self._timer = self._loop.call_later(self._read_timeout, self._check_read)
        self._waiter = self._loop.create_future()
        self._transport.write(raw)
        return self._waiter

    def listen(self, sink: Callable[[bytes, float], Any]) -> asyncio.Future[Any] | Any:
        """Feed the body to ``sink``: the pending bytes now, what follows as it arrives. The
        sink's stop value, or a future of it (None: the body ended)."""
        pending, self._pending = self._pending, []
        for data, now in pending:
            stop = sink(data, now)
            if stop is not None:
                self._discard = True
                return stop
        if self.exc is not None:
            raise self.exc
        if self.ended:
            return None
        self._sink = sink
        self._waiter = self._loop.create_future()
        return self._waiter

    def release(self) -> None:
        """Nobody reads the rest of this response: discard it as it arrives."""
        self._discard = True
        self._sink = None
        self._pending.clear()

    async def wait_idle(self, timeout_s: float) -> bool:
        """True once the connection can carry a new request."""
        if self.phase in (_HEAD, _BODY):
            self._idle = self._loop.create_future()
            try:
                async with asyncio.timeout(timeout_s):
                    await self._idle
            except TimeoutError:
                return False
            finally:
                self._idle = None
        return self.phase == _IDLE and self.keep_alive and self.exc is None

    def close(self) -> None:
        self._stop_timer()
        if self._transport is not None:
            self._transport.close()

    # -- internals

    def _resolve(self, value: Any) -> None:
        w, self._waiter = self._waiter, None
        if w is not None and not w.done():
            w.set_result(value)

    def _fail(self, exc: Exception) -> None:
        if self.exc is None:
            self.exc = exc
        w, self._waiter = self._waiter, None
        if w is not None and not w.done():
            w.set_exception(exc)
        self.keep_alive = False
        self._stop_timer()
        if self._transport is not None:
            self._transport.abort()

    def _wake_idle(self) -> None:
        if self._idle is not None and not self._idle.done():
            self._idle.set_result(None)

    def _check_read(self) -> None:
        """The read timeout, checked lazily: one timer per connection, not one per request
        (a uvloop timer costs about as much as parsing a response head), armed by the first
        request after an idle spell and re-armed to the last read's deadline when it fires."""
        self._timer = None
        if self.phase not in (_HEAD, _BODY):
            return
        quiet = time.perf_counter() - self._last_read
        if quiet >= self._read_timeout:
            self._fail(ReadTimeout(f"no byte received for {self._read_timeout:g}s"))
        else:
            self._timer = self._loop.call_later(self._read_timeout - quiet, self._check_read)

    def _stop_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


class Response:
    """A response whose head has arrived; read its body once, with :meth:`stream` or
    :meth:`read`, or :meth:`drop` the connection."""

    __slots__ = ("_wire", "at", "headers", "status")

    def __init__(self, wire: _Wire, head: Head) -> None:
        self._wire = wire
        self.status = head.status
        self.headers = head.headers
        """Lowercased names."""
        self.at = wire.head_at
        """The :func:`time.perf_counter` of the read that completed the head."""

    async def stream(self, sink: Sink[T]) -> T | None:
        """Feed the body to ``sink(data, now)``, ``now`` being the :func:`time.perf_counter`
        of the read that brought ``data``; return the sink's first value other than None, or
        None when the body ended."""
        got = self._wire.listen(sink)
        if isinstance(got, asyncio.Future):
            try:
                return await got  # type: ignore[no-any-return]
            except asyncio.CancelledError:
                self._wire.close()  # abandoned mid-body: the connection's state is unknown
                raise
        return got  # type: ignore[no-any-return]

    async def read(self, limit: int = 1 << 20) -> bytes:
        """The body (its first ``limit`` bytes; the rest is read and dropped)."""
        parts: list[bytes] = []
        size = 0

        def keep(data: bytes, now: float) -> None:
            nonlocal size
            if size < limit:
                parts.append(data)
                size += len(data)

        await self.stream(keep)
        return b"".join(parts)[:limit]

    def drop(self) -> None:
        """Close the connection now, whatever is left of the response."""
        self._wire.release()
        self._wire.close()


class Client:
    """Requests to one origin (``base_url``'s scheme, host and port) over one keep-alive
    connection, opened on demand and replaced when closed; one request at a time."""

    def __init__(self, base_url: str, *, connect_timeout_s: float, read_timeout_s: float) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"expected an http:// or https:// URL, got {base_url!r}")
        self._host = parts.hostname
        default = 443 if parts.scheme == "https" else 80
        self._port = parts.port or default
        self._ssl = ssl.create_default_context() if parts.scheme == "https" else None
        name = f"[{self._host}]" if ":" in self._host else self._host
        self._host_header = name if self._port == default else f"{name}:{self._port}"
        self._connect_timeout = connect_timeout_s
        self._read_timeout = read_timeout_s
        self._wire: _Wire | None = None
        self.connects = 0
        """Connections opened so far."""

    async def request(
        self,
        method: str,
        path: str,
        headers: Mapping[str, str],
        body: bytes | None = None,
    ) -> Response:
        """Send ``method path`` (a request target, see :func:`target`) and return the head."""
        raw = self._encode(method, path, headers, body)
        for _ in range(2):
            wire = await self._ready()
            reused = wire.requests > 0
            try:
                head = await wire.send(method, raw)
            except PayloadError:
                if reused and not wire.received:
                    continue  # closed by the server before our request reached it
                raise
            except asyncio.CancelledError:
                wire.close()
                raise
            return Response(wire, head)
        raise PayloadError("the server closed a new connection before answering")

    def close(self) -> None:
        if self._wire is not None:
            self._wire.release()
            self._wire.close()
            self._wire = None

    async def _ready(self) -> _Wire:
        wire = self._wire
        if wire is not None:
            wire.release()
            if await wire.wait_idle(_DRAIN_S):
                return wire
            wire.close()
        self._wire = None
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self._connect_timeout):
                _, proto = await loop.create_connection(
                    lambda: _Wire(loop, self._read_timeout),
                    self._host,
                    self._port,
                    ssl=self._ssl,
                    server_hostname=self._host if self._ssl is not None else None,
                )
        except TimeoutError:
            raise ConnectTimeout(
                f"connect to {self._host}:{self._port} took more than {self._connect_timeout:g}s"
            ) from None
        except OSError as e:
            raise ConnectError(f"cannot connect to {self._host}:{self._port}: {e}") from e
        self.connects += 1
        self._wire = proto
        return proto

    def _encode(
        self, method: str, path: str, headers: Mapping[str, str], body: bytes | None
    ) -> bytes:
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self._host_header}"]
        given = {k.lower() for k in headers}
        for name, value in headers.items():
            if "\r" in value or "\n" in value or "\r" in name or "\n" in name:
                raise ValueError(f"header {name!r}: CR or LF in a header")
            lines.append(f"{name}: {value}")
        if "user-agent" not in given:
            lines.append("User-Agent: fakeai-streams-bench")
        if body is not None:
            lines.append(f"Content-Length: {len(body)}")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode()
        return head + body if body else head
