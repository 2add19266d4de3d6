"""The Redis Streams vocabulary: key names, positions, and the stream log."""

from fakeai.streams.keys import METRICS_GROUP, PRODUCERS_GROUP, Keys, partition_for
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
    "METRICS_GROUP",
    "PRODUCERS_GROUP",
    "EntryId",
    "Keys",
    "ResumeVerdict",
    "created_ms_of",
    "decide_resume",
    "entry_id",
    "new_stream_id",
    "parse_entry_id",
    "partition_for",
]
