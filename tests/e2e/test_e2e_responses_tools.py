"""Tools through the whole pipeline: a tool result is answered in text (agent loops end), on
chat and on the Responses API, and the OpenAI Agents SDK runs an agent to completion."""

from __future__ import annotations

import asyncio
import json

import openai
import pytest
from tests.support.stack import Stack

pytestmark = [pytest.mark.redis, pytest.mark.e2e]

MODEL = "gpt-4o"
CHAT_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}
TOOL = {
    "type": "function",
    "name": "get_weather",
    "parameters": CHAT_TOOL["function"]["parameters"],
}  # type: ignore[index]


def _client(stack: Stack) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{stack.url}/v1", api_key="x", max_retries=0, timeout=20)


def test_chat_tool_call_then_text(stack: Stack) -> None:
    messages: list[dict[str, object]] = [{"role": "user", "content": "Weather in Paris?"}]
    with _client(stack) as client:
        first = client.chat.completions.create(
            model=MODEL,
            messages=messages,  # type: ignore[arg-type]
            tools=[CHAT_TOOL],  # type: ignore[list-item]
        )
        call = first.choices[0].message.tool_calls[0]  # type: ignore[index]
        assert first.choices[0].finish_reason == "tool_calls"
        messages += [
            first.choices[0].message.model_dump(exclude_none=True),
            {"role": "tool", "tool_call_id": call.id, "content": "sunny"},
        ]
        answer = client.chat.completions.create(
            model=MODEL,
            messages=messages,  # type: ignore[arg-type]
            tools=[CHAT_TOOL],  # type: ignore[list-item]
        )
        forced = client.chat.completions.create(
            model=MODEL,
            messages=messages,  # type: ignore[arg-type]
            tools=[CHAT_TOOL],  # type: ignore[list-item]
            tool_choice="required",
        )
    assert answer.choices[0].finish_reason == "stop"
    assert answer.choices[0].message.content
    assert not answer.choices[0].message.tool_calls
    assert forced.choices[0].finish_reason == "tool_calls"


def test_responses_function_call_then_text(stack: Stack) -> None:
    with _client(stack) as client:
        first = client.responses.create(
            model=MODEL,
            input="Weather in Paris?",
            tools=[TOOL],  # type: ignore[list-item]
        )
        (call,) = first.output
        assert call.type == "function_call"
        assert json.loads(call.arguments)["city"]
        events = list(
            client.responses.create(
                model=MODEL,
                input="Weather in Paris?",
                tools=[TOOL],
                stream=True,  # type: ignore[list-item]
            )
        )
        answer = client.responses.create(
            model=MODEL,
            input=[
                {"role": "user", "content": "Weather in Paris?"},
                call.model_dump(exclude_none=True),  # type: ignore[list-item]
                {"type": "function_call_output", "call_id": call.call_id, "output": "sunny"},
            ],
            tools=[TOOL],  # type: ignore[list-item]
        )
    types = [e.type for e in events]
    assert "response.function_call_arguments.delta" in types
    done = next(e for e in events if e.type == "response.function_call_arguments.done")
    deltas = [e.delta for e in events if e.type == "response.function_call_arguments.delta"]  # type: ignore[union-attr]
    assert "".join(deltas) == done.arguments  # type: ignore[union-attr]
    assert answer.status == "completed"
    assert [o.type for o in answer.output] == ["message"]
    assert answer.output_text


def test_agents_sdk_runs_to_completion(stack: Stack) -> None:
    agents = pytest.importorskip("agents")
    calls: list[str] = []

    @agents.function_tool
    def get_weather(city: str) -> str:
        """The weather in a city."""
        calls.append(city)
        return f"sunny in {city}"

    async def run() -> object:
        agents.set_tracing_disabled(True)
        client = openai.AsyncOpenAI(base_url=f"{stack.url}/v1", api_key="x", max_retries=0)
        try:
            agent = agents.Agent(
                name="weather",
                instructions="Answer with the weather.",
                tools=[get_weather],
                model=agents.OpenAIResponsesModel(model=MODEL, openai_client=client),
            )
            result = await agents.Runner.run(agent, "Weather in Paris?", max_turns=4)
            return result.final_output
        finally:
            await client.close()

    final = asyncio.run(run())
    assert isinstance(final, str)
    assert final
    assert len(calls) == 1


def test_previous_response_id_chain(stack: Stack) -> None:
    with _client(stack) as client:
        first = client.responses.create(model=MODEL, input="My name is Ada.")
        second = client.responses.create(
            model=MODEL, input="What is my name?", previous_response_id=first.id
        )
        third = client.responses.create(
            model=MODEL, input="And again?", previous_response_id=second.id
        )
        with pytest.raises(openai.BadRequestError) as unknown:
            client.responses.create(model=MODEL, input="x", previous_response_id="resp_" + "0" * 35)
    assert second.previous_response_id == first.id
    assert third.status == "completed"
    # The history counts as input: each turn's prompt is longer than the one before.
    assert first.usage is not None
    assert second.usage is not None
    assert third.usage is not None
    assert first.usage.input_tokens < second.usage.input_tokens < third.usage.input_tokens
    assert unknown.value.body["param"] == "previous_response_id"  # type: ignore[index]


def test_parse_with_a_pydantic_model(stack: Stack) -> None:
    from pydantic import BaseModel

    class Weather(BaseModel):
        city: str
        celsius: int
        sunny: bool

    with _client(stack) as client:
        parsed = client.responses.parse(model=MODEL, input="Weather?", text_format=Weather)
    assert isinstance(parsed.output_parsed, Weather)


def test_reasoning_model_streams_its_summary(stack: Stack) -> None:
    with _client(stack) as client:
        events = list(
            client.responses.create(
                model="o3",
                input="Think first.",
                reasoning={"effort": "low", "summary": "auto"},
                stream=True,
            )
        )
        hidden = client.responses.create(model="o3", input="Think first.")
    final = events[-1].response  # type: ignore[union-attr]
    summary = "".join(
        e.delta
        for e in events
        if e.type == "response.reasoning_summary_text.delta"  # type: ignore[union-attr]
    )
    assert [o.type for o in final.output] == ["reasoning", "message"]
    assert summary
    assert final.output[0].summary[0].text == summary  # type: ignore[union-attr]
    assert final.usage.output_tokens_details.reasoning_tokens > 0
    assert hidden.usage is not None
    assert hidden.usage.output_tokens_details.reasoning_tokens > 0
    assert hidden.output[0].summary == []  # type: ignore[union-attr]
