"""Streams one response as OpenAI Realtime API (GA) server events.

Event names are the GA ones (``response.output_text.delta``, ``response.output_audio.delta``,
``response.output_audio_transcript.delta``, ``conversation.item.added``/``.done``), not the beta
``response.text.delta`` family (OpenAI Realtime API reference, server events). Order for one
assistant message::

    response.created                      at once (the request was accepted)
    response.output_item.added            at the first token's deadline,
    conversation.item.added               with the first delta
    response.content_part.added
    response.output_text.delta            one per token piece (text modality), or
      | response.output_audio_transcript.delta + response.output_audio.delta  (audio)
    response.output_text.done | response.output_audio.done + ..._transcript.done
    response.content_part.done
    response.output_item.done
    conversation.item.done
    response.done                         with usage; status "incomplete" when capped

Tool calls become ``function_call`` items streamed with ``response.function_call_arguments.delta``.
``full_response`` is a chat completion (first choice); ``context.metadata["modality"]`` is
``"text"`` (default) or ``"audio"``. ``StreamChunk.chunk_type`` is the event type.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import AsyncIterator, Mapping
from typing import Any

from fakeai.content.audio import synthesize_pcm16
from fakeai.content.tokenizer import split_pieces
from fakeai.streaming.base import StreamChunk, StreamContext
from fakeai.streaming.generators._common import (
    Delta,
    PacedGenerator,
    Unit,
    group_units,
    make_pacer,
)
from fakeai.streaming.generators._response import (
    CHOICE,
    FUNCTION,
    MESSAGE,
    TOOL_CALL,
    USAGE,
    read_response,
    to_dict,
)
from fakeai.streaming.generators.audio import audio_slices

__all__ = ["MODALITIES", "RealtimeStreamingGenerator"]

MODALITIES = ("text", "audio")
_DELTA_TYPES = (
    "response.output_text.delta",
    "response.output_audio_transcript.delta",
    "response.output_audio.delta",
    "response.function_call_arguments.delta",
)


def _short_id(prefix: str, *parts: object) -> str:
    digest = hashlib.blake2b(":".join(map(str, parts)).encode(), digest_size=10).hexdigest()
    return f"{prefix}_{digest}"


def _merge(a: Delta, b: Delta) -> Delta | None:
    same = a.get("type") == b.get("type") and a.get("item_id") == b.get("item_id")
    if same and a.get("type") in _DELTA_TYPES:
        return {**a, "delta": a["delta"] + b["delta"]}
    return None


class _Builder:
    """Builds the events of one response (``event_id`` is filled in at emission)."""

    def __init__(self, response_id: str) -> None:
        self.response_id = response_id

    def ev(self, type_: str, **fields: Any) -> Delta:
        return {"type": type_, "event_id": "", **fields}

    def loc(self, item_id: str, output_index: int, **fields: Any) -> dict[str, Any]:
        return {
            "response_id": self.response_id,
            "item_id": item_id,
            "output_index": output_index,
            **fields,
        }

    def message_item(
        self, item_id: str, out: int, modality: str, text: str, data: str, pieces: list[str]
    ) -> tuple[list[Unit], dict[str, Any]]:
        part_type, key = (
            ("output_audio", "transcript") if modality == "audio" else ("output_text", "text")
        )
        item = {
            "id": item_id,
            "object": "realtime.item",
            "type": "message",
            "status": "in_progress",
            "role": "assistant",
            "content": [],
        }
        loc = self.loc(item_id, out, content_index=0)
        added = [
            self.ev(
                "response.output_item.added",
                response_id=self.response_id,
                output_index=out,
                item=item,
            ),
            self.ev("conversation.item.added", previous_item_id=None, item=item),
            self.ev("response.content_part.added", **loc, part={"type": part_type, key: ""}),
        ]
        units: list[Unit]
        if modality == "audio":
            slices = audio_slices(data, pieces)
            units = [
                [
                    (self.ev("response.output_audio_transcript.delta", **loc, delta=p), 1),
                    (self.ev("response.output_audio.delta", **loc, delta=s), 0),
                ]
                for p, s in zip(pieces, slices, strict=True)
            ]
        else:
            units = [[(self.ev("response.output_text.delta", **loc, delta=p), 1)] for p in pieces]
        if not units:
            units = [[]]
        units[0][:0] = [(e, 0) for e in added]
        part = {"type": part_type, key: text}
        done_item = {**item, "status": "completed", "content": [part]}
        if modality == "audio":
            done = [
                self.ev("response.output_audio.done", **loc),
                self.ev("response.output_audio_transcript.done", **loc, transcript=text),
            ]
        else:
            done = [self.ev("response.output_text.done", **loc, text=text)]
        done += [
            self.ev("response.content_part.done", **loc, part=part),
            self.ev(
                "response.output_item.done",
                response_id=self.response_id,
                output_index=out,
                item=done_item,
            ),
            self.ev("conversation.item.done", previous_item_id=None, item=done_item),
        ]
        units[-1].extend((e, 0) for e in done)
        return units, done_item

    def call_item(
        self, item_id: str, out: int, call: Mapping[str, Any]
    ) -> tuple[list[Unit], dict[str, Any]]:
        function = to_dict(call.get("function") or {}, FUNCTION, "tool_call.function")
        name, arguments = str(function.get("name", "")), str(function.get("arguments") or "")
        call_id = call.get("id") or _short_id("call", item_id)
        item = {
            "id": item_id,
            "object": "realtime.item",
            "type": "function_call",
            "status": "in_progress",
            "call_id": call_id,
            "name": name,
            "arguments": "",
        }
        loc = self.loc(item_id, out, call_id=call_id)
        units: list[Unit] = [
            [(self.ev("response.function_call_arguments.delta", **loc, delta=p), 1)]
            for p in split_pieces(arguments)
        ] or [[]]
        units[0][:0] = [
            (
                self.ev(
                    "response.output_item.added",
                    response_id=self.response_id,
                    output_index=out,
                    item=item,
                ),
                0,
            ),
            (self.ev("conversation.item.added", previous_item_id=None, item=item), 0),
        ]
        done_item = {**item, "status": "completed", "arguments": arguments}
        units[-1].extend(
            (e, 0)
            for e in (
                self.ev(
                    "response.function_call_arguments.done", **loc, name=name, arguments=arguments
                ),
                self.ev(
                    "response.output_item.done",
                    response_id=self.response_id,
                    output_index=out,
                    item=done_item,
                ),
                self.ev("conversation.item.done", previous_item_id=None, item=done_item),
            )
        )
        return units, done_item


class RealtimeStreamingGenerator(PacedGenerator):
    """Streams a response as GA Realtime server events, one token piece per delta event."""

    async def generate(
        self, context: StreamContext, full_response: Any
    ) -> AsyncIterator[StreamChunk]:
        """``response.created`` at once, then the items' events at their token deadlines."""
        modality = context.metadata.get("modality", "text")
        if modality not in MODALITIES:
            raise ValueError(f"modality must be one of {', '.join(MODALITIES)}; got {modality!r}")
        full = read_response(full_response)
        choices = full.get("choices") or [{}]
        choice = to_dict(choices[0], CHOICE, "full_response.choices[0]")
        message = to_dict(choice.get("message") or {}, MESSAGE, "full_response.choices[0].message")
        finish_reason = choice.get("finish_reason") or "stop"
        base = str(full.get("id") or context.stream_id)
        b = _Builder(_short_id("resp", base))

        units: list[Unit] = []
        output: list[dict[str, Any]] = []
        audio = message.get("audio") if isinstance(message.get("audio"), Mapping) else None
        text = (audio or {}).get("transcript") or message.get("content") or ""
        calls = list(message.get("tool_calls") or ())
        if text or not calls:
            data = ""
            if modality == "audio":
                data = (audio or {}).get("data") or base64.b64encode(
                    synthesize_pcm16(split_pieces(text))
                ).decode("ascii")
            item_units, item = b.message_item(
                _short_id("item", base, 0), 0, modality, text, data, split_pieces(text)
            )
            units += item_units
            output.append(item)
        for call in calls:
            out = len(output)
            item_units, item = b.call_item(
                _short_id("item", base, out), out, to_dict(call, TOOL_CALL, "message.tool_calls[]")
            )
            units += item_units
            output.append(item)
        steps = group_units(units, self.chunk_tokens, _merge)
        streamed = sum(t for step in steps for _, t in step)

        usage_in = to_dict(full.get("usage") or {}, USAGE, "full_response.usage")
        input_tokens = usage_in.get("prompt_tokens", context.prompt_tokens)
        cached = (usage_in.get("prompt_tokens_details") or {}).get(
            "cached_tokens", context.cached_tokens
        )
        status, details = "completed", None
        if finish_reason == "length":
            status, details = "incomplete", {"type": "incomplete", "reason": "max_output_tokens"}
        response = {
            "object": "realtime.response",
            "id": b.response_id,
            "status": "in_progress",
            "status_details": None,
            "output": [],
            "conversation_id": _short_id("conv", base),
            "output_modalities": [modality],
            "max_output_tokens": "inf",
            "usage": None,
            "metadata": None,
        }
        done_response = {
            **response,
            "status": status,
            "status_details": details,
            "output": output,
            "usage": {
                "total_tokens": input_tokens + streamed,
                "input_tokens": input_tokens,
                "output_tokens": streamed,
                "input_token_details": {
                    "cached_tokens": cached,
                    "text_tokens": input_tokens,
                    "audio_tokens": 0,
                },
                "output_token_details": {
                    "text_tokens": streamed if modality == "text" else 0,
                    "audio_tokens": streamed if modality == "audio" else 0,
                },
            },
        }
        steps[-1].append((b.ev("response.done", response=done_response), 0))

        total = 1 + sum(len(step) for step in steps)
        pacer = make_pacer(context, self.latency_manager, streamed)
        event_base = _short_id("event", base)
        seq = 0

        def chunk(event: Delta, tokens: int) -> StreamChunk:
            event["event_id"] = f"{event_base}{seq:05d}"
            return StreamChunk(
                chunk_id=f"{context.stream_id}-{seq}",
                sequence_number=seq,
                data=event,
                chunk_type=event["type"],
                token_count=tokens,
                is_first=seq == 0,
                is_last=seq == total - 1,
            )

        yield chunk(b.ev("response.created", response=response), 0)
        seq += 1
        token = 0
        for step in steps:
            step_tokens = sum(t for _, t in step)
            await pacer.wait(max(0, token + step_tokens - 1))
            token += step_tokens
            for event, tokens in step:
                yield chunk(event, tokens)
                seq += 1
