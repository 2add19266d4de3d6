"""The metrics consumer: firehose (group ``metrics``) -> per-stream samples -> time series."""
