"""Property-based tests of forge/_wire.py: the same bytes give the same events however they are cut.

The expected events come from a model of the WHATWG ``text/event-stream`` rules
(html.spec.whatwg.org/multipage/server-sent-events.html#event-stream-interpretation),
not from the decoder: data lines joined with ``\\n``, one leading space dropped,
comments and unknown fields ignored, ``id`` and ``retry`` carried, a BOM at the
start dropped, an event dispatched on a blank line and never without data.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from forge._wire import (
    GeminiSSEDecoder,
    JSONArrayDecoder,
    NDJSONDecoder,
    SSEDataDecoder,
    SSEDecoder,
    SSEPairDecoder,
    loads,
)

# Field values: any text without line ends, including ':' and non-ASCII (split across reads).
VALUE = st.text(st.characters(blacklist_characters="\r\n", blacklist_categories=("Cs",)), max_size=12)
NAME = st.text(st.characters(blacklist_characters="\r\n:", blacklist_categories=("Cs",)), min_size=1, max_size=8)
ENDINGS = st.sampled_from(["\n", "\r\n", "\r"])


@dataclass
class Block:
    """One event as written: its lines, and what a reader must see for it."""

    event: str | None
    data: list[str]
    id: str | None
    retry: int | None
    comments: list[str]
    unknown: list[tuple[str, str]]
    spaced: bool  # "data: x" rather than "data:x"


BLOCK = st.builds(
    Block,
    event=st.none() | NAME,
    data=st.lists(VALUE, max_size=3),
    id=st.none() | VALUE.filter(lambda v: "\x00" not in v),
    retry=st.none() | st.integers(0, 10_000),
    comments=st.lists(VALUE, max_size=2),
    unknown=st.lists(st.tuples(st.sampled_from(["foo", "Data", "events", "ids"]), VALUE), max_size=1),
    spaced=st.booleans(),
)


def render(blocks: list[Block], end: str, bom: bool, trailing_blank: bool) -> bytes:
    lines: list[str] = []
    for b in blocks:
        lines += [f":{c}" for c in b.comments]
        if b.event is not None:
            spaced = b.spaced or b.event.startswith(" ")
            lines.append(f"event: {b.event}" if spaced else f"event:{b.event}")
        if b.id is not None:
            lines.append(f"id: {b.id}")
        if b.retry is not None:
            lines.append(f"retry: {b.retry}")
        lines += [f"{name}: {value}" for name, value in b.unknown]
        for d in b.data:
            if d == "" and not b.spaced:
                lines.append("data")  # a field without a colon has an empty value
            else:
                lines.append(f"data: {d}" if b.spaced or d.startswith(" ") else f"data:{d}")
        lines.append("")
    text = end.join(lines) + end
    if not trailing_blank and blocks and text.endswith(end + end):
        text = text[: -len(end)]  # the last event ends the stream without its blank line
    return (b"\xef\xbb\xbf" if bom else b"") + text.encode()


def expected(blocks: list[Block]) -> list[tuple[str, str, str | None, int | None]]:
    out = []
    last_id: str | None = None
    retry: int | None = None
    for b in blocks:
        last_id = b.id if b.id is not None else last_id
        retry = b.retry if b.retry is not None else retry
        if b.data:
            out.append((b.event or "", "\n".join(b.data), last_id, retry))
    return out


def cut(body: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(body) + 1) for c in cuts})
    pieces, start = [], 0
    for p in points:
        pieces.append(body[start:p])
        start = p
    pieces.append(body[start:])
    return pieces


def decode_sse(pieces: list[bytes]) -> list[tuple[str, str, str | None, int | None]]:
    d = SSEDecoder()
    events = [e for piece in pieces for e in d.feed(piece)] + d.flush()
    return [(e.event, e.data, e.id, e.retry) for e in events]


@settings(max_examples=300, deadline=None)
@given(
    blocks=st.lists(BLOCK, max_size=6),
    end=ENDINGS,
    bom=st.booleans(),
    trailing_blank=st.booleans(),
    cuts=st.lists(st.integers(0, 10_000), max_size=12),
)
def test_sse_events_do_not_depend_on_reads_or_line_ends(
    blocks: list[Block], end: str, bom: bool, trailing_blank: bool, cuts: list[int]
) -> None:
    body = render(blocks, end, bom, trailing_blank)
    want = expected(blocks)
    assert decode_sse(cut(body, cuts)) == want
    d = SSEDataDecoder()  # the same events' data alone
    assert [x for piece in cut(body, cuts) for x in d.feed(piece)] + d.flush() == [e[1] for e in want]
    p = SSEPairDecoder()  # and as (event, data) pairs
    assert [x for piece in cut(body, cuts) for x in p.feed(piece)] + p.flush() == [(e[0], e[1]) for e in want]


@settings(max_examples=100, deadline=None)
@given(blocks=st.lists(BLOCK, max_size=6), end=ENDINGS, cuts=st.lists(st.integers(0, 10_000), max_size=12))
def test_sse_one_byte_per_read_and_one_read_agree(blocks: list[Block], end: str, cuts: list[int]) -> None:
    body = render(blocks, end, False, True)
    whole = decode_sse([body])
    assert decode_sse([body[i : i + 1] for i in range(len(body))]) == whole
    assert decode_sse(cut(body, cuts)) == whole


JSON_VALUE = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=6),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=8,
)
OBJECT = st.dictionaries(st.text(max_size=5), JSON_VALUE, max_size=4)


@settings(max_examples=200, deadline=None)
@given(
    objects=st.lists(OBJECT, max_size=5),
    end=ENDINGS,
    comments=st.booleans(),
    cuts=st.lists(st.integers(0, 10_000), max_size=12),
)
def test_gemini_sse_gives_the_objects_however_cut(
    objects: list[dict[str, Any]], end: str, comments: bool, cuts: list[int]
) -> None:
    lines: list[str] = []
    for obj in objects:
        if comments:
            lines += [": keep-alive", "retry: 100", "id: 3"]
        lines += [f"data: {json.dumps(obj, ensure_ascii=False)}", ""]
    body = (end.join(lines) + end).encode()
    for texts in (False, True):  # texts=True: each object's JSON text, decoded by the caller
        d = GeminiSSEDecoder(texts=texts)
        got = [o for piece in cut(body, cuts) for o in d.feed(piece)] + d.flush()
        assert [loads(o) for o in got] == objects if texts else got == objects


@settings(max_examples=200, deadline=None)
@given(
    objects=st.lists(OBJECT, max_size=5),
    sep=st.sampled_from([",", "\n,\r\n", ",\n", " , "]),
    cuts=st.lists(st.integers(0, 10_000), max_size=12),
)
def test_gemini_json_array_gives_the_objects_however_cut(
    objects: list[dict[str, Any]], sep: str, cuts: list[int]
) -> None:
    body = ("[" + sep.join(json.dumps(o, ensure_ascii=False) for o in objects) + "]").encode()
    d = JSONArrayDecoder()
    got = [o for piece in cut(body, cuts) for o in d.feed(piece)] + d.flush()
    assert got == objects


@settings(max_examples=200, deadline=None)
@given(objects=st.lists(OBJECT, max_size=5), end=ENDINGS, cuts=st.lists(st.integers(0, 10_000), max_size=12))
def test_ndjson_gives_the_objects_however_cut(objects: list[dict[str, Any]], end: str, cuts: list[int]) -> None:
    body = "".join(json.dumps(o, ensure_ascii=False) + end for o in objects).encode()
    for texts in (False, True):  # texts=True: each line's text, decoded by the caller
        d = NDJSONDecoder(texts=texts)
        got = [o for piece in cut(body, cuts) for o in d.feed(piece)] + d.flush()
        assert [loads(o) for o in got] == objects if texts else got == objects  # type: ignore[arg-type]


@settings(max_examples=300, deadline=None)
@given(
    value=JSON_VALUE,
    before=st.sampled_from(["", " ", "\t", "\n", "\ufeff"]),
    after=st.sampled_from(["", " ", "\r\n", "x", "}", ",1"]),
)
def test_loads_is_json_loads(value: object, before: str, after: str) -> None:
    text = before + json.dumps(value) + after
    try:
        want: object = json.loads(text)
    except ValueError as exc:
        want = (type(exc), str(exc))
    try:
        got: object = loads(text)
    except ValueError as exc:
        got = (type(exc), str(exc))
    assert got == want
