"""A reasoning model's Responses output counts each token once: the reasoning is the Responses
builder's own, and the chat builder beneath it must not reason a second time."""

from __future__ import annotations

import pytest

from fakeai.content.responses_api import build_response

RID = "resp_0123456789abcdef0123456789abcdef012"


@pytest.mark.parametrize("model", ["o3", "o4-mini", "deepseek-r1"])
@pytest.mark.parametrize("cap", [40, 200, None])
def test_events_add_up_to_the_usage_of_a_reasoning_model(model: str, cap: int | None) -> None:
    body = {"input": "hi", **({"max_output_tokens": cap} if cap else {})}
    built = build_response(
        body, response_id=RID, created_at=1, seed=7, model=model, reasoning_model=True
    )
    usage = built.response["usage"]
    assert sum(built.tokens) == usage["output_tokens"]
    if cap is not None:
        assert usage["output_tokens"] <= cap
    message = next(o for o in built.response["output"] if o["type"] == "message")
    assert "reasoning_content" not in message
