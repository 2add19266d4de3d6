"""FakeAI Streams services: edge, producer, metrics consumer, and the `fakeai-streams` CLI."""
