"""Benchmarks: the `fakeai-streams bench` load generator, scenarios, and library micro-benchmarks."""
