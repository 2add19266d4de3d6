"""Wire formatters: exact bytes of SSE, JSON Lines and plain text output."""

from __future__ import annotations

import json

import pytest

from fakeai.streaming.base import ChunkFormatter, ErrorSeverity, StreamChunk, StreamError
from fakeai.streaming.sse import JSONLinesFormatter, PlainTextFormatter, SSEFormatter, chunk_text

CHAT = {
    "id": "chatcmpl-1",
    "object": "chat.completion.chunk",
    "created": 1,
    "model": "gpt-4o",
    "choices": [{"index": 0, "delta": {"content": "Hé"}, "finish_reason": None}],
}


def chunk(data: object, seq: int = 0) -> StreamChunk:
    return StreamChunk(chunk_id=f"c-{seq}", sequence_number=seq, data=data)


ERROR = StreamError(error_code="stream_timeout", message="Stream exceeded 1s timeout")


def test_sse_chunk_is_compact_json_without_event_line() -> None:
    out = SSEFormatter.format(chunk(CHAT))
    assert out == (
        'data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,'
        '"model":"gpt-4o","choices":[{"index":0,"delta":{"content":"Hé"},'
        '"finish_reason":null}]}\n\n'
    )
    assert "event:" not in out


def test_sse_id_and_retry_lines() -> None:
    out = SSEFormatter.format(chunk({"a": 1}), event_id="1700000000000-3", retry_ms=2000)
    assert out == 'id: 1700000000000-3\nretry: 2000\ndata: {"a":1}\n\n'


@pytest.mark.parametrize("bad", ["a\nb", "a\rb", "a\0b"])
def test_sse_rejects_event_id_with_line_break_or_nul(bad: str) -> None:
    with pytest.raises(ValueError, match="event_id"):
        SSEFormatter.format(chunk({}), event_id=bad)


def test_sse_rejects_negative_retry() -> None:
    with pytest.raises(ValueError, match="retry_ms"):
        SSEFormatter.format(chunk({}), retry_ms=-1)


def test_sse_str_data_single_and_multi_line() -> None:
    assert SSEFormatter.format(chunk("hello")) == "data: hello\n\n"
    # WHATWG: each line of a multi-line value is its own data: line (CRLF, CR, LF all split).
    assert SSEFormatter.format(chunk("a\nb\r\nc\rd")) == "data: a\ndata: b\ndata: c\ndata: d\n\n"


def test_sse_done_error_comment() -> None:
    assert SSEFormatter.format_done() == "data: [DONE]\n\n"
    assert SSEFormatter.format_error(ERROR) == (
        'data: {"error":{"message":"Stream exceeded 1s timeout","type":"stream_error",'
        '"param":null,"code":"stream_timeout"}}\n\n'
    )
    critical = StreamError("x", "boom", severity=ErrorSeverity.CRITICAL)
    body = json.loads(SSEFormatter.format_error(critical, event_id="9-0").split("data: ")[1])
    assert body["error"]["type"] == "server_error"
    assert SSEFormatter.format_error(critical, event_id="9-0").startswith("id: 9-0\n")
    assert SSEFormatter.format_comment("ping") == ": ping\n\n"


def test_sse_bytes_fast_path() -> None:
    assert SSEFormatter.format_bytes(b'{"a":1}') == b'data: {"a":1}\n\n'
    assert SSEFormatter.format_bytes(b'{"a":1}', event_id="5-1") == b'id: 5-1\ndata: {"a":1}\n\n'
    with pytest.raises(ValueError, match="single-line"):
        SSEFormatter.format_bytes(b'{"a":\n1}')


def test_sse_matches_bytes_path_for_same_payload() -> None:
    payload = json.dumps(CHAT, separators=(",", ":"), ensure_ascii=False).encode()
    assert SSEFormatter.format_bytes(payload) == SSEFormatter.format(chunk(CHAT)).encode()


def test_jsonl_lines() -> None:
    assert JSONLinesFormatter.format(chunk({"content": "Hi"}, seq=3)) == (
        '{"type":"data","sequence":3,"id":"c-3","data":{"content":"Hi"}}\n'
    )
    assert JSONLinesFormatter.format_done() == '{"type":"done"}\n'
    line = JSONLinesFormatter.format_error(ERROR)
    assert line.endswith("\n")
    assert line.count("\n") == 1
    assert json.loads(line) == {"type": "error", "error": ERROR.to_dict()}
    assert JSONLinesFormatter.format_bytes(b'{"content":"Hi"}', 3, "c-3") == (
        JSONLinesFormatter.format(chunk({"content": "Hi"}, seq=3)).encode()
    )


def test_plain_text() -> None:
    assert PlainTextFormatter.format(chunk(CHAT)) == "Hé"
    assert PlainTextFormatter.format(chunk({"choices": []})) == ""
    assert PlainTextFormatter.format_done() == ""
    assert PlainTextFormatter.format_error(ERROR) == "\n[error] Stream exceeded 1s timeout\n"


@pytest.mark.parametrize(
    ("data", "text"),
    [
        ("raw", "raw"),
        (None, ""),
        (42, ""),
        ({"choices": [{"index": 0, "delta": {"role": "assistant"}}]}, ""),
        (
            {
                "choices": [
                    {"index": 0, "delta": {"content": "a"}},
                    {"index": 1, "delta": {"content": "b"}},
                ]
            },
            "ab",
        ),
        ({"object": "text_completion", "choices": [{"text": " world", "index": 0}]}, " world"),
        ({"choices": [{"delta": {"audio": {"id": "audio_1", "transcript": "Hi"}}}]}, "Hi"),
        ({"choices": [{"delta": {"audio": {"id": "audio_1", "data": "AAAA"}}}]}, ""),
        ({"type": "response.output_text.delta", "delta": "Hey"}, "Hey"),
        ({"type": "response.output_audio_transcript.delta", "delta": "yo"}, "yo"),
        ({"type": "response.output_audio.delta", "delta": "AAAA"}, ""),
        ({"type": "response.created", "response": {}}, ""),
        ({"content": "Hello"}, "Hello"),
        ({"text": "Hello"}, "Hello"),
        ({"choices": [{"delta": {"content": None, "tool_calls": []}}]}, ""),
    ],
)
def test_chunk_text(data: object, text: str) -> None:
    assert chunk_text(data) == text


@pytest.mark.parametrize(
    ("cls", "chunk_out", "done_out", "error_out"),
    [
        (
            SSEFormatter,
            'data: {"content":"x"}\n\n',
            "data: [DONE]\n\n",
            'data: {"error":{"message":"Stream exceeded 1s timeout","type":"stream_error",'
            '"param":null,"code":"stream_timeout"}}\n\n',
        ),
        (
            JSONLinesFormatter,
            '{"type":"data","sequence":0,"id":"c-0","data":{"content":"x"}}\n',
            '{"type":"done"}\n',
            json.dumps({"type": "error", "error": ERROR.to_dict()}, separators=(",", ":")) + "\n",
        ),
        (PlainTextFormatter, "x", "", "\n[error] Stream exceeded 1s timeout\n"),
    ],
)
def test_instances_are_chunk_formatters(
    cls: type[ChunkFormatter], chunk_out: str, done_out: str, error_out: str
) -> None:
    """The seed's code holds a formatter instance and calls it through the ChunkFormatter
    interface: each one's wire output, through an instance."""
    formatter: ChunkFormatter = cls()
    assert isinstance(formatter, ChunkFormatter)
    assert formatter.format(chunk({"content": "x"})) == chunk_out
    assert formatter.format_done() == done_out
    assert formatter.format_error(ERROR) == error_out


def test_pydantic_data_is_serialized() -> None:
    pydantic = pytest.importorskip("pydantic")

    class Delta(pydantic.BaseModel):  # type: ignore[misc,name-defined]
        content: str

    assert SSEFormatter.format(chunk({"delta": Delta(content="x")})) == (
        'data: {"delta":{"content":"x"}}\n\n'
    )
