"""Test helpers: real servers on loopback, polls with deadlines."""
