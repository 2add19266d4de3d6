"""Embeddings as pure functions: deterministic unit vectors, shortening, encodings, bounds."""

from __future__ import annotations

import array
import base64
import math
from typing import Any

import pytest

from fakeai.errors import BadRequest
from fakeai.services.edge.embeddings import (
    EMBEDDING_MODELS,
    MAX_INPUT_TOKENS,
    MAX_INPUTS,
    EmbeddingRequest,
    embed,
    inputs_of,
    vector,
)

SMALL = EMBEDDING_MODELS["text-embedding-3-small"]


def _req(**fields: Any) -> EmbeddingRequest:
    return EmbeddingRequest.model_validate({"model": SMALL.id, **fields})


def _norm(v: list[float]) -> float:
    return math.sqrt(math.fsum(x * x for x in v))


def test_a_vector_is_a_deterministic_unit_vector_of_the_input() -> None:
    v = vector(SMALL.id, "hello", 1536).tolist()
    assert v == vector(SMALL.id, "hello", 1536).tolist()
    assert len(v) == 1536
    assert _norm(v) == pytest.approx(1.0, abs=1e-5)
    assert v != vector(SMALL.id, "hello!", 1536).tolist()
    assert v != vector("text-embedding-3-large", "hello", 1536).tolist()
    # A string and the token array of the same digits are different inputs.
    assert vector(SMALL.id, "1,2", 8).tolist() != vector(SMALL.id, [1, 2], 8).tolist()


def test_shortened_vectors_are_the_normalised_prefix_of_the_full_one() -> None:
    full = vector(SMALL.id, "abc", 1536).tolist()
    short = vector(SMALL.id, "abc", 256).tolist()
    assert _norm(short) == pytest.approx(1.0, abs=1e-5)
    scale = _norm(full[:256])
    assert short == pytest.approx([x / scale for x in full[:256]], rel=1e-4, abs=1e-6)


def test_float_and_base64_carry_the_same_float32_numbers() -> None:
    as_float = embed(_req(input=["a", "b"]), SMALL)
    as_b64 = embed(_req(input=["a", "b"], encoding_format="base64"), SMALL)
    for f, b in zip(as_float["data"], as_b64["data"], strict=True):
        decoded = array.array("f", base64.b64decode(b["embedding"])).tolist()
        assert decoded == f["embedding"]
    assert [d["index"] for d in as_float["data"]] == [0, 1]


@pytest.mark.parametrize(
    ("value", "count"),
    [("one", 1), (["a", "b", "c"], 3), ([1, 2, 3], 1), ([[1, 2], [3]], 2)],
)
def test_inputs_strings_and_token_arrays(value: Any, count: int) -> None:
    assert len(inputs_of(_req(input=value))) == count


def test_usage_counts_the_tokens_of_every_input() -> None:
    body = embed(_req(input=[[5, 6, 7], [8]]), SMALL)
    assert body["usage"] == {"prompt_tokens": 4, "total_tokens": 4}
    assert embed(_req(input="Hello world!"), SMALL)["usage"]["prompt_tokens"] == 3


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ({"input": ""}, "must not be empty"),
        ({"input": []}, "empty array"),
        ({"input": ["a", ""]}, "input.1"),
        ({"input": [[1], []]}, "input.1"),
        ({"input": ["x"] * (MAX_INPUTS + 1)}, f"at most {MAX_INPUTS}"),
        ({"input": [1] * (MAX_INPUT_TOKENS + 1)}, f"at most {MAX_INPUT_TOKENS}"),
        ({"input": "x", "dimensions": 1537}, "at most 1536"),
    ],
)
def test_bad_input_is_a_400_that_says_why(fields: dict[str, Any], words: str) -> None:
    with pytest.raises(BadRequest) as e:
        embed(_req(**fields), SMALL)
    assert words in e.value.message


def test_ada_002_does_not_take_dimensions() -> None:
    req = EmbeddingRequest.model_validate(
        {"model": "text-embedding-ada-002", "input": "x", "dimensions": 8}
    )
    with pytest.raises(BadRequest, match="does not support specifying dimensions"):
        embed(req, EMBEDDING_MODELS["text-embedding-ada-002"])
