"""The metric and counter names of the time series, on one screen.

Sample metrics (values in seconds, except ``tokens_per_s``):

    ttft          first chunk emitted - request accepted          (metrics consumer, producer time)
    itl           gap between consecutive chunk emits of a stream (metrics consumer)
    tpot          (last chunk - first chunk) / (tokens - 1)        (metrics consumer)
    e2e           terminal entry emitted - request accepted       (metrics consumer)
    tokens_per_s  completion tokens / (terminal - first chunk)    (metrics consumer)
    edge_ttft     request received -> first token byte written    (edge)
    pipeline_lag  producer append -> socket write                 (edge)

Counters (one hash per model, ``Keys.counters(model)``; label in parentheses):

    requests, output_tokens, prompt_tokens, cancels, errors (code), success (finish reason),
    client_disconnects (edge), invalid_events (metrics consumer)
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "CANCELS",
    "CLIENT_DISCONNECTS",
    "E2E",
    "EDGE_METRICS",
    "EDGE_TTFT",
    "ERRORS",
    "INVALID_EVENTS",
    "ITL",
    "OUTPUT_TOKENS",
    "PIPELINE_LAG",
    "PRODUCER_METRICS",
    "PROMPT_TOKENS",
    "QUANTILES",
    "REQUESTS",
    "SUCCESS",
    "TOKENS_PER_S",
    "TPOT",
    "TTFT",
]

TTFT: Final = "ttft"
ITL: Final = "itl"
TPOT: Final = "tpot"
E2E: Final = "e2e"
TOKENS_PER_S: Final = "tokens_per_s"
EDGE_TTFT: Final = "edge_ttft"
PIPELINE_LAG: Final = "pipeline_lag"

PRODUCER_METRICS: Final = (TTFT, ITL, TPOT, E2E, TOKENS_PER_S)
"""Emitted by the producer (the simulated model), folded by the metrics consumer."""
EDGE_METRICS: Final = (EDGE_TTFT, PIPELINE_LAG)
"""Delivered to clients, recorded by the edge."""

REQUESTS: Final = "requests"
OUTPUT_TOKENS: Final = "output_tokens"
PROMPT_TOKENS: Final = "prompt_tokens"
CANCELS: Final = "cancels"
ERRORS: Final = "errors"
SUCCESS: Final = "success"
CLIENT_DISCONNECTS: Final = "client_disconnects"
INVALID_EVENTS: Final = "invalid_events"

QUANTILES: Final = {"p50": 0.5, "p90": 0.9, "p95": 0.95, "p99": 0.99}
