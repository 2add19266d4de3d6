"""SmartRouter and KVCacheMetrics: prefix matching, load balance, LRU bound, hit metrics."""

from __future__ import annotations

import json
import threading

import pytest

from fakeai.hooks import CacheMetricsHook, CacheRouterHook
from fakeai.kv_cache import KVCacheMetrics, SmartRouter, prompt_token_ids


def _serve(router: SmartRouter, tokens: list[int]) -> tuple[str, int, int]:
    worker, matched, blocks = router.route_request(tokens)
    router.start_request(worker)
    router.complete_request(worker, tokens, output_tokens=10)
    return worker, matched, blocks


def test_implements_the_hooks() -> None:
    router: CacheRouterHook = SmartRouter()
    metrics: CacheMetricsHook = KVCacheMetrics()
    worker, matched, blocks = router.route_request(list(range(40)))
    assert (worker, matched, blocks) == ("worker-0", 0, 0)
    metrics.record_cache_lookup("/v1/chat/completions", 40, matched)


def test_repeated_prefix_goes_back_to_the_worker_that_caches_it() -> None:
    router = SmartRouter(num_workers=4, block_size=16)
    system = list(range(1000, 1064))  # 4 full blocks shared by both prompts
    first, _, _ = _serve(router, [*system, 1, 2, 3])
    # Keep the first worker busy: the cached prefix must still outweigh the load.
    router.start_request(first)
    worker, matched, blocks = router.route_request([*system, 7, 8, 9, 10])
    assert worker == first
    assert (matched, blocks) == (64, 4)


def test_only_whole_leading_blocks_match() -> None:
    router = SmartRouter(num_workers=1, block_size=4)
    _serve(router, list(range(10)))  # caches blocks [0..3], [4..7]; 8, 9 are a partial block
    assert router.route_request(list(range(10)))[1:] == (8, 2)
    assert router.route_request([0, 1, 2, 3, 99, 5, 6, 7])[1:] == (4, 1)
    assert router.route_request([9, 1, 2, 3, 4, 5, 6, 7])[1:] == (0, 0)  # prefix, not substring


def test_new_prompts_spread_over_idle_workers_by_load() -> None:
    router = SmartRouter(num_workers=3, block_size=16)
    chosen = []
    for i in range(3):
        worker, _, _ = router.route_request([i] * 32)
        router.start_request(worker)
        chosen.append(worker)
    assert sorted(chosen) == ["worker-0", "worker-1", "worker-2"]


def test_cache_is_lru_bounded_per_worker() -> None:
    router = SmartRouter(num_workers=1, block_size=2, max_blocks_per_worker=5)
    _serve(router, [1, 1, 1, 1])  # 2 blocks
    for p in range(10):
        _serve(router, [100 + p, 0, 0, 0])
    stats = router.get_stats()
    assert stats["workers"]["worker-0"]["cached_blocks"] == 5
    assert stats["workers"]["worker-0"]["evictions"] == 2 + 20 - 5
    assert router.route_request([1, 1, 1, 1])[1] == 0  # evicted, oldest first
    assert router.route_request([109, 0, 0, 0])[1] == 4  # the most recent survives


def test_stats_and_unknown_worker() -> None:
    router = SmartRouter(num_workers=2, block_size=4)
    _serve(router, list(range(8)))
    _serve(router, list(range(8)))
    stats = router.get_stats()
    json.dumps(stats)
    assert stats["requests_routed"] == 2
    assert stats["matched_tokens"] == 8
    assert stats["token_reuse_rate"] == pytest.approx(50.0)
    assert sum(w["total_requests"] for w in stats["workers"].values()) == 2
    with pytest.raises(ValueError, match=r"worker_id: unknown worker 'worker-9'.*worker-0"):
        router.start_request("worker-9")


@pytest.mark.parametrize(
    ("kwargs", "arg"),
    [
        ({"num_workers": 0}, "num_workers"),
        ({"block_size": 0}, "block_size"),
        ({"kv_overlap_weight": -1}, "kv_overlap_weight"),
        ({"max_blocks_per_worker": 0}, "max_blocks_per_worker"),
    ],
)
def test_bad_router_config(kwargs: dict[str, float], arg: str) -> None:
    with pytest.raises(ValueError, match=arg):
        SmartRouter(**kwargs)  # type: ignore[arg-type]


def test_prompt_token_ids_are_stable_and_prefix_preserving() -> None:
    a = prompt_token_ids("You are a helpful assistant. Tell me a joke.")
    b = prompt_token_ids("You are a helpful assistant. Tell me a story.")
    assert a == prompt_token_ids("You are a helpful assistant. Tell me a joke.")
    assert a[:-2] == b[:-2]
    assert a[-2] != b[-2]
    assert all(0 <= x < 2**32 for x in a)
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    parts = [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}]
    assert prompt_token_ids(messages) == prompt_token_ids("system: Be brief.\nuser: Hi\n")
    assert prompt_token_ids(parts) == prompt_token_ids("user: Hi\n")


def test_router_fed_from_text_hits_on_a_shared_system_prompt() -> None:
    router = SmartRouter(num_workers=4, block_size=16)
    system = "You are a meticulous assistant who answers in full sentences. " * 10
    first, _, _ = _serve(router, prompt_token_ids(system + "What is Redis?"))
    worker, matched, _ = router.route_request(prompt_token_ids(system + "What is a stream?"))
    assert worker == first
    assert matched >= 16 * 5


def test_cache_metrics() -> None:
    m = KVCacheMetrics(prefill_ms_per_token=0.1)
    assert m.get_stats()["estimated_prefill_speedup"] == 1.0
    m.record_cache_lookup("/v1/chat/completions", 100, 0)
    m.record_cache_lookup("/v1/chat/completions", 100, 80)
    m.record_cache_lookup("/v1/completions", 200, 120)
    assert m.get_cache_hit_rate() == pytest.approx(200 / 3)
    assert m.get_token_reuse_rate() == pytest.approx(50.0)
    stats = m.get_stats()
    json.dumps(stats)
    assert stats["avg_prefix_length"] == pytest.approx(100.0)
    assert stats["prefill_ms_saved"] == pytest.approx(20.0)
    assert stats["estimated_prefill_speedup"] == pytest.approx(2.0)
    assert stats["endpoint_stats"]["/v1/chat/completions"]["hit_rate"] == pytest.approx(50.0)
    m.record_speedup("/v1/chat/completions", 0.2, 0.05, 0.8)
    assert m.get_stats()["measured_speedup_avg"] == pytest.approx(4.0)
    with pytest.raises(ValueError, match="total_tokens"):
        m.record_cache_lookup("/x", -1, 0)


def test_cache_metrics_thread_safe() -> None:
    m = KVCacheMetrics()

    def work() -> None:
        for _ in range(5000):
            m.record_cache_lookup("/e", 10, 5)

    threads = [threading.Thread(target=work) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert m.cache_hits == 30_000
    assert m.cached_tokens_reused == 150_000
