"""The incremental SSE parser: framing, chunking, line endings, UTF-8 and JSON payloads."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from workload.bench.sse import MalformedEvent, SSEEvent, SSEParser, format_event

pytestmark = pytest.mark.unit


def parse_chunks(chunks: list[bytes]) -> list[SSEEvent]:
    parser = SSEParser()
    events: list[SSEEvent] = []
    for chunk in chunks:
        events.extend(parser.feed(chunk))
    return events


def cut(data: bytes, points: list[int], keep_empty: bool = False) -> list[bytes]:
    """``data`` cut at the given offsets (a repeated offset gives an empty piece when kept)."""
    bounds = [0, *sorted(points), len(data)]
    return [data[a:b] for a, b in zip(bounds, bounds[1:]) if keep_empty or b > a]


# A realistic stream: meta, a keep-alive, two tokens (one with a 2-byte and a 4-byte character),
# a multi-line data event without an event name, then done.
STREAM_LF = (
    'event: meta\ndata: {"request_id":"r-1","k":4}\n\n'
    ": ping\n\n"
    'event: token\ndata: {"text":"h\u00e9"}\n\n'
    'event: token\ndata: {"text":"\U0001F600!"}\n\n'
    "data: line one\ndata: line two\n\n"
    'event: done\ndata: {"token_count":2}\n\n'
)
EXPECTED = [
    SSEEvent("meta", '{"request_id":"r-1","k":4}'),
    SSEEvent("token", '{"text":"h\u00e9"}'),
    SSEEvent("token", '{"text":"\U0001F600!"}'),
    SSEEvent("message", "line one\nline two"),
    SSEEvent("done", '{"token_count":2}'),
]


@pytest.mark.parametrize("eol", ["\n", "\r\n", "\r"], ids=["LF", "CRLF", "CR"])
def test_whole_stream_in_one_chunk(eol):
    data = STREAM_LF.replace("\n", eol).encode()
    assert parse_chunks([data]) == EXPECTED


@pytest.mark.parametrize("eol", ["\n", "\r\n", "\r"], ids=["LF", "CRLF", "CR"])
def test_split_into_two_chunks_at_every_byte_boundary(eol):
    data = STREAM_LF.replace("\n", eol).encode()
    for i in range(len(data) + 1):
        assert parse_chunks([data[:i], data[i:]]) == EXPECTED, f"split at byte {i}"


@pytest.mark.parametrize("eol", ["\n", "\r\n", "\r"], ids=["LF", "CRLF", "CR"])
def test_one_byte_at_a_time(eol):
    data = STREAM_LF.replace("\n", eol).encode()
    assert parse_chunks([data[i:i + 1] for i in range(len(data))]) == EXPECTED


def test_events_are_yielded_as_soon_as_their_blank_line_arrives():
    parser = SSEParser()
    assert list(parser.feed(b'event: token\ndata: {"text":"a"}\n')) == []  # no blank line yet
    assert list(parser.feed(b"\n")) == [SSEEvent("token", '{"text":"a"}')]
    assert list(parser.feed(b"event: done\nda")) == []
    assert list(parser.feed(b'ta: {}\n\n')) == [SSEEvent("done", "{}")]


def test_several_events_in_one_chunk():
    chunk = b"event: a\ndata: 1\n\nevent: b\ndata: 2\n\nevent: c\ndata: 3\n\n"
    assert parse_chunks([chunk]) == [SSEEvent("a", "1"), SSEEvent("b", "2"), SSEEvent("c", "3")]


def test_crlf_split_between_two_chunks_is_one_line_end():
    # "data: x\r" | "\n\r\n": the LF completes the CRLF; it must not count as a blank line.
    parser = SSEParser()
    assert list(parser.feed(b"event: token\r\ndata: x\r")) == []
    assert list(parser.feed(b"\n")) == []  # still only the end of the data line
    assert list(parser.feed(b"\r\n")) == [SSEEvent("token", "x")]


def test_crlf_split_right_before_the_next_field():
    # "event: a\r" | "\ndata: 1\r\n\r\n" must be one event "a" with data "1".
    assert parse_chunks([b"event: a\r", b"\ndata: 1\r\n\r\n"]) == [SSEEvent("a", "1")]


def test_empty_chunk_between_cr_and_lf_does_not_change_the_result():
    # Same bytes as test_crlf_split_right_before_the_next_field, with an empty read in between.
    assert parse_chunks([b"event: a\r", b"", b"\ndata: 1\r\n\r\n"]) == [SSEEvent("a", "1")]


def test_empty_chunks_anywhere_change_nothing():
    data = STREAM_LF.replace("\n", "\r\n").encode()
    chunks = []
    for i in range(len(data)):
        chunks += [b"", data[i:i + 1]]
    assert parse_chunks([*chunks, b""]) == EXPECTED


def test_cr_only_line_endings_then_lf_in_the_next_event_is_not_swallowed():
    # A lone CR followed (in the next chunk) by a non-LF character must end the line normally.
    assert parse_chunks([b"data: 1\r", b"\rdata: 2\r\r"]) == [SSEEvent("message", "1"), SSEEvent("message", "2")]


def test_multibyte_utf8_split_inside_a_character():
    text = 'event: token\ndata: {"text":"\u20ac\U0001F600"}\n\n'
    data = text.encode()
    euro = data.index("\u20ac".encode())
    emoji = data.index("\U0001F600".encode())
    # cut inside the 3-byte euro sign and twice inside the 4-byte emoji
    chunks = cut(data, [euro + 1, euro + 2, emoji + 1, emoji + 3])
    assert len(chunks) == 5
    events = parse_chunks(chunks)
    assert events == [SSEEvent("token", '{"text":"\u20ac\U0001F600"}')]
    assert events[0].json() == {"text": "\u20ac\U0001F600"}


def test_invalid_utf8_raises_unicode_decode_error():
    # The load generator records this as a malformed event; the parser must not hide it.
    with pytest.raises(UnicodeDecodeError):
        parse_chunks([b"data: \xff\xfe\n\n"])


def test_comments_and_keep_alives_yield_nothing():
    assert parse_chunks([b": ping\n\n", b":\n", b": keep-alive\r\n\r\n"]) == []


def test_comment_inside_an_event_is_ignored():
    assert parse_chunks([b"event: token\n: ping\ndata: x\n\n"]) == [SSEEvent("token", "x")]


def test_event_without_event_field_defaults_to_message():
    assert parse_chunks([b"data: hello\n\n"]) == [SSEEvent("message", "hello")]


def test_event_name_does_not_leak_into_the_next_event():
    events = parse_chunks([b"event: token\ndata: 1\n\ndata: 2\n\n"])
    assert events == [SSEEvent("token", "1"), SSEEvent("message", "2")]


def test_multi_line_data_is_joined_with_newlines():
    events = parse_chunks([b"event: done\ndata: {\ndata:   \"a\": 1\ndata: }\n\n"])
    assert events == [SSEEvent("done", '{\n  "a": 1\n}')]
    assert events[0].json() == {"a": 1}


def test_only_one_space_after_the_colon_is_stripped():
    events = parse_chunks([b"event:token\ndata:x\n\ndata:  two spaces\n\n"])
    assert events == [SSEEvent("token", "x"), SSEEvent("message", " two spaces")]


def test_field_without_colon_and_empty_data():
    # "data" with no colon is the field "data" with an empty value; "data:" likewise.
    assert parse_chunks([b"data\n\n", b"data:\n\n"]) == [SSEEvent("message", ""), SSEEvent("message", "")]


def test_id_field_and_unknown_fields():
    events = parse_chunks([b"id: 42\nretry: 1000\nfoo: bar\nevent: token\ndata: x\n\n"])
    assert events == [SSEEvent("token", "x", id="42")]


def test_blank_lines_without_a_pending_event_yield_nothing():
    assert parse_chunks([b"\n\n\r\n\r\r"]) == []


def test_incomplete_trailing_event_is_not_yielded():
    # A stream cut before the blank line: the caller must see no `done` (stream_incomplete).
    assert parse_chunks([b'event: done\ndata: {"token_count":3}\n']) == []


def test_event_block_without_data_is_not_dispatched():
    # WHATWG: a block whose data buffer is empty is dropped, and its event name does not leak on
    assert parse_chunks([b"event: heartbeat\n\n"]) == []
    assert parse_chunks([b"event: heartbeat\n\ndata: x\n\n"]) == [SSEEvent("message", "x")]


# --------------------------------------------------------------------------- format_event / json


def test_format_event_frames_compact_json():
    assert format_event("token", {"text": "hi"}) == b'event: token\ndata: {"text":"hi"}\n\n'


def test_format_event_round_trips_through_the_parser():
    data = {"text": "caf\u00e9 \U0001F600", "n": [1, 2], "nested": {"x": None}}
    events = parse_chunks([format_event("meta", data)])
    assert [e.event for e in events] == ["meta"]
    assert events[0].json() == data


def test_json_of_an_object():
    assert SSEEvent("done", '{"token_count": 5}').json() == {"token_count": 5}


@pytest.mark.parametrize("data", ["not json", "", "{", "{'a': 1}"])
def test_json_raises_malformed_event_for_non_json(data):
    with pytest.raises(MalformedEvent, match="'token' event data is not JSON"):
        SSEEvent("token", data).json()


@pytest.mark.parametrize("data", ["[1, 2]", '"text"', "3", "null", "true"])
def test_json_raises_malformed_event_for_non_objects(data):
    with pytest.raises(MalformedEvent, match="'done' event data is not a JSON object"):
        SSEEvent("done", data).json()


def test_malformed_event_is_a_value_error():
    assert issubclass(MalformedEvent, ValueError)


# --------------------------------------------------------------------------- property test

EVENT_NAMES = ["message", "meta", "token", "done", "error"]
json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-10**6, 10**6), st.text(max_size=8),
    st.floats(allow_nan=False, allow_infinity=False, width=32),
)
json_dicts = st.dictionaries(st.text(max_size=6), st.one_of(json_scalars, st.lists(json_scalars, max_size=3)),
                             max_size=4)


@st.composite
def framed_streams(draw):
    """(bytes of a framed stream, the events it holds, in order)."""
    eol = draw(st.sampled_from(["\n", "\r\n", "\r"]))
    n = draw(st.integers(0, 6))
    text = ""
    expected = []
    for _ in range(n):
        if draw(st.booleans()):  # keep-alives between events, in both usual forms
            text += draw(st.sampled_from([": ping" + eol, ": ping" + eol + eol, ":" + eol]))
        name = draw(st.sampled_from(EVENT_NAMES))
        payload = draw(json_dicts)
        pretty = draw(st.booleans())
        data = json.dumps(payload, ensure_ascii=False, indent=1 if pretty else None)
        lines = []
        if name != "message" or draw(st.booleans()):
            lines.append(("event: " if draw(st.booleans()) else "event:") + name)
        lines += ["data: " + part for part in data.split("\n")]  # multi-line data when pretty
        text += eol.join(lines) + eol + eol
        expected.append(SSEEvent(name, data))
    return text.encode("utf-8"), expected


@settings(max_examples=200, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(stream=framed_streams(), data=st.data())
def test_property_any_chunking_yields_the_original_events(stream, data):
    raw, expected = stream
    points = data.draw(st.lists(st.integers(0, len(raw)), max_size=12), label="cut points")
    keep_empty = data.draw(st.booleans(), label="keep empty reads")
    events = parse_chunks(cut(raw, points, keep_empty))
    assert events == expected
    for event, original in zip(events, expected):
        assert event.json() == json.loads(original.data)
