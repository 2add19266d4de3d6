"""Property tests (hypothesis) of everything the edge parses from a client.

- Request bodies (``fakeai.services.edge.schemas``): any JSON value goes through the route's
  checks (``check_depth``, ``validate``, ``check_caps``) and the serialization the route does
  next (``model_dump`` into a msgspec-encoded ``GenerationRequest`` body) and either passes or
  raises the project's ``BadRequest`` (a 400 with OpenAI's body), never another exception (a
  500). Whatever pydantic accepts, the OpenAPI document's schema accepts too.
- Entry ids and ``Last-Event-ID`` (``fakeai.streams.positions``): ``parse_entry_id`` is total
  and round-trips with ``entry_id``; ``decide_resume`` is total and never lets a client resume
  outside its stream.
- The OpenAPI document the edge serves is a valid OpenAPI 3.1 document.

Examples are bounded (``max_examples``) so the module runs in a few seconds; no example
database is written (``database=None``) and no deadline applies (a loaded machine is slow).
"""

from __future__ import annotations

import os
from typing import Any

import jsonschema
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from fakeai.config import Settings
from fakeai.errors import BadRequest
from fakeai.services.edge.openapi import document
from fakeai.services.edge.schemas import (
    ChatCompletionRequest,
    CompletionRequest,
    OpenAIRequest,
    check_caps,
    check_depth,
    validate,
)
from fakeai.streams import EntryId, ResumeVerdict, decide_resume, entry_id, parse_entry_id
from fakeai.wire import encode

FUZZ = settings(
    max_examples=150,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
CAPS = Settings()

# -- strategies ---------------------------------------------------------------------------------

_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
)
json_values = st.recursive(
    _scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=16,
)
"""Any JSON value (what ``msgspec.json.decode`` can give)."""

_messages = st.lists(
    st.fixed_dictionaries(
        {"role": st.sampled_from(["user", "system", "assistant", "tool"]) | json_values},
        optional={"content": st.text(max_size=20) | json_values, "name": json_values},
    ),
    max_size=3,
)
_tools = st.lists(
    st.fixed_dictionaries(
        {"type": st.just("function") | json_values},
        optional={
            "function": st.fixed_dictionaries(
                {"name": st.from_regex(r"[a-z_]{1,8}", fullmatch=True) | json_values},
                optional={"parameters": json_values, "description": json_values},
            )
            | json_values
        },
    ),
    max_size=3,
)
_ints = st.integers(min_value=-5, max_value=40_000) | json_values
_COMMON = {
    "stream": st.booleans() | json_values,
    "stream_options": st.fixed_dictionaries({}, optional={"include_usage": json_values})
    | json_values,
    "n": _ints,
    "max_tokens": _ints,
    "min_tokens": _ints,
    "ignore_eos": json_values,
    "stop": st.lists(st.text(max_size=4), max_size=6) | json_values,
    "seed": st.integers() | json_values,
    "temperature": st.floats(min_value=-1, max_value=3) | json_values,
    "top_p": json_values,
    "user": json_values,
    "extra_field": json_values,
}
chat_bodies = st.fixed_dictionaries(
    {"model": st.just("gpt-4o") | json_values, "messages": _messages | json_values},
    optional={
        **_COMMON,
        "max_completion_tokens": _ints,
        "tools": _tools | json_values,
        "tool_choice": st.sampled_from(["none", "auto", "required"]) | json_values,
        "logprobs": json_values,
        "top_logprobs": _ints,
        "response_format": json_values,
    },
)
completion_bodies = st.fixed_dictionaries(
    {
        "model": st.just("gpt-4o") | json_values,
        "prompt": st.text(max_size=20)
        | st.lists(st.integers(min_value=0, max_value=50_000), max_size=4)
        | json_values,
    },
    optional={
        **_COMMON,
        "echo": json_values,
        "logprobs": _ints,
        "suffix": json_values,
        "best_of": _ints,
    },
)


def _nested(depth: int) -> Any:
    value: Any = "x"
    for i in range(depth):
        value = [value] if i % 2 else {"k": value}
    return value


def _accept_or_400(model: type[OpenAIRequest], body: Any) -> OpenAIRequest | None:
    """What the route does with a decoded body, up to the message it publishes."""
    try:
        check_depth(body)
        req = validate(model, body)
        check_caps(req, CAPS)
        encode(req.model_dump(mode="json", exclude_none=True))
    except BadRequest as e:
        refused = e
    else:
        return req
    assert refused.status == 400
    err = refused.body()["error"]
    assert set(err) == {"message", "type", "param", "code"}
    assert isinstance(err["message"], str)
    assert err["message"]
    assert err["param"] is None or isinstance(err["param"], str)
    return None


# -- request bodies -----------------------------------------------------------------------------


@FUZZ
@given(body=json_values)
def test_any_json_is_a_chat_request_or_a_400(body: Any) -> None:
    _accept_or_400(ChatCompletionRequest, body)


@FUZZ
@given(body=chat_bodies)
@example(body={"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}], "max_tokens": 0})
@example(body={"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}], "tools": [{}]})
def test_chat_bodies_are_accepted_or_a_400(body: dict[str, Any]) -> None:
    _accept_or_400(ChatCompletionRequest, body)


@FUZZ
@given(body=completion_bodies)
@example(body={"model": "gpt-4o", "prompt": "x", "n": 10**30})
def test_completion_bodies_are_accepted_or_a_400(body: dict[str, Any]) -> None:
    _accept_or_400(CompletionRequest, body)


@pytest.mark.parametrize("depth", [63, 65, 1_000, 10_000])
def test_deeply_nested_bodies_are_a_400_not_a_500(depth: int) -> None:
    """Finding 8 of issue 10: 10,000 levels of nesting gave a 500 (RecursionError or
    ValueError in the decoders and serializers). Not a hypothesis example: its reporter
    recurses over the value itself."""
    msg = [{"role": "user", "content": "x"}]
    tool = {"type": "function", "function": {"name": "f", "parameters": _nested(depth)}}
    _accept_or_400(ChatCompletionRequest, {"model": "gpt-4o", "messages": msg, "tools": [tool]})
    _accept_or_400(CompletionRequest, {"model": "gpt-4o", "prompt": "x", "extra": _nested(depth)})


def _openapi_validator(name: str) -> jsonschema.Draft202012Validator:
    doc = document()
    schema = {"$ref": f"#/components/schemas/{name}", "components": doc["components"]}
    return jsonschema.Draft202012Validator(schema)


_CHAT_SCHEMA = _openapi_validator("ChatCompletionRequest")
_COMPLETION_SCHEMA = _openapi_validator("CompletionRequest")


@FUZZ
@given(chat=chat_bodies, completion=completion_bodies)
def test_what_the_edge_accepts_the_openapi_document_allows(
    chat: dict[str, Any], completion: dict[str, Any]
) -> None:
    """The document's request schemas are no stricter than the edge: a client generated from
    it (or schemathesis) can send every request the edge takes."""
    for model, validator, body in (
        (ChatCompletionRequest, _CHAT_SCHEMA, chat),
        (CompletionRequest, _COMPLETION_SCHEMA, completion),
    ):
        if _accept_or_400(model, body) is not None:
            errors = [e.message for e in validator.iter_errors(body)]
            assert not errors, errors


# -- entry ids and Last-Event-ID ----------------------------------------------------------------

_U64 = st.integers(min_value=0, max_value=2**64 - 1)
_ids = st.builds(entry_id, _U64, _U64)
_raw_ids = (
    _ids
    | st.text(max_size=30)
    | st.from_regex(r"\s*-?\d{0,22}-\d{0,22}\s*", fullmatch=True)
    | _ids.map(lambda s: s + "\n")
)


@FUZZ
@given(ms=_U64, seq=_U64)
def test_entry_ids_round_trip(ms: int, seq: int) -> None:
    text = entry_id(ms, seq)
    assert parse_entry_id(text) == EntryId(ms, seq)
    assert parse_entry_id(text.encode()) == EntryId(ms, seq)
    assert str(EntryId(ms, seq)) == text


@FUZZ
@given(raw=_raw_ids)
@example(raw="1-2-3")
@example(raw="٣-٤")  # non-ASCII digits: normalised, never a crash
def test_parse_entry_id_is_total_and_normalises(raw: str) -> None:
    pos = parse_entry_id(raw)
    if pos is None:
        return
    assert pos.ms >= 0
    assert pos.seq >= 0
    assert parse_entry_id(str(pos)) == pos  # the canonical form parses to the same position


@FUZZ
@given(raw=st.binary(max_size=30).filter(lambda b: b.isascii()))
def test_parse_entry_id_of_ascii_bytes_is_total(raw: bytes) -> None:
    pos = parse_entry_id(raw)
    assert pos is None or parse_entry_id(str(pos).encode()) == pos


def test_parse_entry_id_refuses_what_redis_would_not_take() -> None:
    """Regression: bytes that are not UTF-8 raised UnicodeDecodeError; non-ASCII digits
    ("٣-٤") parsed as 3-4; parts above 2**64 - 1 were accepted."""
    assert parse_entry_id(b"\xff-1") is None
    assert parse_entry_id("\u0663-\u0664") is None
    assert parse_entry_id(f"{2**64}-1") is None
    assert parse_entry_id(f"{2**64 - 1}-1") is not None


_created = st.integers(min_value=0, max_value=2**44)
_last_seq = st.none() | st.integers(min_value=0, max_value=100_000)


@FUZZ
@given(
    raw=st.none() | _raw_ids,
    created_ms=_created,
    exists=st.booleans(),
    last_seq=_last_seq,
    finished=st.booleans(),
)
def test_decide_resume_is_total_and_stays_in_the_stream(
    raw: str | None, created_ms: int, exists: bool, last_seq: int | None, finished: bool
) -> None:
    verdict, pos = decide_resume(
        raw, created_ms=created_ms, exists=exists, last_seq=last_seq, finished=finished
    )
    start = EntryId(created_ms, 0)
    if not exists:
        assert verdict is ResumeVerdict.EXPIRED
    elif raw is None or raw == "":
        assert (verdict, pos) == (ResumeVerdict.OK, start)
    elif parse_entry_id(raw) is None:
        assert verdict is ResumeVerdict.MALFORMED
    if verdict is not ResumeVerdict.OK:
        assert pos == start  # a refusal never hands out a position
        return
    assert pos.ms == created_ms  # never a position in another stream
    if finished and last_seq is not None:
        assert pos.seq <= last_seq  # never past the end of a finished stream
    # The position the client is told (the priming event's id) resumes at the same place.
    again = decide_resume(
        str(pos), created_ms=created_ms, exists=exists, last_seq=last_seq, finished=finished
    )
    assert again == (ResumeVerdict.OK, pos)


@FUZZ
@given(
    created_ms=_created,
    last_seq=st.integers(min_value=0, max_value=1000),
    seq=st.integers(min_value=0, max_value=1000),
    earlier=st.integers(min_value=0, max_value=1000),
)
def test_a_resume_that_is_ok_is_ok_from_any_earlier_position(
    created_ms: int, last_seq: int, seq: int, earlier: int
) -> None:
    """Monotone: a client further behind can always resume where a client ahead could."""
    kw: dict[str, Any] = {
        "created_ms": created_ms,
        "exists": True,
        "last_seq": last_seq,
        "finished": True,
    }
    verdict, _ = decide_resume(entry_id(created_ms, seq), **kw)
    if verdict is ResumeVerdict.OK:
        low = min(seq, earlier)
        assert decide_resume(entry_id(created_ms, low), **kw) == (
            ResumeVerdict.OK,
            EntryId(created_ms, low),
        )
    else:
        assert verdict is ResumeVerdict.BEYOND
        assert seq > last_seq


# -- the OpenAPI document -----------------------------------------------------------------------


def test_the_openapi_document_is_valid_openapi_3_1() -> None:
    try:
        from openapi_spec_validator import validate as validate_spec
    except ImportError:  # pragma: no cover - a dev dependency
        if os.environ.get("CI") == "true":
            pytest.fail("openapi-spec-validator is not installed (a dev dependency)")
        pytest.skip("openapi-spec-validator is not installed")
    validate_spec(document())


def test_the_openapi_document_covers_every_endpoint() -> None:
    """Structural checks that hold with or without the validator."""
    doc = document()
    assert doc["openapi"] == "3.1.0"
    methods = {(path, m) for path, item in doc["paths"].items() for m in item}
    assert methods >= {
        ("/v1/chat/completions", "post"),
        ("/v1/completions", "post"),
        ("/v1/models", "get"),
        ("/v1/streams", "get"),
        ("/v1/streams/{stream_id}", "get"),
        ("/v1/streams/{stream_id}/info", "get"),
        ("/v1/streams/{stream_id}/cancel", "post"),
        ("/v1/metrics/latency", "get"),
        ("/metrics", "get"),
        ("/healthz", "get"),
        ("/readyz", "get"),
        ("/openapi.json", "get"),
    }
    schemas = doc["components"]["schemas"]
    refs: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("$ref"), str):
                refs.append(node["$ref"])
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(doc)
    for ref in refs:  # every reference resolves
        kind, _, name = ref.removeprefix("#/components/").partition("/")
        assert name in doc["components"][kind], ref
    for op in (item[m] for item in doc["paths"].values() for m in item):
        assert op["operationId"]
        assert all(code.isdigit() and len(code) == 3 for code in op["responses"])
    body = doc["paths"]["/v1/chat/completions"]["post"]["requestBody"]
    assert body["content"]["application/json"]["schema"]["$ref"].endswith("ChatCompletionRequest")
    assert schemas["ChatCompletionRequest"]["required"] == ["model", "messages"]
