"""Exact histograms of per-request figures, kept as counters: vLLM's request histograms.

vLLM exposes one observation per finished request of its prompt and generation tokens, its
``n`` and ``max_tokens`` parameters, and the time it spent queued, in prefill, in decode and
in inference (``vllm/v1/metrics/loggers.py``, ``PrometheusStatLogger``). Here each observation
increments two fields of its model's counters hash (``Keys.counters(model)``, written in the
same MULTI/EXEC as the stream's other counts, so exactly once per stream):

    <metric>|<le>    the count of the smallest bound >= the value (``+Inf`` beyond the last)
    <metric>|sum     the sum of the values

Values are integers in a fixed unit (tokens, or microseconds for times: every timestamp of
the firehose is an integer of microseconds), so bucket counts and sums are exact, unlike the
log-bin sketches of the latency series, whose buckets are within one bin (≈4 %). The label is
the bound's value, not its index, so a changed bound list still reads the old counts: a count
stays at or below its own bound.

Bounds are vLLM's: ``request_latency_buckets`` for times; ``[1, 2, 5, 10, 20]`` for ``n``;
``build_1_2_5_buckets(max_model_len)`` for token counts, here with
:data:`MAX_MODEL_LEN` (a server of fake models has no model length of its own).
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from fakeai.timeseries import names as n
from fakeai.timeseries.store import Fold

__all__ = [
    "E2E_BUCKETS",
    "EXACT_HISTOGRAMS",
    "MAX_MODEL_LEN",
    "N_BUCKETS",
    "SUM_LABEL",
    "TOKEN_BUCKETS",
    "ExactHistogram",
    "observe",
    "one_two_five",
]

SUM_LABEL: Final = "sum"
_INF_LABEL: Final = "+Inf"

MAX_MODEL_LEN: Final = 131_072
"""The model length the token-count bounds are built for (a 128k-context model's)."""

E2E_BUCKETS: Final = (0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0,
                      50.0, 60.0, 120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0)  # fmt: skip
"""vLLM's ``request_latency_buckets``: end-to-end, queue, prefill, decode and inference time."""
N_BUCKETS: Final = (1.0, 2.0, 5.0, 10.0, 20.0)


def one_two_five(max_value: int) -> tuple[float, ...]:
    """1, 2, 5, 10, 20, 50, ... up to ``max_value`` (vLLM's ``build_1_2_5_buckets``)."""
    out: list[float] = []
    scale = 1
    while True:
        for m in (1, 2, 5):
            if m * scale > max_value:
                return tuple(out)
            out.append(float(m * scale))
        scale *= 10


TOKEN_BUCKETS: Final = one_two_five(MAX_MODEL_LEN)


def _label(bound: float) -> str:
    return repr(float(bound))


@dataclass(frozen=True, slots=True)
class ExactHistogram:
    """One exact histogram: its counter name, its Prometheus family and bounds, and the integer
    units stored per exposed unit (1,000,000 for seconds kept in microseconds, 1 for counts)."""

    metric: str
    family: str
    bounds: tuple[float, ...]
    per_unit: int
    doc: str
    _units: tuple[int, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_units", tuple(round(b * self.per_unit) for b in self.bounds))

    def observe(self, fold: Fold, model: str, units: int) -> None:
        """One value (in stored units: tokens, microseconds); negative values are dropped."""
        if units < 0:
            return
        i = bisect.bisect_left(self._units, units)  # first bound >= units
        label = _label(self.bounds[i]) if i < len(self.bounds) else _INF_LABEL
        fold.incr(self.metric, model, 1, label=label)
        if units:
            fold.incr(self.metric, model, units, label=SUM_LABEL)

    def read(self, fields: Mapping[str, int]) -> tuple[list[int], int, float]:
        """``(cumulative count per bound, count, sum in exposed units)`` from one model's
        ``{label: value}`` of this metric; unreadable labels are skipped."""
        per_le: list[tuple[float, int]] = []
        total = 0
        for label, v in fields.items():
            if label == SUM_LABEL:
                continue
            try:
                le = math.inf if label == _INF_LABEL else float(label)
            except ValueError:
                continue
            if v > 0:
                per_le.append((le, v))
                total += v
        cumulative = [sum(v for le, v in per_le if le <= b) for b in self.bounds]
        return cumulative, total, fields.get(SUM_LABEL, 0) / self.per_unit


_US: Final = 1_000_000

EXACT_HISTOGRAMS: Final = (
    ExactHistogram(n.REQ_PROMPT_TOKENS, "vllm:request_prompt_tokens", TOKEN_BUCKETS, 1,
                   "Number of prefill tokens processed."),
    ExactHistogram(n.REQ_GENERATION_TOKENS, "vllm:request_generation_tokens", TOKEN_BUCKETS, 1,
                   "Number of generation tokens processed."),
    ExactHistogram(n.REQ_PARAMS_N, "vllm:request_params_n", N_BUCKETS, 1,
                   "Histogram of the n request parameter."),
    ExactHistogram(n.REQ_PARAMS_MAX_TOKENS, "vllm:request_params_max_tokens", TOKEN_BUCKETS, 1,
                   "Histogram of the max_tokens request parameter."),
    ExactHistogram(n.REQ_QUEUE_US, "vllm:request_queue_time_seconds", E2E_BUCKETS, _US,
                   "Histogram of time spent in WAITING phase for request."),
    ExactHistogram(n.REQ_PREFILL_US, "vllm:request_prefill_time_seconds", E2E_BUCKETS, _US,
                   "Histogram of time spent in PREFILL phase for request."),
    ExactHistogram(n.REQ_DECODE_US, "vllm:request_decode_time_seconds", E2E_BUCKETS, _US,
                   "Histogram of time spent in DECODE phase for request."),
    ExactHistogram(n.REQ_INFERENCE_US, "vllm:request_inference_time_seconds", E2E_BUCKETS, _US,
                   "Histogram of time spent in RUNNING phase for request."),
)  # fmt: skip
"""Every exact histogram, in exposition order."""

_BY_METRIC: Final = {h.metric: h for h in EXACT_HISTOGRAMS}


def observe(fold: Fold, metric: str, model: str, units: int) -> None:
    """One value of the exact histogram named ``metric`` (a ``REQ_*`` name of
    :mod:`fakeai.timeseries.names`), in its stored units."""
    _BY_METRIC[metric].observe(fold, model, units)
