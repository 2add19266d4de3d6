"""A mergeable log-bin sketch of non-negative samples (pure, no I/O).

Bins follow DDSketch's logarithmic mapping (Masson, Rim, Lee, "DDSketch: a fast and fully-mergeable
quantile sketch with relative-error guarantees", VLDB 2019, section 2): a value v > 0 falls in bin
``i = ceil(ln v / ln γ)``, which covers ``(γ^(i-1), γ^i]``; the bin's representative value
``2γ^i / (γ + 1)`` is within ``(γ - 1) / (γ + 1)`` (≈1.96 % for γ = 1.04) of every value in it.
Zero (and any negative value, which only clock skew can produce) goes to a separate zero bin.

Two sketches merge by adding counts, so per-bucket and per-model sketches combine exactly:
that is what lets Redis hold one hash per bucket and a query sum any set of them.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

__all__ = ["GAMMA", "ZERO_BIN", "LogSketch", "bin_index", "bin_upper", "bin_value"]

GAMMA = 1.04
_LN_GAMMA = math.log(GAMMA)
ZERO_BIN: int | None = None
"""Key of the zero bin in :attr:`LogSketch.bins` (``None``; Redis field ``z``)."""

_MIN_POSITIVE = 1e-9
"""Values below a nanosecond fold into the smallest bin, bounding the bin range."""

_log = math.log
_ceil = math.ceil


def bin_index(value: float) -> int | None:
    """The bin of ``value``: ``ceil(ln v / ln γ)`` for v > 0, :data:`ZERO_BIN` otherwise."""
    if not value > 0.0:  # also catches NaN
        return ZERO_BIN
    return math.ceil(math.log(max(value, _MIN_POSITIVE)) / _LN_GAMMA)


def bin_value(index: int | None) -> float:
    """The representative value of a bin: ``2γ^i / (γ + 1)`` (0 for the zero bin)."""
    if index is None:
        return 0.0
    return 2.0 * GAMMA**index / (GAMMA + 1.0)


def bin_upper(index: int | None) -> float:
    """The largest value a bin holds: ``γ^i`` (0 for the zero bin)."""
    if index is None:
        return 0.0
    return float(GAMMA**index)


@dataclass(slots=True)
class LogSketch:
    """Count, sum, exact min/max and log-bin counts of a set of samples."""

    n: int = 0
    total: float = 0.0
    min: float = math.inf
    max: float = -math.inf
    bins: dict[int | None, int] = field(default_factory=dict)

    def add(self, value: float) -> None:
        """Fold one sample (negative values count as 0)."""
        # bin_index inlined: this runs once per inter-token gap, the metrics consumer's
        # hottest pure path (same expression, so the same bin).
        i: int | None
        if value > 0.0:  # also catches NaN
            i = _ceil(_log(value if value > _MIN_POSITIVE else _MIN_POSITIVE) / _LN_GAMMA)
        else:
            value, i = 0.0, ZERO_BIN
        self.n += 1
        self.total += value
        if value < self.min:
            self.min = value
        if value > self.max:
            self.max = value
        bins = self.bins
        bins[i] = bins.get(i, 0) + 1

    def merge(self, other: LogSketch) -> None:
        """Add ``other``'s samples to this sketch."""
        if not other.n:
            return
        self.n += other.n
        self.total += other.total
        self.min = min(self.min, other.min)
        self.max = max(self.max, other.max)
        for i, c in other.bins.items():
            self.bins[i] = self.bins.get(i, 0) + c

    @classmethod
    def of(cls, values: Iterable[float]) -> LogSketch:
        s = cls()
        for v in values:
            s.add(v)
        return s

    @property
    def mean(self) -> float | None:
        return self.total / self.n if self.n else None

    def quantile(self, q: float) -> float | None:
        """The q-quantile (0 ≤ q ≤ 1) within ≈2 % relative error, clamped to [min, max].

        The rank is ``q·(n-1)`` (DDSketch's definition); the answer is the representative value
        of the bin holding the sample of that rank. None when the sketch is empty.
        """
        if not 0.0 <= q <= 1.0:
            raise ValueError(f"quantile q must be within [0, 1], got {q!r}")
        if not self.n:
            return None
        rank = q * (self.n - 1)
        cum = 0
        for i in sorted(self.bins, key=_order):
            cum += self.bins[i]
            if cum > rank:
                v = bin_value(i)
                if math.isfinite(self.min):
                    v = max(v, self.min)
                if math.isfinite(self.max):
                    v = min(v, self.max)
                return v
        return self.max if math.isfinite(self.max) else None

    def cumulative_le(self, bounds: Iterable[float]) -> list[int]:
        """For each bound, the count of samples in bins whose upper value is ≤ it.

        Prometheus histogram buckets built from the bins: a bin straddling a bound counts in
        the next bound up, so counts are at most one bin width (≈4 %) late, never early.
        """
        ordered = sorted(self.bins.items(), key=lambda kv: _order(kv[0]))
        out: list[int] = []
        cum = 0
        j = 0
        for le in bounds:
            # Tolerate float noise in γ^i so a bin exactly at a bound counts in it.
            while j < len(ordered) and bin_upper(ordered[j][0]) <= le * (1 + 1e-12):
                cum += ordered[j][1]
                j += 1
            out.append(cum)
        return out

    def summary(self, quantiles: Mapping[str, float]) -> dict[str, float | int | None]:
        """count, mean, min, max and the named quantiles, as a JSON-ready dict."""
        out: dict[str, float | int | None] = {
            "count": self.n,
            "mean": self.mean,
            "min": self.min if self.n and math.isfinite(self.min) else None,
            "max": self.max if self.n and math.isfinite(self.max) else None,
        }
        for name, q in quantiles.items():
            out[name] = self.quantile(q)
        # JSON has no NaN/inf: garbled stored sums must not break a response.
        return {k: v if v is None or math.isfinite(v) else None for k, v in out.items()}


def _order(i: int | None) -> float:
    return -math.inf if i is None else float(i)
