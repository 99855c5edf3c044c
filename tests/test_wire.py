"""The SSE and NDJSON decoders follow the spec whatever the chunk boundaries."""

from __future__ import annotations

import pytest

from forge._wire import NDJSONDecoder, SSEDecoder

SSE = (
    b"event: message_start\r\ndata: {\"a\":1}\r\n\r\n"
    b": keep-alive comment\n"
    b"data: line one\ndata:line two\n\n"
    b"id: 7\nretry: 1500\ndata: \xe2\x82\xac euro\r\r"
    b"event: ping\n\n"
    b"data: [DONE]\n\n"
)


def _decode(body: bytes, step: int) -> list[tuple[str, str, str | None]]:
    d = SSEDecoder()
    out = []
    for i in range(0, len(body), step):
        out += d.feed(body[i : i + step])
    out += d.flush()
    return [(e.event, e.data, e.id) for e in out]


@pytest.mark.parametrize("step", [1, 2, 3, 7, 64, 10_000])
def test_sse_any_chunking(step: int) -> None:
    assert _decode(SSE, step) == [
        ("message_start", '{"a":1}', None),
        ("", "line one\nline two", None),
        ("", "\u20ac euro", "7"),
        ("", "[DONE]", "7"),
    ]


def test_sse_event_without_data_is_dropped_and_name_reset() -> None:
    d = SSEDecoder()
    assert d.feed(b"event: ping\n\ndata: x\n\n")[0].event == ""


def test_sse_field_without_colon_and_single_space_rule() -> None:
    d = SSEDecoder()
    events = d.feed(b"data\ndata:  two spaces\n\n")
    assert events[0].data == "\n two spaces"


def test_sse_final_event_without_blank_line_is_kept() -> None:
    d = SSEDecoder()
    assert d.feed(b"data: tail") == []
    assert [e.data for e in d.flush()] == ["tail"]


def test_sse_retry_must_be_digits() -> None:
    d = SSEDecoder()
    assert d.feed(b"retry: soon\ndata: x\n\n")[0].retry is None


@pytest.mark.parametrize("step", [1, 5, 1000])
def test_ndjson_any_chunking(step: int) -> None:
    body = b'{"a": 1}\n\n{"b": "\xc3\xa9"}\r\n{"c": 3}'
    d = NDJSONDecoder()
    out: list[object] = []
    for i in range(0, len(body), step):
        out += d.feed(body[i : i + step])
    out += d.flush()
    assert out == [{"a": 1}, {"b": "\u00e9"}, {"c": 3}]
