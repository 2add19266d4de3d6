"""Every key comes from Keys; stream keys share a cluster hash tag."""

from __future__ import annotations

import pytest

from fakeai.streams import STREAM_BUCKETS, Keys, bucket_for, partition_for


def _tag(key: str) -> str:
    return key[key.index("{") + 1 : key.index("}")]


def test_stream_keys_share_their_bucket_tag() -> None:
    k = Keys("fakeai")
    sid = "chatcmpl-abc"
    b = bucket_for(sid)
    assert k.chunks(sid) == f"fakeai:{{{b}}}:chatcmpl-abc:chunks"
    assert k.meta(sid) == f"fakeai:{{{b}}}:chatcmpl-abc:meta"
    assert _tag(k.chunks(sid)) == _tag(k.meta(sid)) == str(b)


def test_buckets_are_stable_and_all_used() -> None:
    sids = [f"chatcmpl-{i:024x}" for i in range(5000)]
    buckets = [bucket_for(s) for s in sids]
    assert buckets == [bucket_for(s) for s in sids]
    assert set(buckets) == set(range(STREAM_BUCKETS))


def test_partitions_and_models_have_tags_of_their_own() -> None:
    k = Keys("fakeai")
    assert _tag(k.requests(3)) == "q3"
    assert _tag(k.events(3)) == "e3"
    model = "gpt-4o"
    same = {_tag(k.ts_bucket("ttft", model, "1s", 5)), _tag(k.ts_minmax("itl", model, "1m", 0)),
            _tag(k.counters(model)), _tag(k.ts_seen(model, "chatcmpl-x"))}  # fmt: skip
    assert same == {model}
    assert k.requests_for("chatcmpl-x", 4) == k.requests(partition_for("chatcmpl-x", 4))


def test_prefix_applies_everywhere() -> None:
    k = Keys("p1")
    names = [
        k.layout(),
        k.requests(0),
        k.cancels(),
        k.chunks("s"),
        k.meta("s"),
        k.active(),
        k.events(0),
        k.ts_bucket("ttft", "gpt-4o", "1s", 5),
        k.ts_models(),
        k.counters("gpt-4o"),
        k.ts_seen("gpt-4o", "s"),
    ]
    assert all(n.startswith("p1:") for n in names)
    assert len(set(names)) == len(names)


@pytest.mark.parametrize("bad", ["", "a b", "x{y", "z}"])
def test_bad_prefix_is_rejected(bad: str) -> None:
    with pytest.raises(ValueError, match="prefix"):
        Keys(bad)


def test_partition_is_stable_and_in_range() -> None:
    sids = [f"chatcmpl-{i}" for i in range(1000)]
    parts = [partition_for(s, 4) for s in sids]
    assert parts == [partition_for(s, 4) for s in sids]
    assert set(parts) == {0, 1, 2, 3}
