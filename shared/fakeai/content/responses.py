"""Deterministic fake OpenAI responses: ``chat.completion`` and ``text_completion`` objects.

No weights and no network: text comes from :mod:`fakeai.content.prose`, seeded by
``(seed, choice index)``. The same body and seed give the same response; without a seed the
completion id is the seed, so one stream is reproducible from its id.

Length controls follow OpenAI and vLLM (the sampling parameters benchmarks rely on):

- ``max_completion_tokens`` (or the older ``max_tokens``) caps each choice, in token pieces of
  :func:`fakeai.content.tokenizer.split_pieces`; a capped choice ends with ``"length"``;
- ``ignore_eos`` (vLLM) generates exactly the cap; ``min_tokens`` (vLLM) is a floor on the
  natural length (20-300 pieces, seeded);
- ``stop`` cuts the text before the first occurrence of any stop string (``"stop"``).

Tool turns: :mod:`fakeai.content.tool_calls`. Conventions by model and field:

- reasoning models (:mod:`fakeai.content.reasoning`) think first: the message's
  ``reasoning_content`` (vLLM's and DeepSeek's field), counted in ``completion_tokens`` and
  ``completion_tokens_details.reasoning_tokens`` and within the token cap;
- echo models (:mod:`fakeai.content.echo`) answer with the last user message (a completion
  with its prompt);
- chat ``logprobs``/``top_logprobs`` and the legacy ``logprobs`` add plausible log
  probabilities for the answer's pieces (:mod:`fakeai.content.logprobs`), drawn from their own
  random source, so asking for them leaves the text unchanged.

``usage.completion_tokens`` is the number of pieces over all choices, so a stream that sends
one piece per chunk agrees with its usage chunk.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from fakeai.content.echo import is_echo_model, last_user_text
from fakeai.content.logprobs import chat_logprobs, completion_logprobs
from fakeai.content.prose import prose, value_for_schema
from fakeai.content.reasoning import is_reasoning_model, reasoning_text
from fakeai.content.request_fields import (
    MAX_N,
    InvalidRequestValue,
    Limits,
    chat_top_logprobs,
    legacy_logprobs,
    parse_limits,
    parse_n,
)
from fakeai.content.tokenizer import count_prompt_tokens, split_pieces
from fakeai.content.tool_calls import pick_tool, tool_call

__all__ = [
    "MAX_N",
    "InvalidRequestValue",
    "build_chat_completion",
    "build_text_completion",
    "choice_rng",
    "pieces_of",
    "system_fingerprint",
]

pieces_of = split_pieces
"""Alias of :func:`fakeai.content.tokenizer.split_pieces`."""

NATURAL_MIN, NATURAL_MODE, NATURAL_MAX = 20, 80, 300
"""Natural response length in pieces: triangular(20, 300, mode 80), seeded per choice."""


def choice_rng(
    completion_id: str, seed: int | None, index: int, purpose: str = ""
) -> random.Random:
    """The random source of one choice: from ``seed`` if given, else from the completion id.
    A ``purpose`` (``"reasoning"``, ``"logprobs"``) names a source of its own, so drawing from
    it leaves the choice's text as it is."""
    base = str(seed) if seed is not None else completion_id
    return random.Random(f"{base}:{index}:{purpose}" if purpose else f"{base}:{index}")


def system_fingerprint(model: str) -> str:
    """A stable ``fp_…`` per model, as OpenAI returns one per backend configuration."""
    return "fp_" + hashlib.blake2b(model.encode(), digest_size=5).hexdigest()


def _natural_length(rng: random.Random, limits: Limits) -> int:
    natural = int(rng.triangular(NATURAL_MIN, NATURAL_MAX, NATURAL_MODE))
    if limits.ignore_eos and limits.max_tokens is not None:
        return limits.max_tokens
    return max(natural, limits.min_tokens)


def _finish_text(text: str, limits: Limits) -> tuple[str, str]:
    """Apply ``stop`` then the token cap: the final text and its finish reason."""
    finish = "stop"
    if limits.stop:
        cut = min((i for i in (text.find(s) for s in limits.stop) if i >= 0), default=-1)
        if cut >= 0:
            text = text[:cut]
    if limits.max_tokens is not None:
        pieces = split_pieces(text)
        if len(pieces) > limits.max_tokens:
            return "".join(pieces[: limits.max_tokens]), "length"
        if limits.ignore_eos and len(pieces) == limits.max_tokens:
            finish = "length"
    return text, finish


def _json_text(rng: random.Random, response_format: Mapping[str, Any], length: int) -> str:
    kind = response_format.get("type")
    if kind == "json_schema":
        spec = response_format.get("json_schema") or {}
        schema = spec.get("schema") if isinstance(spec, Mapping) else None
        return json.dumps(value_for_schema(schema or {"type": "object"}, rng), ensure_ascii=False)
    return json.dumps({"answer": prose(rng, max(1, length - 6))}, ensure_ascii=False)


def _text_for_choice(
    rng: random.Random, body: Mapping[str, Any], limits: Limits
) -> tuple[str, str]:
    length = _natural_length(rng, limits)
    response_format = body.get("response_format")
    if isinstance(response_format, Mapping) and response_format.get("type") in (
        "json_object",
        "json_schema",
    ):
        text = _json_text(rng, response_format, length)
    else:
        text = prose(rng, length)
    return _finish_text(text, limits)


def _usage(prompt_tokens: int, completion_tokens: int, reasoning: int = 0) -> dict[str, Any]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "prompt_tokens_details": {"cached_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": reasoning},
    }


_RngOf = Callable[..., random.Random]
"""``rng_of(index, purpose="")``: a choice's random source (:func:`choice_rng`)."""


@dataclass(frozen=True, slots=True)
class _ChatMode:
    """What a chat request asks of every choice beyond its text."""

    echo: bool
    reasoning: bool
    effort: object
    top_logprobs: int | None
    tool: Mapping[str, Any] | None


def _chat_choice(
    body: Mapping[str, Any], limits: Limits, mode: _ChatMode, rng_of: _RngOf, index: int
) -> tuple[dict[str, Any], int, int]:
    """One chat choice: (the choice, its completion tokens, its reasoning tokens)."""
    rng = rng_of(index)
    message: dict[str, Any] = {"role": "assistant", "content": None, "refusal": None}
    thinking = ""
    if mode.reasoning:
        thinking = reasoning_text(rng_of(index, "reasoning"), mode.effort, limits.max_tokens)
    reasoning = len(split_pieces(thinking))
    if thinking:
        message["reasoning_content"] = thinking
        if limits.max_tokens is not None:  # the cap holds thinking and answer together
            limits = replace(limits, max_tokens=limits.max_tokens - reasoning)
    logprobs = None
    if mode.tool is not None:
        call, tokens, finish = tool_call(rng, mode.tool, limits.max_tokens)
        message["tool_calls"] = [call]
    else:
        if mode.echo:
            text, finish = _finish_text(last_user_text(body.get("messages")), limits)
        else:
            text, finish = _text_for_choice(rng, body, limits)
        message["content"] = text
        pieces = split_pieces(text)
        tokens = len(pieces)
        if mode.top_logprobs is not None:
            logprobs = chat_logprobs(rng_of(index, "logprobs"), pieces, mode.top_logprobs)
    choice = {"index": index, "message": message, "logprobs": logprobs, "finish_reason": finish}
    return choice, tokens + reasoning, reasoning


def build_chat_completion(
    body: Mapping[str, Any],
    *,
    completion_id: str,
    created: int,
    seed: int | None,
    model: str | None = None,
    reasoning: bool | None = None,
) -> dict[str, Any]:
    """A non-streaming ``chat.completion`` object for a chat request ``body``.

    ``reasoning``: whether the model thinks first; None decides by the model's name
    (:func:`fakeai.content.reasoning.is_reasoning_model`). Echo models never reason.

    Raises :class:`InvalidRequestValue` (a ``ValueError``) naming the field for a bad ``n``,
    ``max_tokens``/``max_completion_tokens``, ``min_tokens``, ``stop``, ``tool_choice`` or
    ``top_logprobs``.
    """
    n = parse_n(body)
    limits = parse_limits(body)
    if seed is None and isinstance(body.get("seed"), int):
        seed = body["seed"]
    model_name = model or str(body.get("model") or "fakeai")
    echo = is_echo_model(model_name)
    if reasoning is None:
        reasoning = is_reasoning_model(model_name)
    mode = _ChatMode(
        echo=echo,
        reasoning=reasoning and not echo,
        effort=body.get("reasoning_effort"),
        top_logprobs=chat_top_logprobs(body),
        tool=pick_tool(body),
    )

    def rng_of(index: int, purpose: str = "") -> random.Random:
        return choice_rng(completion_id, seed, index, purpose)

    choices: list[dict[str, Any]] = []
    completion_tokens = reasoning_tokens = 0
    for index in range(n):
        choice, tokens, thought = _chat_choice(body, limits, mode, rng_of, index)
        choices.append(choice)
        completion_tokens += tokens
        reasoning_tokens += thought
    prompt_tokens = count_prompt_tokens(body.get("messages") or [])
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": created,
        "model": model_name,
        "choices": choices,
        "usage": _usage(prompt_tokens, completion_tokens, reasoning_tokens),
        "system_fingerprint": system_fingerprint(model_name),
    }


def _prompts(body: Mapping[str, Any]) -> list[Any]:
    prompt = body.get("prompt")
    if isinstance(prompt, str):
        return [prompt]
    if isinstance(prompt, list) and prompt:
        if all(isinstance(p, int) and not isinstance(p, bool) for p in prompt):
            return [prompt]
        if all(isinstance(p, str) for p in prompt) or all(
            isinstance(p, list) and all(isinstance(t, int) for t in p) for p in prompt
        ):
            return list(prompt)
    raise InvalidRequestValue(
        "prompt",
        "prompt must be a string, a non-empty list of strings, a list of token ids or a list of "
        f"token-id lists; got {prompt!r:.80}",
    )


def _completion_text(
    prompt: Any, rng: random.Random, body: Mapping[str, Any], limits: Limits, echo_model: bool
) -> tuple[str, str]:
    """The generated text of one completion choice and its finish reason."""
    if echo_model:
        return _finish_text(prompt if isinstance(prompt, str) else "", limits)
    text, finish = _text_for_choice(rng, body, limits)
    if text and isinstance(prompt, str) and prompt and not prompt[-1].isspace():
        text = " " + text  # a completion continues its prompt: the first word has its space
    return text, finish


def build_text_completion(
    body: Mapping[str, Any],
    *,
    completion_id: str,
    created: int,
    seed: int | None,
    model: str | None = None,
) -> dict[str, Any]:
    """A non-streaming ``text_completion`` object: ``n`` choices per prompt, in prompt order.

    ``echo`` puts a text prompt in front of its completions (token-id prompts are not echoed);
    usage counts only generated pieces as completion tokens. ``logprobs`` (0-5) covers the
    choice's whole ``text``, the echoed prompt included.
    """
    n = parse_n(body)
    limits = parse_limits(body)
    prompts = _prompts(body)
    if seed is None and isinstance(body.get("seed"), int):
        seed = body["seed"]
    echo = bool(body.get("echo", False))
    top = legacy_logprobs(body)
    model_name = model or str(body.get("model") or "fakeai")
    echo_model = is_echo_model(model_name)
    choices: list[dict[str, Any]] = []
    completion_tokens = 0
    for p, prompt in enumerate(prompts):
        for j in range(n):
            index = p * n + j
            rng = choice_rng(completion_id, seed, index)
            text, finish = _completion_text(prompt, rng, body, limits, echo_model)
            completion_tokens += len(split_pieces(text))
            echoed = echo and isinstance(prompt, str)
            offset = len(prompt) if isinstance(prompt, str) and not echoed else 0
            if echoed:
                text = prompt + text
            logprobs = None
            if top is not None:
                lp_rng = choice_rng(completion_id, seed, index, "logprobs")
                pieces = split_pieces(text)
                logprobs = completion_logprobs(
                    lp_rng, pieces, top, offset=offset, echoed=echoed and bool(prompt)
                )
            choices.append(
                {"text": text, "index": index, "logprobs": logprobs, "finish_reason": finish}
            )
    return {
        "id": completion_id,
        "object": "text_completion",
        "created": created,
        "model": model_name,
        "choices": choices,
        "usage": _usage(
            count_prompt_tokens(prompts if len(prompts) > 1 else prompts[0]), completion_tokens
        ),
        "system_fingerprint": system_fingerprint(model_name),
    }
