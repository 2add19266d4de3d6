"""Simulated KV-cache-aware routing over N workers, and prefix-cache hit metrics.

:class:`SmartRouter` imitates a KV-aware router (NVIDIA Dynamo's KV router, llm-d's
prefix-cache scorer): each simulated worker holds the prompt prefixes it has served, in blocks
of ``block_size`` tokens (vLLM's automatic prefix caching also caches whole blocks only). A
block is named by a chained hash, ``h_i = hash((h_{i-1}, block_i))``, so one set lookup per block
answers "does this worker hold the prefix up to here". Each worker's cache is an LRU of at most
``max_blocks_per_worker`` blocks, so memory stays bounded however many distinct prompts arrive
(upstream FakeAI 0.3's radix tree grows with every distinct prompt).

A request goes to the worker with the lowest cost
``kv_overlap_weight * blocks_to_prefill + load_balance_weight * active_requests``
(ties: fewer active requests, then fewer requests served, then worker order).

:class:`KVCacheMetrics` counts lookups, hits and reused tokens and estimates the prefill time
saved. Both classes implement the hooks in :mod:`fakeai.hooks` and are thread-safe.

Compatibility surface: ``SmartRouter``, ``KVCacheMetrics`` and ``tokenize_for_cache`` with
FakeAI 0.3's calls; the radix tree itself is not reproduced (``docs/library.md``).
"""

from __future__ import annotations

import threading
import zlib
from collections import OrderedDict, deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from fakeai.content.tokenizer import split_pieces

__all__ = ["KVCacheMetrics", "SmartRouter", "prompt_token_ids", "tokenize_for_cache"]


def _text_of(prompt: str | Sequence[Mapping[str, Any]]) -> str:
    if isinstance(prompt, str):
        return prompt
    parts: list[str] = []
    for message in prompt:
        content = message.get("content")
        if isinstance(content, list):  # content parts: keep the text ones
            content = "".join(p.get("text", "") for p in content if isinstance(p, Mapping))
        parts.append(f"{message.get('role', '')}: {content or ''}\n")
    return "".join(parts)


def prompt_token_ids(prompt: str | Sequence[Mapping[str, Any]]) -> list[int]:
    """Stable token ids for a prompt text (or chat messages): crc32 of each tokenizer piece.

    The same text gives the same ids in every process (``zlib.crc32``, unlike ``hash(str)``),
    and a shared prefix of text gives a shared prefix of ids, which is all routing needs.
    """
    return [zlib.crc32(piece.encode()) for piece in split_pieces(_text_of(prompt))]


def tokenize_for_cache(text: str) -> list[int]:
    """FakeAI 0.3's name: :func:`prompt_token_ids` of a plain-text prompt."""
    return prompt_token_ids(text)


def _block_hashes(tokens: Sequence[int], block_size: int) -> list[int]:
    """Chained hashes of the prompt's full blocks (a partial last block is not cached)."""
    hashes: list[int] = []
    h = 0
    for end in range(block_size, len(tokens) + 1, block_size):
        # hash() of a tuple of ints is the same in every process (no str hash randomisation).
        h = hash((h, tuple(tokens[end - block_size : end])))
        hashes.append(h)
    return hashes


@dataclass(slots=True)
class _Worker:
    worker_id: str
    blocks: OrderedDict[int, None] = field(default_factory=OrderedDict)
    active_requests: int = 0
    total_requests: int = 0
    tokens_processed: int = 0
    cache_hits: int = 0
    matched_tokens: int = 0
    evictions: int = 0

    def match(self, hashes: list[int]) -> int:
        """Number of leading blocks this worker holds."""
        n = 0
        for h in hashes:
            if h not in self.blocks:
                break
            n += 1
        return n


class SmartRouter:
    """KV-cache-aware router over ``num_workers`` simulated workers (see the module docstring).

    Workers are named ``worker-0`` … ``worker-{num_workers-1}``.
    """

    def __init__(
        self,
        num_workers: int = 4,
        block_size: int = 16,
        kv_overlap_weight: float = 1.0,
        load_balance_weight: float = 0.5,
        max_blocks_per_worker: int = 10_000,
    ) -> None:
        if num_workers < 1:
            raise ValueError(f"num_workers must be >= 1, got {num_workers}")
        if block_size < 1:
            raise ValueError(f"block_size must be >= 1, got {block_size}")
        if kv_overlap_weight < 0 or load_balance_weight < 0:
            raise ValueError("kv_overlap_weight and load_balance_weight must be >= 0")
        if max_blocks_per_worker < 1:
            raise ValueError(f"max_blocks_per_worker must be >= 1, got {max_blocks_per_worker}")
        self.num_workers = num_workers
        self.block_size = block_size
        self.kv_overlap_weight = kv_overlap_weight
        self.load_balance_weight = load_balance_weight
        self.max_blocks_per_worker = max_blocks_per_worker
        self._workers = {f"worker-{i}": _Worker(f"worker-{i}") for i in range(num_workers)}
        self._lock = threading.Lock()
        self._routed = 0
        self._prompt_tokens = 0
        self._matched_tokens = 0

    def _worker(self, worker_id: str) -> _Worker:
        try:
            return self._workers[worker_id]
        except KeyError:
            raise ValueError(
                f"worker_id: unknown worker {worker_id!r}; known: {', '.join(self._workers)}"
            ) from None

    def route_request(
        self, tokens: list[int], estimated_output_tokens: int = 0
    ) -> tuple[str, int, int]:
        """Pick a worker for a prompt: ``(worker_id, matched_tokens, matched_blocks)``.

        The match is the chosen worker's cached prefix (whole blocks). ``estimated_output_tokens``
        is accepted for API compatibility; decode cost is the same on every worker.
        """
        if estimated_output_tokens < 0:
            raise ValueError(f"estimated_output_tokens must be >= 0, got {estimated_output_tokens}")
        hashes = _block_hashes(tokens, self.block_size)
        with self._lock:
            best: tuple[float, int, int, int] | None = None
            chosen, chosen_blocks = "", 0
            for index, w in enumerate(self._workers.values()):
                matched = w.match(hashes)
                cost = (
                    self.kv_overlap_weight * (len(hashes) - matched)
                    + self.load_balance_weight * w.active_requests
                )
                key = (cost, w.active_requests, w.total_requests, index)
                if best is None or key < best:
                    best, chosen, chosen_blocks = key, w.worker_id, matched
            w = self._workers[chosen]
            for h in hashes[:chosen_blocks]:  # a hit refreshes the blocks' LRU position
                w.blocks.move_to_end(h)
            matched_tokens = chosen_blocks * self.block_size
            if chosen_blocks:
                w.cache_hits += 1
                w.matched_tokens += matched_tokens
            self._routed += 1
            self._prompt_tokens += len(tokens)
            self._matched_tokens += matched_tokens
        return chosen, matched_tokens, chosen_blocks

    def start_request(self, worker_id: str) -> None:
        with self._lock:
            w = self._worker(worker_id)
            w.active_requests += 1
            w.total_requests += 1

    def complete_request(self, worker_id: str, tokens: list[int], output_tokens: int = 0) -> None:
        """The request finished: the worker now caches the prompt's blocks (LRU eviction)."""
        hashes = _block_hashes(tokens, self.block_size)
        with self._lock:
            w = self._worker(worker_id)
            w.active_requests = max(0, w.active_requests - 1)
            w.tokens_processed += len(tokens) + output_tokens
            blocks = w.blocks
            for h in hashes:
                if h in blocks:
                    blocks.move_to_end(h)
                else:
                    blocks[h] = None
            excess = len(blocks) - self.max_blocks_per_worker
            for _ in range(max(0, excess)):
                blocks.popitem(last=False)
            w.evictions += max(0, excess)

    def get_stats(self) -> dict[str, Any]:
        with self._lock:
            workers = {
                w.worker_id: {
                    "active_requests": w.active_requests,
                    "total_requests": w.total_requests,
                    "cached_blocks": len(w.blocks),
                    "tokens_processed": w.tokens_processed,
                    "cache_hits": w.cache_hits,
                    "matched_tokens": w.matched_tokens,
                    "evictions": w.evictions,
                }
                for w in self._workers.values()
            }
            routed, prompt, matched = self._routed, self._prompt_tokens, self._matched_tokens
        return {
            "workers": workers,
            "requests_routed": routed,
            "prompt_tokens": prompt,
            "matched_tokens": matched,
            "token_reuse_rate": matched / prompt * 100 if prompt else 0.0,
            "total_cached_blocks": sum(w["cached_blocks"] for w in workers.values()),
            "config": {
                "num_workers": self.num_workers,
                "block_size": self.block_size,
                "kv_overlap_weight": self.kv_overlap_weight,
                "load_balance_weight": self.load_balance_weight,
                "max_blocks_per_worker": self.max_blocks_per_worker,
            },
        }


class KVCacheMetrics:
    """Prefix-cache hit counters and the prefill time they save.

    Args:
        prefill_ms_per_token: prefill cost used to estimate the time saved (the latency
            profiles' ``prefill_ms_per_token``; 0.05 ms is a mid-size model's).
        max_samples: recent prefix lengths and speedup records kept (memory bound).
    """

    def __init__(self, prefill_ms_per_token: float = 0.05, max_samples: int = 10_000) -> None:
        if prefill_ms_per_token < 0:
            raise ValueError(f"prefill_ms_per_token must be >= 0, got {prefill_ms_per_token}")
        if max_samples < 1:
            raise ValueError(f"max_samples must be >= 1, got {max_samples}")
        self.prefill_ms_per_token = prefill_ms_per_token
        self._lock = threading.Lock()
        self.cache_hits = 0
        self.cache_misses = 0
        self.total_tokens_processed = 0
        self.cached_tokens_reused = 0
        self._prefix_lengths: deque[int] = deque(maxlen=max_samples)
        self._by_endpoint: dict[str, dict[str, int]] = {}
        self._speedups: deque[dict[str, float]] = deque(maxlen=max_samples)

    def record_cache_lookup(self, endpoint: str, total_tokens: int, matched_tokens: int) -> None:
        """One prompt of ``total_tokens`` looked up; ``matched_tokens`` came from the cache."""
        if total_tokens < 0 or matched_tokens < 0:
            raise ValueError(
                f"total_tokens and matched_tokens must be >= 0, got {total_tokens}, "
                f"{matched_tokens}"
            )
        matched = min(matched_tokens, total_tokens)
        with self._lock:
            ep = self._by_endpoint.get(endpoint)
            if ep is None:
                ep = self._by_endpoint[endpoint] = {
                    "hits": 0,
                    "misses": 0,
                    "tokens": 0,
                    "reused": 0,
                }
            if matched > 0:
                self.cache_hits += 1
                ep["hits"] += 1
                self._prefix_lengths.append(matched)
            else:
                self.cache_misses += 1
                ep["misses"] += 1
            self.total_tokens_processed += total_tokens
            self.cached_tokens_reused += matched
            ep["tokens"] += total_tokens
            ep["reused"] += matched

    def record_speedup(
        self, endpoint: str, baseline_ttft: float, actual_ttft: float, cache_hit_ratio: float
    ) -> None:
        """A measured TTFT with the cache against the TTFT it would have had without."""
        if baseline_ttft < 0 or actual_ttft <= 0:
            raise ValueError("baseline_ttft must be >= 0 and actual_ttft > 0")
        with self._lock:
            self._speedups.append(
                {
                    "baseline_ttft": baseline_ttft,
                    "actual_ttft": actual_ttft,
                    "cache_hit_ratio": cache_hit_ratio,
                    "speedup_ratio": baseline_ttft / actual_ttft,
                }
            )

    def get_cache_hit_rate(self) -> float:
        """Percentage (0-100) of lookups that matched at least one cached block."""
        with self._lock:
            total = self.cache_hits + self.cache_misses
            return self.cache_hits / total * 100 if total else 0.0

    def get_token_reuse_rate(self) -> float:
        """Percentage (0-100) of prompt tokens served from the cache."""
        with self._lock:
            total = self.total_tokens_processed
            return self.cached_tokens_reused / total * 100 if total else 0.0

    def get_stats(self) -> dict[str, Any]:
        """Hit rate, tokens saved, average prefix length, and estimated prefill speedup."""
        hit_rate, reuse_rate = self.get_cache_hit_rate(), self.get_token_reuse_rate()
        with self._lock:
            lengths = list(self._prefix_lengths)
            speedups = [s["speedup_ratio"] for s in self._speedups]
            total, reused = self.total_tokens_processed, self.cached_tokens_reused
            endpoints = {
                name: {
                    **counts,
                    "hit_rate": counts["hits"] / (counts["hits"] + counts["misses"]) * 100,
                }
                for name, counts in self._by_endpoint.items()
            }
            hits, misses = self.cache_hits, self.cache_misses
        # Prefill time is proportional to uncached tokens, so caching speeds prefill by
        # total / (total - reused); decode time is unaffected. A fully cached prompt still
        # computes its last token, hence the floor of one uncached token.
        uncached = max(1, total - reused)
        return {
            "cache_hit_rate": hit_rate,
            "token_reuse_rate": reuse_rate,
            "total_cache_hits": hits,
            "total_cache_misses": misses,
            "total_tokens_processed": total,
            "cached_tokens_reused": reused,
            "avg_prefix_length": sum(lengths) / len(lengths) if lengths else 0.0,
            "prefill_ms_saved": reused * self.prefill_ms_per_token,
            "estimated_prefill_speedup": total / uncached if total else 1.0,
            "measured_speedup_avg": sum(speedups) / len(speedups) if speedups else 0.0,
            "endpoint_stats": endpoints,
        }
