"""The stream normaliser and HTTP error mapping: the OpenAI corpus, one fixture per dialect, fuzzing."""

from __future__ import annotations

import json
import random
from decimal import Decimal
from email.utils import formatdate
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conversations.upstream.errors import ErrorCode, UpstreamError, error_from_response, user_message
from conversations.upstream.events import (
    ContentDelta,
    Finish,
    ReasoningDelta,
    RefusalDelta,
    SSEEvent,
    StreamError,
    ToolCallDelta,
    UpstreamEvent,
    Usage,
)
from conversations.upstream.normalize import TRUNCATED_MESSAGE, StreamNormalizer, normalize_response
from conversations.upstream.sse import SSEDecoder

CORPUS = Path(__file__).resolve().parent / "fixtures" / "openai"
DIALECTS = Path(__file__).parent / "fixtures" / "dialects"
BROKEN = "upstream_stream_broken"


def run(*reads: bytes, api: str = "chat") -> tuple[list[UpstreamEvent], StreamNormalizer]:
    decoder, normalizer = SSEDecoder(), StreamNormalizer(api)  # type: ignore[arg-type]
    out: list[UpstreamEvent] = []
    for read in reads:
        for event in decoder.feed(read):
            out += normalizer.feed(event)
    for event in decoder.close():
        out += normalizer.feed(event)
    return out + normalizer.finish(), normalizer


def feed(*data: str, event: str = "message") -> tuple[list[UpstreamEvent], StreamNormalizer]:
    normalizer = StreamNormalizer()
    out: list[UpstreamEvent] = []
    for d in data:
        out += normalizer.feed(SSEEvent(d, event))
    return out + normalizer.finish(), normalizer


def text_of(events: list[UpstreamEvent], kind: type = ContentDelta, index: int = 0) -> str:
    return "".join(e.text for e in events if isinstance(e, kind) and e.index == index)  # type: ignore[attr-defined]


def of(events: list[UpstreamEvent], kind: type) -> list:
    return [e for e in events if isinstance(e, kind)]


def chunk(delta: dict | None = None, finish: str | None = None, index: int = 0, **extra: object) -> str:
    choice = {"index": index, "delta": delta or {}, "finish_reason": finish}
    return json.dumps({"id": "c", "object": "chat.completion.chunk", "choices": [choice], **extra})


# -- the recorded OpenAI corpus ---------------------------------------------------------------------

CORPUS_EXPECTED = {  # from the corpus README: finish_reason, prompt / completion tokens
    "173417d55340.sse": ("stop", 79, 11),
    "2018feb66ae1.sse": ("tool_calls", 44, 16),
    "4cc50a6135d2.sse": ("length", 79, 1),
    "569c877e6942.sse": ("stop", 79, 12),
    "7e5ea4d12e7c.sse": ("stop", 79, 14),
    "83b060bae42e.sse": ("stop", 9, 2),
    "a247c49c5fcd.sse": ("tool_calls", 48, 19),
    "a491adda08c3.sse": ("stop", 79, 42),
    "c6aa7e397b71.sse": ("tool_calls", 76, 24),
    "d61558011839.sse": ("stop", 19, 177),
    "e2aad469b71d.sse": ("stop", 14, 30),
    "f82268f2fefd.sse": ("tool_calls", 149, 60),
}


def splits(data: bytes) -> list[list[bytes]]:
    rng = random.Random(len(data))
    cuts = sorted(rng.sample(range(1, len(data)), 40))
    random_split = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]
    crlf, cr = data.replace(b"\n", b"\r\n"), data.replace(b"\n", b"\r")
    return [
        [data[i : i + 1] for i in range(len(data))],
        random_split,
        [crlf],
        [cr[i : i + 3] for i in range(0, len(cr), 3)],
    ]


@pytest.mark.parametrize("name", sorted(CORPUS_EXPECTED))
def test_corpus_finish_reason_and_usage(name: str) -> None:
    data = (CORPUS / name).read_bytes()
    events, normalizer = run(data)
    reason, prompt, completion = CORPUS_EXPECTED[name]
    assert normalizer.done
    assert normalizer.finish_reason == reason
    assert normalizer.usage == Usage(prompt, completion, prompt + completion)
    assert of(events, Usage) == [normalizer.usage]
    assert events[-1] == normalizer.usage  # usage comes once, last
    assert not of(events, StreamError)
    for reads in splits(data):
        assert run(*reads)[0] == events


def test_corpus_content() -> None:
    events, _ = run((CORPUS / "83b060bae42e.sse").read_bytes())
    assert text_of(events) == "Foo!"
    events, _ = run((CORPUS / "e2aad469b71d.sse").read_bytes())
    assert text_of(events).startswith("I'm unable to provide real-time weather")


def test_corpus_refusal_is_kept_apart() -> None:
    events, _ = run((CORPUS / "173417d55340.sse").read_bytes())
    assert text_of(events) == ""
    assert text_of(events, RefusalDelta).startswith("I'm sorry")


def test_corpus_n3_gives_content_per_index() -> None:
    events, _ = run((CORPUS / "a491adda08c3.sse").read_bytes())
    texts = [text_of(events, index=i) for i in range(3)]
    for text in texts:
        assert json.loads(text)["city"] == "San Francisco"
    assert [f.index for f in of(events, Finish)] == [0, 1, 2]
    assert {f.reason for f in of(events, Finish)} == {"stop"}


def test_corpus_parallel_tool_calls_assemble() -> None:
    events, _ = run((CORPUS / "f82268f2fefd.sse").read_bytes())
    calls: dict[int, dict] = {}
    for delta in of(events, ToolCallDelta):
        call = calls.setdefault(delta.call_index, {"id": None, "name": None, "arguments": ""})
        call["id"] = call["id"] or delta.id
        call["name"] = call["name"] or delta.name
        call["arguments"] += delta.arguments
    assert sorted(calls) == [0, 1]
    for call in calls.values():
        assert call["id"].startswith("call_") and call["name"]
        assert isinstance(json.loads(call["arguments"]), dict)


# -- provider dialects ------------------------------------------------------------------------------

# file: (content, reasoning, finish_reason, usage, error message or None)
DIALECT_EXPECTED: dict[str, tuple[str, str, str | None, Usage | None, str | None]] = {
    "deepinfra_usage_eos.sse": ("  Hi!", "", "stop", Usage(15, 16, 31, Decimal("0.0000268")), None),
    "azure_placeholder_content_filter.sse": ("Here is the start", "", "content_filter", None, None),
    "llamacpp_content_null.sse": ("Bonjour à tous", "", "stop", Usage(20, 3, 23), None),
    "llamacpp_error_line.sse": (
        "Once upon a time",
        "",
        None,
        None,
        "the request exceeds the available context size",
    ),
    "vllm_continuous_usage.sse": ("The sky is blue.", "", "stop", Usage(12, 6, 18), None),
    "vllm_flat_error.sse": (
        "Partial",
        "",
        None,
        None,
        "The engine was stopped while the request was running.",
    ),
    "groq_x_groq_usage.sse": ("Fast answer.", "", "stop", Usage(40, 3, 43), None),
    "openrouter_cost.sse": (
        "Two words.",
        "",
        "stop",
        Usage(14, 3, 17, Decimal("0.00000390000000000001")),  # exact, not a float's neighbour
        None,
    ),
    "openrouter_midstream_error.sse": ("Let me think", "", None, None, "Provider disconnected unexpectedly"),
    "ollama_reasoning.sse": ("Hello!", "The user greets me.", "stop", Usage(11, 9, 20), None),
    "deepseek_reasoning_content.sse": (
        "9.9 is larger.",
        "9.11 vs 9.9: 0.90 > 0.11.",
        "stop",
        Usage(15, 24, 39),
        None,
    ),
    "xai_usage_second_to_last.sse": ("Hi there", "Short.", "stop", Usage(9, 7, 16), None),
    "completions_text.sse": (" Salt the water well", "", "length", Usage(60, 3, 63), None),
}


def test_every_dialect_fixture_has_an_expectation() -> None:
    assert sorted(p.name for p in DIALECTS.glob("*.sse")) == sorted(DIALECT_EXPECTED)


@pytest.mark.parametrize("name", sorted(DIALECT_EXPECTED))
def test_dialect(name: str) -> None:
    data = (DIALECTS / name).read_bytes()
    api = "completions" if name.startswith("completions") else "chat"
    events, normalizer = run(data, api=api)
    content, reasoning, reason, usage, error = DIALECT_EXPECTED[name]
    assert text_of(events) == content
    assert text_of(events, ReasoningDelta) == reasoning
    assert normalizer.finish_reason == reason
    assert normalizer.usage == usage
    assert of(events, Usage) == ([usage] if usage else [])
    errors = of(events, StreamError)
    if error is None:
        assert not errors
        assert events[-1] == (usage or Finish(reason))
    else:
        assert errors == [events[-1]]
        assert errors[0].code == BROKEN and errors[0].message == error
        assert normalizer.error == errors[0]
    for reads in splits(data):
        assert run(*reads, api=api)[0] == events


def test_deepinfra_end_token_is_dropped_only_as_a_whole_delta() -> None:
    events, _ = feed(chunk({"content": "</s>"}), chunk({"content": "use <s>x</s>"}, "stop"), "[DONE]")
    assert text_of(events) == "use <s>x</s>"


def test_openrouter_midstream_error_keeps_the_provider_status() -> None:
    events, _ = run((DIALECTS / "openrouter_midstream_error.sse").read_bytes())
    assert events[-1] == StreamError(BROKEN, "Provider disconnected unexpectedly", retryable=True, status=502)
    assert not of(events, Finish)  # its finish_reason "error" rides on the error chunk


# -- stream rules -----------------------------------------------------------------------------------


def test_placeholder_chunks_and_null_content() -> None:
    placeholder = json.dumps({"id": "", "model": "", "object": "", "choices": []})
    events, normalizer = feed(
        placeholder, chunk({"role": "assistant", "content": None}), chunk({"content": "x"}, "stop"), "[DONE]"
    )
    assert events == [ContentDelta("x"), Finish("stop")]
    assert normalizer.done and normalizer.usage is None


@pytest.mark.parametrize("choices", [None, {}, "x", [None, 3, "a"], [{"delta": None}], [{"index": "0"}]])
def test_odd_choices_are_skipped(choices: object) -> None:
    events, _ = feed(json.dumps({"choices": choices}), "[DONE]")
    assert events == []


def test_finish_reason_rules() -> None:
    events, normalizer = feed(
        chunk({"content": "a"}, ""),
        chunk({"content": "b"}, None),
        chunk({}, "eos_token"),  # unknown words are kept as sent
        chunk({}, "stop"),  # a repeated finish (another word, even) is not a second Finish
        "[DONE]",
    )
    assert events == [ContentDelta("a"), ContentDelta("b"), Finish("eos_token")]
    assert normalizer.finish_reason == "eos_token"


def test_usage_is_merged_by_maximum_never_summed_and_given_once() -> None:
    usage = {"prompt_tokens": 10, "completion_tokens": 2, "total_tokens": 12}
    later = {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}
    events, normalizer = feed(
        chunk({"content": "a"}, usage=usage),
        chunk({"content": "b"}, "stop", usage=later),
        json.dumps({"choices": [], "usage": later}),
        "[DONE]",
    )
    assert of(events, Usage) == [Usage(10, 5, 15)] == [events[-1]]
    assert normalizer.usage == Usage(10, 5, 15)


def test_usage_before_done_waits_for_done() -> None:
    normalizer = StreamNormalizer()
    assert normalizer.feed(
        SSEEvent(chunk({}, "stop", usage={"prompt_tokens": 1, "completion_tokens": 1}))
    ) == [Finish("stop")]
    assert normalizer.usage == Usage(1, 1, 2)  # total computed when missing
    assert normalizer.feed(SSEEvent("[DONE]")) == [Usage(1, 1, 2)]
    assert normalizer.feed(SSEEvent(chunk({"content": "late"}))) == []
    assert normalizer.finish() == []


def test_all_zero_usage_counts_as_none() -> None:
    events, normalizer = feed(chunk({"content": "a"}, "stop", usage={"prompt_tokens": 0, "total_tokens": 0}))
    assert normalizer.usage is None and not of(events, Usage)


@pytest.mark.parametrize(
    "raw", ['{"cost": "0.5"}', '{"estimated_cost": 1e-7}', '{"cost": 0.25, "estimated_cost": 9}']
)
def test_cost_parsing(raw: str) -> None:
    usage = json.loads(raw) | {"prompt_tokens": 1, "completion_tokens": 1}
    _, normalizer = feed(chunk({}, "stop", usage=usage))
    assert normalizer.usage is not None
    given = json.loads(raw)
    assert normalizer.usage.cost == Decimal(str(given.get("cost", given.get("estimated_cost"))))


@pytest.mark.parametrize("raw", ['{"cost": -1}', '{"cost": "abc"}', '{"cost": true}', '{"cost": null}'])
def test_bad_costs_are_ignored(raw: str) -> None:
    usage = json.loads(raw) | {"prompt_tokens": 1, "completion_tokens": 1}
    _, normalizer = feed(chunk({}, "stop", usage=usage))
    assert normalizer.usage == Usage(1, 1, 2)


def test_eof_after_finish_without_done_is_fine() -> None:
    events, normalizer = feed(chunk({"content": "a"}), chunk({}, "stop", usage={"prompt_tokens": 3}))
    assert events == [ContentDelta("a"), Finish("stop"), Usage(3, 0, 3)]
    assert not normalizer.done and normalizer.error is None


def test_eof_without_finish_is_a_broken_stream_after_the_usage() -> None:
    events, normalizer = feed(chunk({"content": "part"}, usage={"prompt_tokens": 3, "completion_tokens": 1}))
    assert events == [ContentDelta("part"), Usage(3, 1, 4), StreamError(BROKEN, TRUNCATED_MESSAGE)]
    assert normalizer.error == events[-1]
    assert normalizer.finish() == []


def test_eof_with_an_unfinished_choice_is_broken() -> None:
    events, _ = feed(chunk({"content": "a"}, "stop"), chunk({"content": "b"}, index=1))
    assert events[-1] == StreamError(BROKEN, TRUNCATED_MESSAGE)


def test_eof_on_an_empty_stream_is_broken() -> None:
    events, _ = feed()
    assert events == [StreamError(BROKEN, TRUNCATED_MESSAGE)]


def test_done_without_finish_is_complete() -> None:
    events, normalizer = feed(chunk({"content": "a"}), "[DONE]")
    assert events == [ContentDelta("a")] and normalizer.done


@pytest.mark.parametrize(
    ("data", "message", "status"),
    [
        (
            '{"error": {"message": "overloaded", "type": "server_error", "code": "overloaded"}}',
            "overloaded",
            None,
        ),
        ('{"error": {"message": "rate", "code": 429}}', "rate", 429),
        ('{"error": {"message": "no code", "code": null}}', "no code", None),
        ('{"error": "plain words"}', "plain words", None),
        ('{"object": "error", "message": "flat", "type": "BadRequestError", "code": 400}', "flat", 400),
        ('{"error": {"code": 500}}', "the upstream reported an error", 500),
    ],
)
def test_error_chunks(data: str, message: str, status: int | None) -> None:
    events, normalizer = feed(chunk({"content": "a"}), data, chunk({"content": "ignored"}, "stop"), "[DONE]")
    retryable = status is not None and status >= 429
    assert events == [ContentDelta("a"), StreamError(BROKEN, message, retryable=retryable, status=status)]
    assert not normalizer.done


def test_error_event_type() -> None:
    events, _ = feed('{"error": {"message": "boom"}}', event="error")
    assert events == [StreamError(BROKEN, "boom")]
    events, _ = feed("not json at all", event="error")
    assert events == [StreamError(BROKEN, "not json at all")]
    events, _ = feed("", event="error")
    assert events == [StreamError(BROKEN, "the upstream reported an error")]


@pytest.mark.parametrize("data", ['{"choices": [', "42", '"text"', "[1, 2]", "null", "{bad}"])
def test_malformed_data_is_a_broken_stream_and_ends_it(data: str) -> None:
    normalizer = StreamNormalizer()
    out = normalizer.feed(SSEEvent(chunk({"content": "a"}))) + normalizer.feed(SSEEvent(data))
    assert out[0] == ContentDelta("a")
    assert isinstance(out[1], StreamError) and out[1].code == BROKEN
    assert normalizer.feed(SSEEvent(chunk({"content": "b"}, "stop"))) == []
    assert normalizer.finish() == []


def test_chunks_without_a_blank_line_between_them_are_rescued() -> None:
    stream = (
        "data: "
        + chunk({"content": "a"})
        + "\ndata: "
        + chunk({"content": "b"}, "stop")
        + "\n\ndata: [DONE]\n\n"
    )
    events, _ = run(stream.encode())
    assert events == [ContentDelta("a"), ContentDelta("b"), Finish("stop")]
    usage = {"prompt_tokens": 2, "completion_tokens": 1}
    stream = "data: " + chunk({"content": "a"}, "stop", usage=usage) + "\ndata: [DONE]\n\n"
    events, normalizer = run(stream.encode())
    assert events == [ContentDelta("a"), Finish("stop"), Usage(2, 1, 3)] and normalizer.done
    events, _ = run(b'data: {"choices": []}\ndata: nope\n\n')
    assert events == [StreamError(BROKEN, 'the upstream sent malformed data: {"choices": []}\nnope')]


def test_keep_alive_data_is_ignored() -> None:
    events, _ = feed("", "  ", chunk({"content": "a"}, "stop"), " [DONE] ")
    assert events == [ContentDelta("a"), Finish("stop")]


def test_reasoning_spellings_are_taken_once() -> None:
    events, _ = feed(
        chunk({"reasoning_content": "r1", "reasoning": "r1"}),
        chunk({"reasoning": "r2"}),
        chunk({"reasoning_content": None, "reasoning": "r3", "content": "c"}, "stop"),
    )
    assert events == [
        ReasoningDelta("r1"),
        ReasoningDelta("r2"),
        ReasoningDelta("r3"),
        ContentDelta("c"),
        Finish("stop"),
    ]


def test_tool_call_shapes() -> None:
    events, _ = feed(
        chunk({"tool_calls": [{"index": 0, "id": "call_1", "function": {"name": "f", "arguments": ""}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"a":'}}]}),
        chunk({"tool_calls": [{"function": {"arguments": {"b": 1}}}]}),  # parsed arguments, no index
        chunk({"tool_calls": [{"index": 1, "function": {}}, None, {"index": "x", "id": 5}]}),
        chunk({"function_call": {"name": "legacy", "arguments": "{}"}}, "tool_calls"),
    )
    assert events == [
        ToolCallDelta(0, "call_1", "f", ""),
        ToolCallDelta(0, arguments='{"a":'),
        ToolCallDelta(0, arguments='{"b": 1}'),
        ToolCallDelta(0, name="legacy", arguments="{}"),
        Finish("tool_calls"),
    ]


def test_content_parts_and_text_choices() -> None:
    events, _ = feed(
        chunk({"content": [{"type": "text", "text": "a"}, {"type": "image_url"}, {"text": "b"}]}),
        json.dumps({"choices": [{"index": 0, "text": "c", "finish_reason": "stop"}]}),
    )
    assert events == [ContentDelta("ab"), ContentDelta("c"), Finish("stop")]


def test_missing_index_uses_the_position() -> None:
    data = json.dumps({"choices": [{"delta": {"content": "a"}}, {"delta": {"content": "b"}, "index": True}]})
    events, _ = feed(data, "[DONE]")
    assert events == [ContentDelta("a", 0), ContentDelta("b", 1)]


def test_groq_usage_with_a_cost_is_exact() -> None:
    data = json.dumps({"choices": [], "x_groq": {"usage": {"prompt_tokens": 2, "cost": 0.1}}})
    _, normalizer = feed(chunk({}, "stop"), data.replace("0.1", "0.10000000000000000001"))
    assert normalizer.usage == Usage(2, 0, 2, Decimal("0.10000000000000000001"))


# -- fuzzing ----------------------------------------------------------------------------------------

json_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10)
keys = st.sampled_from(
    [
        "choices", "delta", "content", "text", "index", "finish_reason", "usage", "prompt_tokens",
        "completion_tokens", "total_tokens", "cost", "estimated_cost", "error", "message", "code", "object",
        "x_groq", "tool_calls", "function", "arguments", "name", "id", "reasoning", "reasoning_content",
        "refusal", "function_call", "type",
    ]
)  # fmt: skip
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=5),
    max_leaves=25,
)


def check_invariants(events: list[UpstreamEvent]) -> None:
    assert len(of(events, Usage)) <= 1
    errors = of(events, StreamError)
    assert len(errors) <= 1
    if errors:
        assert events[-1] == errors[0]
    finishes = [f.index for f in of(events, Finish)]
    assert len(finishes) == len(set(finishes))


def test_a_whole_body_naming_one_choice_twice_finishes_it_once() -> None:
    events = normalize_response({"choices": [None, {"choices": None, "index": 0}, {"choices": None, "index": 0}]})
    check_invariants(events)
    assert [e for e in events if isinstance(e, Finish)] == [Finish("unknown", 0)]


@settings(max_examples=400, deadline=None)
@given(st.lists(json_values, max_size=6), st.booleans())
def test_any_json_chunks_never_raise(chunks: list[object], done: bool) -> None:
    data = [json.dumps(c) for c in chunks] + (["[DONE]"] if done else [])
    events, _ = feed(*data)
    check_invariants(events)
    body = chunks[0] if chunks and isinstance(chunks[0], dict) else {"choices": chunks}
    check_invariants(normalize_response(body))  # type: ignore[arg-type]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.text(max_size=40), st.sampled_from(["message", "error", "ping"])), max_size=6))
def test_any_text_events_never_raise(events: list[tuple[str, str]]) -> None:
    normalizer = StreamNormalizer()
    out: list[UpstreamEvent] = []
    for data, kind in events:
        out += normalizer.feed(SSEEvent(data, kind))
    check_invariants(out + normalizer.finish())


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=400))
def test_any_bytes_through_the_whole_pipeline_never_raise(data: bytes) -> None:
    events, _ = run(data)
    check_invariants(events)


# -- whole (non-streaming) responses ----------------------------------------------------------------


def test_non_streaming_deepinfra_body_with_exact_cost() -> None:
    text = """{"id": "chatcmpl-guMTxWgpFf", "object": "chat.completion", "created": 1694623155,
      "model": "01-ai/Yi-34B-Chat", "choices": [{"index": 0, "message": {"role": "assistant",
      "content": " Hello! It's nice to meet you."}, "finish_reason": "stop"}],
      "usage": {"prompt_tokens": 15, "completion_tokens": 16, "total_tokens": 31,
                "estimated_cost": 0.0000268}}"""
    events = normalize_response(json.loads(text, parse_float=Decimal))
    assert events == [
        ContentDelta(" Hello! It's nice to meet you."),
        Finish("stop"),
        Usage(15, 16, 31, Decimal("0.0000268")),
    ]
    assert normalize_response(json.loads(text))[-1] == Usage(15, 16, 31, Decimal("0.0000268"))


def test_non_streaming_full_message() -> None:
    body = {
        "choices": [
            {
                "message": {
                    "content": None,
                    "reasoning_content": "think",
                    "refusal": "no",
                    "tool_calls": [
                        {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
                    ],
                },
                "finish_reason": "tool_calls",
            },
            {"index": 1, "message": {"content": "</s>"}, "finish_reason": None},
        ],
        # A proxy that does not count tokens:
        "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
    }
    assert normalize_response(body) == [
        ReasoningDelta("think"),
        RefusalDelta("no"),
        ToolCallDelta(0, "call_1", "f", "{}"),
        Finish("tool_calls"),
        ContentDelta("</s>", 1),  # whole bodies are left as sent
        Finish("unknown", 1),  # a whole body is complete even without a finish_reason
    ]


def test_non_streaming_completions_and_errors() -> None:
    body = {"object": "text_completion", "choices": [{"index": 0, "text": "abc", "finish_reason": "length"}]}
    assert normalize_response(body, api="completions") == [ContentDelta("abc"), Finish("length")]
    assert normalize_response({"error": {"message": "nope", "code": 404}}) == [
        StreamError(BROKEN, "nope", status=404)
    ]
    assert normalize_response({"choices": []}) == [
        StreamError(BROKEN, "the upstream answered without any choices")
    ]
    assert normalize_response([1]) == [  # type: ignore[arg-type]
        StreamError(BROKEN, "the upstream answered with something other than a JSON object")
    ]


# -- HTTP error answers -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "code", "retryable"),
    [
        (401, ErrorCode.UPSTREAM_AUTH, False),
        (403, ErrorCode.UPSTREAM_AUTH, False),
        (402, ErrorCode.INSUFFICIENT_CREDITS, False),
        (429, ErrorCode.UPSTREAM_RATE_LIMITED, True),
        (400, ErrorCode.UPSTREAM_BAD_REQUEST, False),
        (404, ErrorCode.UPSTREAM_BAD_REQUEST, False),
        (422, ErrorCode.UPSTREAM_BAD_REQUEST, False),
        (413, ErrorCode.UPSTREAM_BAD_REQUEST, False),
        (408, ErrorCode.UPSTREAM_TIMEOUT, True),
        (409, ErrorCode.UPSTREAM_UNAVAILABLE, True),
        (500, ErrorCode.UPSTREAM_UNAVAILABLE, True),
        (502, ErrorCode.UPSTREAM_UNAVAILABLE, True),
        (503, ErrorCode.UPSTREAM_UNAVAILABLE, True),
        (529, ErrorCode.UPSTREAM_UNAVAILABLE, True),
        (302, ErrorCode.UPSTREAM_UNAVAILABLE, False),
    ],
)
def test_status_mapping(status: int, code: ErrorCode, retryable: bool) -> None:
    err = error_from_response(status, {}, b'{"error": {"message": "provider words"}}')
    assert isinstance(err, UpstreamError)
    assert (err.code, err.retryable, err.status) == (code, retryable, status)
    assert err.detail == "provider words"
    assert err.message == ("provider words" if code == ErrorCode.UPSTREAM_BAD_REQUEST else user_message(code))


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        (b'{"error": {"message": "ctx", "type": "invalid_request", "param": null, "code": null}}', "ctx"),
        (b'{"error": {"message": "m", "code": 400}}', "m"),
        (b'{"object": "error", "message": "flat vllm", "type": "BadRequestError", "code": 400}', "flat vllm"),
        (b'{"error": "just a string"}', "just a string"),
        (b'{"detail": "Not Found"}', "Not Found"),
        (b'[{"error": {"code": 400, "message": "wrapped", "status": "INVALID_ARGUMENT"}}]', "wrapped"),
        (b"<html>Bad Gateway</html>", "<html>Bad Gateway</html>"),
        (b"", None),
        (b'{"unexpected": 1}', None),
        (b"\xff\xfe bad bytes", "\ufffd\ufffd bad bytes"),
    ],
)  # fmt: skip
def test_error_body_shapes(body: bytes, detail: str | None) -> None:
    err = error_from_response(400, {}, body)
    assert err.detail == detail
    assert err.message == (detail or user_message(ErrorCode.UPSTREAM_BAD_REQUEST))


def test_plain_text_is_truncated_and_keys_are_redacted() -> None:
    err = error_from_response(400, {}, b"x" * 2000)
    assert len(err.message) == 500
    err = error_from_response(
        401, {}, b'{"error": {"message": "Incorrect API key provided: sk-proj-abc123XYZ***wxyz."}}'
    )
    assert "abc123" not in (err.detail or "") and "[redacted]" in (err.detail or "")
    assert err.message == user_message(ErrorCode.UPSTREAM_AUTH)


def test_openai_out_of_quota_429_is_final() -> None:
    body = b'{"error": {"message": "You exceeded your quota", "type": "insufficient_quota", "code": null}}'
    err = error_from_response(429, {"retry-after": "1"}, body)
    assert (err.code, err.retryable, err.retry_after) == (ErrorCode.INSUFFICIENT_CREDITS, False, None)


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"retry-after-ms": "1500", "retry-after": "9"}, 1.5),
        ({"Retry-After-Ms": "bad", "Retry-After": "9"}, 9.0),
        ({"retry-after": "0.5"}, 0.5),
        ({"retry-after": "0"}, None),
        ({"retry-after": "-3"}, None),
        ({"retry-after": "61"}, None),
        ({"retry-after": "60"}, 60.0),
        ({"retry-after": "nan"}, None),
        ({"retry-after": "soon"}, None),
        ({"retry-after": formatdate(1_000_030, usegmt=True)}, 30.0),
        ({"retry-after": formatdate(1_000_000 - 5, usegmt=True)}, None),
        ({"retry-after": formatdate(1_000_000 + 3600, usegmt=True)}, None),
        ({}, None),
    ],
)
def test_retry_after(headers: dict[str, str], expected: float | None) -> None:
    err = error_from_response(503, headers, b"", now=1_000_000)
    assert err.retry_after == expected


def test_retry_after_only_for_retryable_errors() -> None:
    assert error_from_response(400, {"retry-after": "5"}, b"").retry_after is None
    assert error_from_response(429, {"retry-after": "5"}, b"").retry_after == 5.0


def test_user_message_has_a_sentence_for_every_code() -> None:
    messages = {code: user_message(code) for code in ErrorCode}
    assert len(set(messages.values())) == len(ErrorCode)
    for text in messages.values():
        assert text[0].isupper() and text.endswith(".")
    assert user_message("no_such_code").endswith(".")
    assert user_message("upstream_auth") == messages[ErrorCode.UPSTREAM_AUTH]
