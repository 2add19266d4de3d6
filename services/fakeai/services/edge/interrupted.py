"""Why the edge stopped serving a stream before its end (the stream goes on in Redis).

Log entries, their parser and their readers are :mod:`fakeai.streams.log`'s; this is the one
thing about a stream's log that only the edge has: its own reasons to cut a client short.
"""

from __future__ import annotations

from fakeai.wire import ErrorBody

__all__ = ["RESUME_HINT", "StreamInterrupted"]

RESUME_HINT = "reconnect with Last-Event-ID to resume"


class StreamInterrupted(Exception):
    """The edge stopped serving a stream before its end; the client should resume.

    The stream itself goes on in Redis: ``code`` says why this connection ended
    (``slow_consumer``, ``redis_unavailable``, ``edge_shutdown``) and the message tells the
    client to reconnect with ``Last-Event-ID``.
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def body(self) -> ErrorBody:
        return ErrorBody(message=self.message, type="server_error", code=self.code)
