"""The bench's request bodies: a fresh prompt nonce on every request."""

from __future__ import annotations

from fakeai.services.bench.config import BenchConfig


def test_every_body_has_a_prompt_of_its_own() -> None:
    cfg = BenchConfig(url="http://127.0.0.1:1", concurrency=1)
    prompts = [cfg.body()["messages"][-1]["content"] for _ in range(10_000)]
    assert len(set(prompts)) == len(prompts)
    assert all(p.endswith(cfg.prompt) and len(p.split(" ", 1)[0]) == 32 for p in prompts)
