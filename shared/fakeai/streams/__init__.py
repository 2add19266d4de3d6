"""The Redis Streams vocabulary: key names, positions, and the stream log."""

from fakeai.streams.keys import (
    LAYOUT,
    METRICS_GROUP,
    PRODUCERS_GROUP,
    STREAM_BUCKETS,
    Keys,
    bucket_for,
    partition_for,
)
from fakeai.streams.positions import (
    EntryId,
    ResumeVerdict,
    created_ms_of,
    decide_resume,
    entry_id,
    new_stream_id,
    parse_entry_id,
)

__all__ = [
    "LAYOUT",
    "METRICS_GROUP",
    "PRODUCERS_GROUP",
    "STREAM_BUCKETS",
    "EntryId",
    "Keys",
    "ResumeVerdict",
    "bucket_for",
    "created_ms_of",
    "decide_resume",
    "entry_id",
    "new_stream_id",
    "parse_entry_id",
    "partition_for",
]
