"""Deterministic fake content: English-looking prose and JSON values that fit a JSON schema.

Everything is drawn from a ``random.Random`` the caller seeds, so the same seed gives the same
text on every machine and Python version (``random.Random`` with an int or str seed is stable
across versions; https://docs.python.org/3/library/random.html#notes-on-reproducibility).
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any

from fakeai.content.tokenizer import split_pieces

__all__ = ["MAX_SCHEMA_VALUES", "WORDS", "prose", "prose_pieces", "sentence", "value_for_schema"]

_WORD_TEXT = (
    "the of and to in is that it for as with was on be by this are from at or an have not "
    "which but all can has more one will their been its new also some these other than when "
    "into only time about over such most may first two very after many system data model "
    "value stream token request server client latency network memory cache queue message "
    "signal response output input layer batch window buffer record event result process "
    "method design pattern number simple stable clear quick small large careful steady "
    "useful common modern early later often always usually rarely every each several whole "
    "part point order state change example question answer reason idea detail summary "
    "measure report review update balance limit range level scale rate step stage path "
    "river garden morning evening window mountain harbor market library village forest "
    "engineer teacher student writer reader builder traveler neighbor gardener musician "
    "build write read keep find give show make take follow improve explain compare "
    "describe consider deliver observe predict recover repeat schedule support "
    "performance throughput configuration implementation distributed observability "
    "measurement reliability understanding experience development environment "
    "architecture information consistency availability requirements deployment "
    "interesting important different particular especially approximately"
)
_WORDS = tuple(_WORD_TEXT.split())
WORDS = _WORDS
"""The word bank prose is drawn from (also the alternatives of :mod:`fakeai.content.logprobs`)."""

_CLOSERS = (".", ".", ".", ".", ".", "!", "?")


def sentence(rng: random.Random) -> str:
    """One sentence: capitalised, 5-17 words, an occasional comma, closing punctuation."""
    words = rng.choices(_WORDS, k=rng.randint(5, 17))
    words[0] = words[0].capitalize()
    if len(words) > 7 and rng.random() < 0.4:
        i = rng.randint(2, len(words) - 3)
        words[i] += ","
    return " ".join(words) + rng.choice(_CLOSERS)


def prose(rng: random.Random, min_pieces: int) -> str:
    """Whole sentences until the text has at least ``min_pieces`` token pieces.

    Paragraphs of 3-6 sentences are separated by a blank line, so streams carry newlines.
    """
    parts: list[str] = []
    pieces = 0
    in_paragraph = 0
    paragraph_len = rng.randint(3, 6)
    while pieces < min_pieces or not parts:
        s = sentence(rng)
        if parts:
            if in_paragraph >= paragraph_len:
                s = "\n\n" + s
                in_paragraph = 0
                paragraph_len = rng.randint(3, 6)
            else:
                s = " " + s
        parts.append(s)
        in_paragraph += 1
        pieces += len(split_pieces(s))
    return "".join(parts)


def prose_pieces(rng: random.Random, min_pieces: int) -> list[str]:
    """The pieces of :func:`prose`."""
    return split_pieces(prose(rng, min_pieces))


def _phrase(rng: random.Random, lo: int = 1, hi: int = 4) -> str:
    return " ".join(rng.choices(_WORDS, k=rng.randint(lo, hi)))


MAX_SCHEMA_VALUES = 10_000
"""Most JSON values one :func:`value_for_schema` call makes. A schema is the client's input:
``{"type": "array", "minItems": 1000000000}`` (or arrays nested six deep) would otherwise make
a billion values with the caller's loop blocked; past the budget arrays stop growing, so the
value may hold fewer items than ``minItems`` asks."""


def value_for_schema(schema: Any, rng: random.Random, depth: int = 0) -> Any:
    """A JSON value that validates against the common subset of JSON Schema.

    Handles ``type`` (also lists of types), ``enum``, ``const``, ``properties`` (every
    property is filled in, so ``required`` holds), ``items``, ``anyOf``/``oneOf``, ``format``
    for dates, and numeric ``minimum``/``maximum``. Unknown or missing schemas give a short
    string; nesting stops at depth 6; at most :data:`MAX_SCHEMA_VALUES` values are made.
    """
    return _value(schema, rng, depth, [MAX_SCHEMA_VALUES])


def _value(schema: Any, rng: random.Random, depth: int, left: list[int]) -> Any:
    left[0] -= 1
    if not isinstance(schema, Mapping):
        return _phrase(rng)
    if "const" in schema:
        return schema["const"]
    enum = schema.get("enum")
    if isinstance(enum, list) and enum:
        return rng.choice(enum)
    for key in ("anyOf", "oneOf"):
        options = schema.get(key)
        if isinstance(options, list) and options:
            return _value(options[0], rng, depth + 1, left)
    kind = schema.get("type")
    if isinstance(kind, list):
        kinds = [k for k in kind if k != "null"] or ["null"]
        kind = kinds[0]
    if kind is None:
        kind = "object" if "properties" in schema else "string"
    if depth > 6:
        kind = "string" if kind in ("object", "array") else kind
    if kind == "object":
        props = schema.get("properties") or {}
        return {
            name: _value(sub, rng, depth + 1, left)
            for name, sub in props.items()
            if isinstance(name, str)
        }
    if kind == "array":
        lo = int(schema.get("minItems", 1))
        hi = max(lo, min(int(schema.get("maxItems", 3)), lo + 3))
        items = []
        for _ in range(rng.randint(lo, hi)):
            if left[0] <= 0:  # the budget is spent: the array stops here
                break
            items.append(_value(schema.get("items"), rng, depth + 1, left))
        return items
    if kind == "integer":
        lo = int(schema.get("minimum", 0))
        return rng.randint(lo, max(lo, int(schema.get("maximum", lo + 100))))
    if kind == "number":
        flo = float(schema.get("minimum", 0.0))
        fhi = max(flo, float(schema.get("maximum", flo + 100.0)))
        return round(rng.uniform(flo, fhi), 2)
    if kind == "boolean":
        return rng.random() < 0.5
    if kind == "null":
        return None
    fmt = schema.get("format")
    if fmt == "date":
        return f"2025-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
    if fmt == "date-time":
        hour = rng.randint(0, 23)
        return f"2025-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}T{hour:02d}:00:00Z"
    return _phrase(rng)
