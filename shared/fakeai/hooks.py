"""The calls StreamManager makes into its optional collaborators, as Protocols.

``fakeai.metrics.MetricsTracker``, ``fakeai.streaming_metrics.StreamingMetricsTracker``,
``fakeai.kv_cache.SmartRouter`` and ``fakeai.kv_cache.KVCacheMetrics`` implement these (and
more); any object with these methods can stand in. All are called from the event loop; the
implementations are also safe to call from several threads.
"""

from __future__ import annotations

from typing import Protocol

__all__ = ["CacheMetricsHook", "CacheRouterHook", "MetricsHook", "StreamingMetricsHook"]


class MetricsHook(Protocol):
    def track_request(self, endpoint: str) -> None: ...
    def track_response(self, endpoint: str, latency_s: float) -> None: ...
    def track_tokens(self, endpoint: str, count: int) -> None: ...
    def track_error(self, endpoint: str) -> None: ...
    def start_stream(self, stream_id: str, endpoint: str) -> None: ...
    def track_stream_first_token(self, stream_id: str) -> None: ...
    def track_stream_token(self, stream_id: str, count: int = 1) -> None: ...
    def complete_stream(self, stream_id: str, endpoint: str) -> None: ...
    def fail_stream(self, stream_id: str, endpoint: str, error_message: str) -> None: ...


class StreamingMetricsHook(Protocol):
    def start_stream(
        self,
        stream_id: str,
        model: str,
        prompt_tokens: int = 0,
        temperature: float | None = None,
        max_tokens: int | None = None,
    ) -> None: ...
    def record_token(self, stream_id: str, token: str, chunk_size_bytes: int = 0) -> None: ...
    def complete_stream(
        self, stream_id: str, finish_reason: str | None, client_cancelled: bool = False
    ) -> None: ...
    def fail_stream(self, stream_id: str, error_message: str) -> None: ...


class CacheRouterHook(Protocol):
    def route_request(
        self, tokens: list[int], estimated_output_tokens: int = 0
    ) -> tuple[str, int, int]:
        """(worker_id, matched_tokens, matched_blocks) for a prompt's token ids."""
        ...

    def start_request(self, worker_id: str) -> None: ...
    def complete_request(
        self, worker_id: str, tokens: list[int], output_tokens: int = 0
    ) -> None: ...


class CacheMetricsHook(Protocol):
    def record_cache_lookup(
        self, endpoint: str, total_tokens: int, matched_tokens: int
    ) -> None: ...
