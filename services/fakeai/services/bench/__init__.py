"""Benchmarks: the `fakeai-streams bench` load generator, scenarios, library benchmarks."""
