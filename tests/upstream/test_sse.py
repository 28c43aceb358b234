"""The SSE decoder: framing rules, the recorded OpenAI corpus in every split, and fuzzing."""

from __future__ import annotations

import itertools
import random
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conversations.upstream.events import SSEEvent
from conversations.upstream.sse import SSEDecoder

CORPUS = Path(__file__).resolve().parent / "fixtures" / "openai"
CORPUS_FILES = sorted(CORPUS.glob("*.sse"))
DIALECTS = sorted((Path(__file__).parent / "fixtures" / "dialects").glob("*.sse"))


def decode(*reads: bytes) -> list[SSEEvent]:
    decoder = SSEDecoder()
    events: list[SSEEvent] = []
    for read in reads:
        events += decoder.feed(read)
    return events + decoder.close()


def split_at(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({0, len(data), *(c for c in cuts if 0 < c < len(data))})
    return [data[a:b] for a, b in itertools.pairwise(points)]


def random_reads(data: bytes, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    reads, i = [], 0
    while i < len(data):
        n = rng.choice((1, 2, 3, 7, 64, 500, 4096))
        reads.append(data[i : i + n])
        i += n
    return reads


def test_the_corpus_is_there() -> None:
    assert len(CORPUS_FILES) == 12, f"expected the 12 recorded streams in {CORPUS}"


@pytest.mark.parametrize("path", CORPUS_FILES + DIALECTS, ids=lambda p: p.name)
def test_every_split_and_line_ending_gives_the_same_events(path: Path) -> None:
    data = path.read_bytes()
    whole = decode(data)
    assert whole, "no events"
    assert decode(*(data[i : i + 1] for i in range(len(data)))) == whole
    for seed in range(5):
        assert decode(*random_reads(data, seed)) == whole
    crlf = data.replace(b"\n", b"\r\n")
    cr = data.replace(b"\n", b"\r")
    for converted in (crlf, cr):
        assert decode(converted) == whole
        assert decode(*(converted[i : i + 1] for i in range(len(converted)))) == whole
        assert decode(*random_reads(converted, 99)) == whole


@pytest.mark.parametrize("path", CORPUS_FILES, ids=lambda p: p.name)
def test_corpus_events_are_the_data_lines(path: Path) -> None:
    data = path.read_bytes()
    events = decode(data)
    assert len(events) == data.count(b"\ndata: ") + data.startswith(b"data: ")
    assert events[-1] == SSEEvent("[DONE]")
    assert all(e.event == "message" and e.data.startswith("{") for e in events[:-1])


def test_long_corpus_stream_has_181_events() -> None:
    assert len(decode((CORPUS / "d61558011839.sse").read_bytes())) == 181


# -- framing rules ------------------------------------------------------------------------------------


@pytest.mark.parametrize("end", [b"\n", b"\r", b"\r\n"])
def test_line_ends(end: bytes) -> None:
    stream = b"data: a" + end + b"data: b" + end + end + b"data: c" + end + end
    assert decode(stream) == [SSEEvent("a\nb"), SSEEvent("c")]


def test_cr_at_the_end_of_a_read_and_lf_at_the_start_of_the_next_are_one_line_end() -> None:
    # Read as two line ends, "\r" + "\n" would be a blank line and cut the event in two.
    assert decode(b"data: a\r", b"\ndata: b\r", b"\n\r", b"\n") == [SSEEvent("a\nb")]
    assert decode(b"data: a\r", b"", b"\ndata: b\r\n\r\n") == [SSEEvent("a\nb")]


def test_comments_are_skipped() -> None:
    stream = b": OPENROUTER PROCESSING\n\n:\n\ndata: x\n: keep-alive\n\n"
    assert decode(stream) == [SSEEvent("x")]


def test_field_value_splits_on_the_first_colon_and_drops_one_space() -> None:
    stream = b'data:{"a": "b:c"}\n\ndata:  two spaces\n\ndata\n\n'
    assert decode(stream) == [SSEEvent('{"a": "b:c"}'), SSEEvent(" two spaces"), SSEEvent("")]


def test_event_and_id_fields_and_unknown_fields() -> None:
    stream = b"event: update\nid: 7\nretry: 10\nfoo: bar\ndata: x\n\ndata: y\n\nid\ndata: z\n\n"
    assert decode(stream) == [
        SSEEvent("x", event="update", id="7"),
        SSEEvent("y", id="7"),  # the last event id carries over, the type does not
        SSEEvent("z", id=""),
    ]


def test_an_id_with_nul_is_ignored() -> None:
    assert decode(b"id: 1\n\nid: a\x00b\ndata: x\n\n") == [SSEEvent("x", id="1")]


def test_events_without_data_are_not_dispatched_except_errors() -> None:
    assert decode(b"event: ping\n\nid: 3\n\n\n\n") == []
    assert decode(b"event: error\n\n") == [SSEEvent("", event="error")]


def test_empty_event_type_is_message() -> None:
    assert decode(b"event:\ndata: x\n\n") == [SSEEvent("x")]


def test_json_with_u2028_is_never_split() -> None:
    payload = '{"content": "line\u2028sep\u2029para\x85nel\x0bvt\x0cff\x1cfs"}'
    assert decode(b"data: " + payload.encode() + b"\n\n") == [SSEEvent(payload)]


def test_multibyte_characters_straddling_reads() -> None:
    stream = "data: 日本語 🎉 é\n\n".encode()
    for cut in range(len(stream)):
        assert decode(stream[:cut], stream[cut:]) == [SSEEvent("日本語 🎉 é")]


def test_invalid_utf8_becomes_replacement_characters() -> None:
    assert decode(b"data: a\xff\xfeb\xe6\x97\n\n") == [SSEEvent("a\ufffd\ufffdb\ufffd")]
    assert decode(b"ev\xffent: x\ndata: \xe6\n\n") == [SSEEvent("\ufffd")]


def test_byte_order_mark_is_dropped_once() -> None:
    bom = b"\xef\xbb\xbf"
    assert decode(bom + b"data: x\n\n") == [SSEEvent("x")]
    # Only the stream's first BOM is dropped: a later one makes "\ufeffdata", an unknown field.
    assert decode(bom[:1], bom[1:] + b"data: x\n\n" + bom + b"data: y\n\n") == [SSEEvent("x")]


def test_old_llama_cpp_error_line() -> None:
    stream = b'data: {"a": 1}\n\nerror: {"code": 500, "message": "boom"}\n\n'
    assert decode(stream) == [SSEEvent('{"a": 1}'), SSEEvent('{"code": 500, "message": "boom"}', "error")]


def test_close_dispatches_a_last_event_without_blank_line() -> None:
    assert decode(b"data: a\n\ndata: [DONE]\n") == [SSEEvent("a"), SSEEvent("[DONE]")]
    assert decode(b"data: a\n\ndata: [DONE]") == [SSEEvent("a"), SSEEvent("[DONE]")]
    assert decode(b"data: a\n\ndata: [DONE]\r") == [SSEEvent("a"), SSEEvent("[DONE]")]


def test_close_resets_and_is_idempotent() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: a") == []
    assert decoder.close() == [SSEEvent("a")]
    assert decoder.close() == []


def test_a_long_line_in_tiny_reads_is_assembled() -> None:
    text = "x" * 200_000
    stream = f"data: {text}\n\n".encode()
    assert decode(*(stream[i : i + 7] for i in range(0, len(stream), 7))) == [SSEEvent(text)]


# -- properties -------------------------------------------------------------------------------------

field_text = st.text(st.characters(blacklist_characters="\r\n", blacklist_categories=["Cs"]), max_size=30)
event_st = st.tuples(
    st.lists(field_text, min_size=1, max_size=3),  # data lines
    st.one_of(st.none(), st.text(st.characters(whitelist_categories=["Ll"]), min_size=1, max_size=8)),
    st.booleans(),  # a comment before it
)


def serialize(events: list[tuple[list[str], str | None, bool]], ends: list[str]) -> bytes:
    out, k = [], 0
    for lines, kind, comment in events:
        block = []
        if comment:
            block.append(": keep-alive")
        if kind:
            block.append(f"event: {kind}")
        block += [f"data: {line}" for line in lines]
        block.append("")
        for line in block:
            end = ends[k % len(ends)]
            if not line and out and out[-1].endswith("\r") and end.startswith("\n"):
                end = "\r"  # "\r" then "\n" is one line end, not a blank line: keep the blank line
            out.append(line + end)
            k += 1
    return "".join(out).encode()


@settings(max_examples=200, deadline=None)
@given(
    st.lists(event_st, max_size=8),
    st.lists(st.sampled_from(["\n", "\r", "\r\n"]), min_size=1, max_size=5),
    st.lists(st.integers(min_value=0, max_value=2000), max_size=20),
)
def test_any_split_of_a_valid_stream_gives_the_same_events(
    events: list[tuple[list[str], str | None, bool]], ends: list[str], cuts: list[int]
) -> None:
    stream = serialize(events, ends)
    expected = [SSEEvent("\n".join(lines), kind or "message") for lines, kind, _ in events]
    assert decode(stream) == expected
    assert decode(*split_at(stream, cuts)) == expected


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300), st.lists(st.integers(min_value=0, max_value=300), max_size=10))
def test_random_bytes_never_raise_and_splits_do_not_matter(data: bytes, cuts: list[int]) -> None:
    whole = decode(data)
    assert decode(*split_at(data, cuts)) == whole
    assert all(isinstance(e, SSEEvent) for e in whole)


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.sampled_from(
            [b"data: ", b"data:", b"event: error", b"error: ", b"id: ", b":", b"\r", b"\n", b"{}"]
        )
        | st.binary(max_size=4),
        max_size=40,
    ),
    st.lists(st.integers(min_value=0, max_value=200), max_size=10),
)
def test_sse_shaped_noise_never_raises_and_splits_do_not_matter(parts: list[bytes], cuts: list[int]) -> None:
    data = b"".join(parts)
    assert decode(*split_at(data, cuts)) == decode(data)
