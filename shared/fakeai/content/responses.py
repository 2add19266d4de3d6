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

With tools offered, a turn calls the first function, except after a tool result (the last
message has role ``tool``), which is answered in text unless ``tool_choice`` forces a call.

``usage.completion_tokens`` is the number of pieces over all choices, so a stream that sends
one piece per chunk agrees with its usage chunk.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fakeai.content.prose import prose, value_for_schema
from fakeai.content.tokenizer import count_prompt_tokens, split_pieces

__all__ = [
    "InvalidRequestValue",
    "build_chat_completion",
    "build_text_completion",
    "choice_rng",
    "pieces_of",
    "system_fingerprint",
]

pieces_of = split_pieces
"""Alias of :func:`fakeai.content.tokenizer.split_pieces`."""

MAX_N = 128
"""OpenAI's upper bound on ``n``."""

NATURAL_MIN, NATURAL_MODE, NATURAL_MAX = 20, 80, 300
"""Natural response length in pieces: triangular(20, 300, mode 80), seeded per choice."""


class InvalidRequestValue(ValueError):
    """A request field has a value the builders cannot honour; ``param`` names the field."""

    def __init__(self, param: str, message: str) -> None:
        super().__init__(message)
        self.param = param


@dataclass(frozen=True, slots=True)
class _Limits:
    max_tokens: int | None
    min_tokens: int
    ignore_eos: bool
    stop: tuple[str, ...]


def _opt_int(body: Mapping[str, Any], name: str, minimum: int) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidRequestValue(name, f"{name} must be an integer >= {minimum}; got {value!r}")
    if value < minimum:
        raise InvalidRequestValue(name, f"{name} must be >= {minimum}; got {value}")
    return value


def _parse_n(body: Mapping[str, Any]) -> int:
    n = _opt_int(body, "n", 1)
    if n is None:
        return 1
    if n > MAX_N:
        raise InvalidRequestValue("n", f"n must be between 1 and {MAX_N}; got {n}")
    return n


def _parse_limits(body: Mapping[str, Any]) -> _Limits:
    max_tokens = _opt_int(body, "max_completion_tokens", 1)
    if max_tokens is None:
        max_tokens = _opt_int(body, "max_tokens", 1)
    min_tokens = _opt_int(body, "min_tokens", 0) or 0
    if max_tokens is not None and min_tokens > max_tokens:
        raise InvalidRequestValue(
            "min_tokens", f"min_tokens ({min_tokens}) must be <= max_tokens ({max_tokens})"
        )
    stop = body.get("stop")
    if stop is None:
        stops: tuple[str, ...] = ()
    elif isinstance(stop, str):
        stops = (stop,) if stop else ()
    elif isinstance(stop, list) and all(isinstance(s, str) for s in stop):
        stops = tuple(s for s in stop if s)
    else:
        raise InvalidRequestValue(
            "stop", f"stop must be a string or a list of strings; got {stop!r}"
        )
    return _Limits(max_tokens, min_tokens, bool(body.get("ignore_eos", False)), stops)


def choice_rng(completion_id: str, seed: int | None, index: int) -> random.Random:
    """The random source of one choice: from ``seed`` if given, else from the completion id."""
    base = str(seed) if seed is not None else completion_id
    return random.Random(f"{base}:{index}")


def system_fingerprint(model: str) -> str:
    """A stable ``fp_…`` per model, as OpenAI returns one per backend configuration."""
    return "fp_" + hashlib.blake2b(model.encode(), digest_size=5).hexdigest()


def _natural_length(rng: random.Random, limits: _Limits) -> int:
    natural = int(rng.triangular(NATURAL_MIN, NATURAL_MAX, NATURAL_MODE))
    if limits.ignore_eos and limits.max_tokens is not None:
        return limits.max_tokens
    return max(natural, limits.min_tokens)


def _finish_text(text: str, limits: _Limits) -> tuple[str, str]:
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
    rng: random.Random, body: Mapping[str, Any], limits: _Limits
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


def _answers_tool_result(body: Mapping[str, Any]) -> bool:
    """The conversation ends with a tool result: the last message has role ``tool``."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return False
    last = messages[-1]
    return isinstance(last, Mapping) and last.get("role") == "tool"


def _pick_tool(body: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The function a tool turn calls, or None when this turn answers in text.

    A turn that follows a tool result answers in text unless the request forces a call
    (``tool_choice`` ``required`` or naming a function): that is how agent loops end (the
    OpenAI Agents SDK, openai-node ``runTools`` and LangChain agents call tools until the
    model answers in text).
    """
    tools = body.get("tools")
    choice = body.get("tool_choice")
    functions: list[Mapping[str, Any]] = [
        t["function"]
        for t in (tools if isinstance(tools, list) else ())
        if isinstance(t, Mapping) and isinstance(t.get("function"), Mapping)
    ]
    if choice == "required" and not functions:
        raise InvalidRequestValue("tool_choice", "tool_choice 'required' needs at least one tool")
    if not functions or choice == "none":
        return None
    if choice is None or choice == "auto":
        return None if _answers_tool_result(body) else functions[0]
    if choice == "required":
        return functions[0]
    if isinstance(choice, Mapping):
        name = (choice.get("function") or {}).get("name")
        for f in functions:
            if f.get("name") == name:
                return f
        names = ", ".join(repr(f.get("name")) for f in functions)
        raise InvalidRequestValue(
            "tool_choice", f"tool_choice names function {name!r}, not among the tools ({names})"
        )
    raise InvalidRequestValue(
        "tool_choice",
        f"tool_choice must be 'none', 'auto', 'required' or a function object; got {choice!r}",
    )


def _tool_call(
    rng: random.Random, function: Mapping[str, Any], limits: _Limits
) -> tuple[dict[str, Any], int, str]:
    params = function.get("parameters")
    if not isinstance(params, Mapping) or params.get("type", "object") != "object":
        params = {"type": "object", "properties": {}}
    arguments = json.dumps(
        value_for_schema({**params, "type": "object"}, rng),
        separators=(",", ":"),
        ensure_ascii=False,
    )
    pieces = split_pieces(arguments)
    finish = "tool_calls"
    if limits.max_tokens is not None and len(pieces) > limits.max_tokens:
        pieces = pieces[: limits.max_tokens]
        arguments = "".join(pieces)
        finish = "length"
    call_id = "call_" + "".join(
        rng.choices("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789", k=24)
    )
    call = {
        "id": call_id,
        "type": "function",
        "function": {"name": str(function.get("name", "")), "arguments": arguments},
    }
    return call, len(pieces), finish


def _usage(prompt_tokens: int, completion_tokens: int) -> dict[str, Any]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "prompt_tokens_details": {"cached_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0},
    }


def build_chat_completion(
    body: Mapping[str, Any],
    *,
    completion_id: str,
    created: int,
    seed: int | None,
    model: str | None = None,
) -> dict[str, Any]:
    """A non-streaming ``chat.completion`` object for a chat request ``body``.

    Raises :class:`InvalidRequestValue` (a ``ValueError``) naming the field for a bad ``n``,
    ``max_tokens``/``max_completion_tokens``, ``min_tokens``, ``stop`` or ``tool_choice``.
    """
    n = _parse_n(body)
    limits = _parse_limits(body)
    if seed is None and isinstance(body.get("seed"), int):
        seed = body["seed"]
    tool = _pick_tool(body)
    model_name = model or str(body.get("model") or "fakeai")
    choices: list[dict[str, Any]] = []
    completion_tokens = 0
    for index in range(n):
        rng = choice_rng(completion_id, seed, index)
        message: dict[str, Any] = {"role": "assistant", "content": None, "refusal": None}
        if tool is not None:
            call, tokens, finish = _tool_call(rng, tool, limits)
            message["tool_calls"] = [call]
        else:
            text, finish = _text_for_choice(rng, body, limits)
            message["content"] = text
            tokens = len(split_pieces(text))
        completion_tokens += tokens
        choices.append(
            {"index": index, "message": message, "logprobs": None, "finish_reason": finish}
        )
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": created,
        "model": model_name,
        "choices": choices,
        "usage": _usage(count_prompt_tokens(body.get("messages") or []), completion_tokens),
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
    usage counts only generated pieces as completion tokens.
    """
    n = _parse_n(body)
    limits = _parse_limits(body)
    prompts = _prompts(body)
    if seed is None and isinstance(body.get("seed"), int):
        seed = body["seed"]
    echo = bool(body.get("echo", False))
    model_name = model or str(body.get("model") or "fakeai")
    choices: list[dict[str, Any]] = []
    completion_tokens = 0
    for p, prompt in enumerate(prompts):
        for j in range(n):
            index = p * n + j
            text, finish = _text_for_choice(choice_rng(completion_id, seed, index), body, limits)
            if isinstance(prompt, str) and prompt and not prompt[-1].isspace():
                # A completion continues its prompt: the first word comes with its space.
                text = " " + text if text else text
            completion_tokens += len(split_pieces(text))
            if echo and isinstance(prompt, str):
                text = prompt + text
            choices.append(
                {"text": text, "index": index, "logprobs": None, "finish_reason": finish}
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
