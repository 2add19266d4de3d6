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

Exact per-request histograms, in the same hash (fields ``<name>|<le>`` and ``<name>|sum``;
:mod:`fakeai.timeseries.histograms`), one observation per finished stream (metrics consumer):

    req_prompt_tokens, req_generation_tokens, req_params_n, req_params_max_tokens (counts);
    req_queue_us      generation start - request accepted
    req_prefill_us    first token - generation start
    req_decode_us     last token - first token
    req_inference_us  last token - generation start
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
    "REQ_DECODE_US",
    "REQ_GENERATION_TOKENS",
    "REQ_INFERENCE_US",
    "REQ_PARAMS_MAX_TOKENS",
    "REQ_PARAMS_N",
    "REQ_PREFILL_US",
    "REQ_PROMPT_TOKENS",
    "REQ_QUEUE_US",
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

REQ_PROMPT_TOKENS: Final = "req_prompt_tokens"
REQ_GENERATION_TOKENS: Final = "req_generation_tokens"
REQ_PARAMS_N: Final = "req_params_n"
REQ_PARAMS_MAX_TOKENS: Final = "req_params_max_tokens"
REQ_QUEUE_US: Final = "req_queue_us"
REQ_PREFILL_US: Final = "req_prefill_us"
REQ_DECODE_US: Final = "req_decode_us"
REQ_INFERENCE_US: Final = "req_inference_us"

QUANTILES: Final = {"p50": 0.5, "p90": 0.9, "p95": 0.95, "p99": 0.99}
