"""Time series in core Redis: log-bin sketches per bucket, the recorder, queries, Prometheus."""

from fakeai.timeseries.recorder import SampleRecorder
from fakeai.timeseries.sketch import LogSketch
from fakeai.timeseries.store import Fold

__all__ = ["Fold", "LogSketch", "SampleRecorder"]
