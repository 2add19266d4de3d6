"""The service's exception tree and the OpenAI-shaped errors clients see.

::

    FakeAIError                      base of everything raised on purpose
    ├── ApiError                     carries an HTTP status and an OpenAI error body
    │   ├── BadRequest               400  invalid_request_error
    │   ├── Unauthorized             401  invalid_api_key
    │   ├── NotFound                 404  model_not_found / stream_not_found
    │   ├── StreamExpired            410  stream_expired
    │   ├── PayloadTooLarge          413  request_too_large
    │   ├── RateLimited              429  rate_limit_exceeded      (retryable)
    │   └── ServiceUnavailable       503  redis_unavailable        (retryable, Retry-After)
    └── StreamFailed                 a stream ended with an error entry (code, retryable)

Raw Redis errors are translated at the boundary (``raise ServiceUnavailable(...) from e``);
nothing else in the code catches ``redis.exceptions.ConnectionError``.
"""

from __future__ import annotations

from typing import Any, ClassVar

__all__ = [
    "ApiError",
    "BadRequest",
    "FakeAIError",
    "NotFound",
    "PayloadTooLarge",
    "RateLimited",
    "ServiceUnavailable",
    "StreamExpired",
    "StreamFailed",
    "Unauthorized",
    "error_body",
]


def error_body(
    message: str, type_: str, *, param: str | None = None, code: str | None = None
) -> dict[str, Any]:
    """``{"error": {"message", "type", "param", "code"}}``, as OpenAI sends it."""
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


class FakeAIError(Exception):
    """Base class of FakeAI Streams' own errors."""


class ApiError(FakeAIError):
    status: ClassVar[int] = 500
    type: ClassVar[str] = "server_error"
    default_code: ClassVar[str | None] = None
    retryable: ClassVar[bool] = False

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code if code is not None else self.default_code
        self.retry_after_s = retry_after_s

    def body(self) -> dict[str, Any]:
        return error_body(self.message, self.type, param=self.param, code=self.code)

    def headers(self) -> dict[str, str]:
        if self.retry_after_s is None:
            return {}
        return {"Retry-After": str(max(1, round(self.retry_after_s)))}


class BadRequest(ApiError):
    status = 400
    type = "invalid_request_error"


class Unauthorized(ApiError):
    status = 401
    type = "invalid_request_error"
    default_code = "invalid_api_key"


class NotFound(ApiError):
    status = 404
    type = "invalid_request_error"
    default_code = "not_found"


class StreamExpired(ApiError):
    status = 410
    type = "invalid_request_error"
    default_code = "stream_expired"


class PayloadTooLarge(ApiError):
    status = 413
    type = "invalid_request_error"
    default_code = "request_too_large"


class RateLimited(ApiError):
    status = 429
    type = "rate_limit_error"
    default_code = "rate_limit_exceeded"
    retryable = True


class ServiceUnavailable(ApiError):
    status = 503
    type = "server_error"
    default_code = "redis_unavailable"
    retryable = True


class StreamFailed(FakeAIError):
    """A stream's log ended with an error entry."""

    def __init__(self, stream_id: str, code: str, message: str, *, retryable: bool) -> None:
        super().__init__(f"stream {stream_id} failed ({code}): {message}")
        self.stream_id = stream_id
        self.code = code
        self.retryable = retryable
