"""Observers of the firehose, each through its own consumer group (``fakeai-streams tail``)."""
