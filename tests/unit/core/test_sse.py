"""The SSE parser yields the same events however the bytes are split."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from wlm.sse import SSEEvent, SSEParser, encode_comment, encode_event, plain_data

WIRE = Path(__file__).parents[2] / "fixtures" / "wire" / "extracted"
RECORDED = sorted(WIRE.glob("*.sse"))


def parse_all(chunks: list[bytes]) -> list[tuple[str | None, str | None, list[str]]]:
    parser = SSEParser()
    events = []
    for chunk in chunks:
        events.extend(parser.feed(chunk))
    events.extend(parser.finish())
    return [(e.event, e.data, e.comments) for e in events]


def split_at(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    pieces, last = [], 0
    for point in points:
        pieces.append(data[last:point])
        last = point
    pieces.append(data[last:])
    return pieces


def test_recorded_streams_parse_into_their_events() -> None:
    stream = (WIRE / "openrouter_stream_midstream_error.0.response.sse").read_bytes()
    events = parse_all([stream])
    comments = [e for e in events if e[1] is None]
    data = [e[1] for e in events if e[1] is not None]
    assert len(comments) == 17
    assert comments[0][2] == ["OPENROUTER PROCESSING"]
    assert data[-1] == "[DONE]"
    assert '"Token limit reached"' in data[-2]


def test_named_events_and_multiline_data() -> None:
    events = parse_all([b"event: ping\ndata: {}\n\nid: 7\ndata: a\ndata:b\n\n"])
    assert events == [("ping", "{}", []), (None, "a\nb", [])]


def test_crlf_cr_and_lf_line_ends_are_equivalent() -> None:
    lf = parse_all([b"data: x\n: note\ndata: y\n\nevent: e\ndata: z\n\n"])
    crlf = parse_all([b"data: x\r\n: note\r\ndata: y\r\n\r\nevent: e\r\ndata: z\r\n\r\n"])
    cr = parse_all([b"data: x\r: note\rdata: y\r\revent: e\rdata: z\r\r"])
    assert lf == crlf == cr == [(None, "x\ny", ["note"]), ("e", "z", [])]


def test_crlf_split_between_reads() -> None:
    assert parse_all([b"data: a\r", b"\n\r", b"\n"]) == [(None, "a", [])]


def test_unterminated_last_event_is_not_invented() -> None:
    assert parse_all([b"data: complete\n\ndata: cut off mid-li"]) == [(None, "complete", [])]


def test_raw_block_is_forwardable_as_is() -> None:
    parser = SSEParser()
    events = parser.feed(b'data: {"a": 1}\r\n\r\n')
    assert [e.raw for e in events] == [b'data: {"a": 1}\n\n']


def test_encoders_round_trip() -> None:
    encoded = encode_event('{"x":1}\nsecond', event="message_start") + encode_comment("loading m")
    assert parse_all([encoded]) == [
        ("message_start", '{"x":1}\nsecond', []),
        (None, None, ["loading m"]),
    ]


@given(
    index=st.integers(min_value=0, max_value=len(RECORDED) - 1),
    cuts=st.lists(st.integers(min_value=0, max_value=100_000), max_size=40),
    crlf=st.booleans(),
)
def test_any_split_of_a_recorded_stream_gives_the_same_events(
    index: int, cuts: list[int], crlf: bool
) -> None:
    data = RECORDED[index].read_bytes()
    if crlf:
        data = data.replace(b"\n", b"\r\n")
    assert parse_all(split_at(data, cuts)) == parse_all([data])


_field_text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n"), max_size=30
)


@given(
    events=st.lists(
        st.tuples(
            st.none() | st.from_regex(r"[a-z_]{1,12}", fullmatch=True),
            st.lists(_field_text, min_size=1, max_size=3),
        ),
        max_size=8,
    ),
    cuts=st.lists(st.integers(min_value=0, max_value=10_000), max_size=20),
)
def test_generated_streams_survive_any_split(
    events: list[tuple[str | None, list[str]]], cuts: list[int]
) -> None:
    data = b"".join(encode_event("\n".join(lines), event=name) for name, lines in events)
    expected = [(name, "\n".join(lines), []) for name, lines in events]
    assert parse_all(split_at(data, cuts)) == expected


@given(
    index=st.integers(min_value=0, max_value=len(RECORDED) - 1),
    cuts=st.lists(st.integers(min_value=0, max_value=100_000), max_size=10),
)
def test_data_bytes_fast_path_agrees_with_the_parsed_data(index: int, cuts: list[int]) -> None:
    parser = SSEParser()
    events = []
    for piece in split_at(RECORDED[index].read_bytes(), cuts):
        events.extend(parser.feed(piece))
    assert events
    for event in events:
        expected = None if event.data is None else event.data.encode()
        assert event.data_bytes() == expected


def test_data_bytes_handles_the_spec_edge_cases() -> None:
    parser = SSEParser()
    events = parser.feed(b"data:no-space\n\ndata:  two spaces\n\nevent: x\ndata: named\n\n: c\n\n")
    assert [e.data_bytes() for e in events] == [b"no-space", b" two spaces", b"named", None]


def test_plain_data_reads_one_data_line_after_an_event_line_without_parsing() -> None:
    assert plain_data(b'data: {"a":1}\n\n') == b'{"a":1}'
    assert plain_data(b'event: message_start\ndata: {"a":1}\n\n') == b'{"a":1}'
    assert plain_data(b"event: ping\ndata:{}\n\n") == b"{}"
    # Anything else is left to the full parser: two data lines, a comment, an id.
    assert plain_data(b"data: a\ndata: b\n\n") is None
    assert plain_data(b"event: x\nid: 7\ndata: a\n\n") is None
    assert plain_data(b": keep-alive\n\n") is None
    for block in (b'event: message_start\ndata: {"a":1}\n\n', b"data: a\ndata: b\n\n"):
        assert SSEEvent(block).data_bytes() == (SSEEvent(block).data or "").encode()
