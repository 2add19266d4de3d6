"""More real clients of the Responses API against the whole pipeline (single Redis and
cluster): litellm's ``responses``, langchain-openai with ``use_responses_api=True``, and
openai-node's ``runTools`` agent loop (chat completions), which must end.

litellm and langchain-openai are optional here: a test skips, naming the package, when it is
not installed, except under ``CI=true``, where a missing package fails. The node test installs
``openai`` (``OPENAI_NODE``) with npm into a cache directory once, and skips with the reason
when node, npm or the install is not available.
"""

from __future__ import annotations

import importlib
import json
import os
import shutil
import subprocess
from pathlib import Path
from types import ModuleType

import pytest
from tests.support.stack import Stack

pytestmark = [pytest.mark.redis, pytest.mark.e2e]

MODEL = "gpt-4o"
OPENAI_NODE = "openai@4.104.0"
_NODE_DIR = Path.home() / ".cache" / "fakeai-streams" / "node-openai"
_SCRIPT = Path(__file__).parent / "node" / "run_tools.mjs"


def _need(module: str, package: str) -> ModuleType:
    """Import ``module``; skip naming ``package`` when it is missing (fail under CI)."""
    try:
        return importlib.import_module(module)
    except ImportError:
        if os.environ.get("CI") == "true":
            raise
        pytest.skip(f"{package} is not installed (pip install {package})")


# litellm's own usage model warns when it serializes the usage it converted itself.
@pytest.mark.filterwarnings("ignore:Pydantic serializer warnings:UserWarning")
def test_litellm_responses_streams_text(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no fetch from the internet
    litellm = _need("litellm", "litellm")
    events = list(
        litellm.responses(
            model=f"openai/{MODEL}",
            input="Hello",
            stream=True,
            max_output_tokens=20,
            api_base=f"{stack.url}/v1",
            api_key="x",
        )
    )
    types = [str(getattr(e.type, "value", e.type)) for e in events]  # litellm's str enum
    assert types[:2] == ["response.created", "response.in_progress"]
    deltas = [
        e.delta for e, t in zip(events, types, strict=True) if t == "response.output_text.delta"
    ]
    assert len(deltas) == 20
    final = events[-1].response
    assert final.status == "incomplete"
    assert "".join(deltas) == final.output[0].content[0].text


def test_langchain_openai_responses_api_streams_text(stack: Stack) -> None:
    langchain_openai = _need("langchain_openai", "langchain-openai")
    llm = langchain_openai.ChatOpenAI(
        model=MODEL,
        base_url=f"{stack.url}/v1",
        api_key="x",
        use_responses_api=True,
        max_retries=0,
    )
    chunks = list(llm.stream("Tell me about durable streams."))
    assert len(chunks) > 3  # streamed, not one message
    text = "".join(c.text for c in chunks)
    assert text
    whole = chunks[0]
    for c in chunks[1:]:
        whole = whole + c
    assert whole.response_metadata["id"].startswith("resp_")
    assert whole.response_metadata["status"] == "completed"
    assert whole.text == text


def _node_openai() -> Path:
    """A directory with ``openai`` (node) installed and the runTools script; skips when
    node or npm is missing or the install fails."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("node and npm are needed for openai-node")
    marker = _NODE_DIR / "node_modules" / "openai" / "package.json"
    if not marker.exists():
        _NODE_DIR.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(
            ["npm", "install", "--no-audit", "--no-fund", "--prefix", str(_NODE_DIR), OPENAI_NODE],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if done.returncode != 0 or not marker.exists():
            pytest.skip(f"npm install {OPENAI_NODE} failed: {done.stderr.strip()[-300:]}")
    shutil.copy(_SCRIPT, _NODE_DIR / _SCRIPT.name)  # ESM resolves "openai" beside the script
    return _NODE_DIR


def test_openai_node_run_tools_ends(stack: Stack) -> None:
    where = _node_openai()
    done = subprocess.run(
        ["node", str(where / _SCRIPT.name), f"{stack.url}/v1"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["calls"] == 1  # the tool once, then its result is answered in text
    assert result["messages"] == 4  # user, assistant tool call, tool result, assistant text
    assert isinstance(result["content"], str)
    assert result["content"]
