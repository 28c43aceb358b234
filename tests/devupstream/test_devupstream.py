"""The development upstream over real HTTP: OpenAI shapes, exact usage, every switch and dialect."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import openai
import pytest

from conversations.devupstream import replies
from conversations.devupstream.app import DIALECTS, parse_options
from conversations.devupstream.server import ThreadedUpstream, switches_path
from conversations.upstream.tokens import count_prompt_tokens, count_tokens

MESSAGES = [
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": "How should I structure a caching layer for my Django project?"},
]


def chat(**extra: Any) -> dict[str, Any]:
    return {"model": "dev-chat", "messages": MESSAGES, **extra}


def sse_lines(body: str) -> list[str]:
    """The data payloads of an SSE body, in order (comments kept as ':...' entries)."""
    out = []
    for block in body.split("\n\n"):
        for line in block.split("\n"):
            if line.startswith("data: "):
                out.append(line[6:])
            elif line.startswith(":"):
                out.append(line)
    return out


def chunks_of(body: str) -> list[dict[str, Any]]:
    return [json.loads(d) for d in sse_lines(body) if d != "[DONE]" and not d.startswith(":")]


def streamed_text(chunks: list[dict[str, Any]], field: str = "content") -> str:
    return "".join(
        c["choices"][0].get("delta", {}).get(field) or c["choices"][0].get("text") or ""
        for c in chunks
        if c.get("choices")
    )


def post(upstream: ThreadedUpstream, path: str, payload: dict[str, Any], **switches: Any) -> httpx.Response:
    return httpx.post(upstream.v1(**switches) + path, json=payload, timeout=10)


# --- shapes and usage ---------------------------------------------------------------------------


def test_models(dev_upstream: ThreadedUpstream) -> None:
    r = httpx.get(dev_upstream.v1() + "/models")
    assert r.status_code == 200
    body = r.json()
    assert body["object"] == "list"
    assert {m["id"] for m in body["data"]} == {"dev-chat", "dev-reasoner", "dev-complete"}
    assert httpx.get(dev_upstream.v1() + "/models/dev-chat").json()["id"] == "dev-chat"


def test_non_streaming_chat_has_exact_usage(dev_upstream: ThreadedUpstream) -> None:
    body = post(dev_upstream, "/chat/completions", chat()).json()
    assert body["object"] == "chat.completion"
    choice = body["choices"][0]
    assert choice["finish_reason"] == "stop"
    text = choice["message"]["content"]
    assert choice["message"]["role"] == "assistant" and text
    usage = body["usage"]
    assert usage["prompt_tokens"] == count_prompt_tokens(MESSAGES)
    assert usage["completion_tokens"] == count_tokens(text)
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


def test_stream_matches_non_stream_and_counts_exactly(dev_upstream: ThreadedUpstream) -> None:
    whole = post(dev_upstream, "/chat/completions", chat()).json()
    r = post(dev_upstream, "/chat/completions", chat(stream=True, stream_options={"include_usage": True}))
    assert r.headers["content-type"].startswith("text/event-stream")
    assert sse_lines(r.text)[-1] == "[DONE]"
    chunks = chunks_of(r.text)
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    text = streamed_text(chunks)
    assert text == whole["choices"][0]["message"]["content"]
    # Token by token: one content chunk per piece, about a word each.
    content_chunks = [c for c in chunks if c["choices"] and c["choices"][0]["delta"].get("content")]
    assert len(content_chunks) == len(replies.split_pieces(text)) > 20
    finish = [c for c in chunks if c["choices"] and c["choices"][0]["finish_reason"]]
    assert len(finish) == 1 and finish[0]["choices"][0]["finish_reason"] == "stop"
    last = chunks[-1]
    assert last["choices"] == []
    assert last["usage"]["completion_tokens"] == count_tokens(text)
    assert last["usage"]["prompt_tokens"] == count_prompt_tokens(MESSAGES)
    # Without include_usage, OpenAI's dialect sends no usage at all.
    plain = chunks_of(post(dev_upstream, "/chat/completions", chat(stream=True)).text)
    assert all("usage" not in c for c in plain)


def test_replies_are_deterministic_and_varied(dev_upstream: ThreadedUpstream) -> None:
    def reply(prompt: str, **extra: Any) -> str:
        payload = {"model": "dev-chat", "messages": [{"role": "user", "content": prompt}], **extra}
        return post(dev_upstream, "/chat/completions", payload).json()["choices"][0]["message"]["content"]

    assert reply("Tell me about sourdough bread") == reply("Tell me about sourdough bread")
    assert reply("Tell me about sourdough bread") != reply("Tell me about sourdough bread", seed=7)
    texts = [reply(f"Question number {i} about databases and queues") for i in range(30)]
    assert len(set(texts)) == 30
    assert any("```" in t for t in texts), "some replies carry a fenced code block"
    assert any("\n- " in t or "\n1. " in t for t in texts), "some replies carry a list"
    assert all("\n\n" in t for t in texts), "replies come in paragraphs"
    assert any("databases" in t for t in texts), "replies pick up the prompt's words"


def test_split_pieces_round_trips() -> None:
    for text in ["", "Hello, world!", "  a\n\n\tb  ", "naïve café — 10,000 €\n```py\nx = 1\n```", "a_b__c"]:
        assert "".join(replies.split_pieces(text)) == text


def test_reasoner_streams_reasoning_first(dev_upstream: ThreadedUpstream) -> None:
    payload = {
        "model": "dev-reasoner",
        "messages": MESSAGES,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    chunks = chunks_of(post(dev_upstream, "/chat/completions", payload).text)
    kinds = [
        "r" if c["choices"][0]["delta"].get("reasoning_content") else "c"
        for c in chunks
        if c["choices"]
        and (c["choices"][0]["delta"].get("reasoning_content") or c["choices"][0]["delta"].get("content"))
    ]
    assert kinds[0] == "r" and "c" in kinds
    assert kinds == sorted(kinds, reverse=True), "all reasoning before the answer"
    thinking, answer = streamed_text(chunks, "reasoning_content"), streamed_text(chunks)
    usage = chunks[-1]["usage"]
    assert usage["completion_tokens"] == count_tokens(thinking) + count_tokens(answer)
    assert usage["completion_tokens_details"]["reasoning_tokens"] == count_tokens(thinking)
    whole = post(dev_upstream, "/chat/completions", {"model": "dev-reasoner", "messages": MESSAGES}).json()
    assert whole["choices"][0]["message"]["reasoning_content"] == thinking


def test_completions_api(dev_upstream: ThreadedUpstream) -> None:
    payload = {"model": "dev-complete", "prompt": "Once upon a time", "max_tokens": 12}
    body = post(dev_upstream, "/completions", payload).json()
    assert body["object"] == "text_completion"
    text = body["choices"][0]["text"]
    assert body["choices"][0]["finish_reason"] == "length"
    assert body["usage"]["completion_tokens"] == count_tokens(text) <= 12
    assert body["usage"]["prompt_tokens"] == count_tokens("Once upon a time")
    streamed = chunks_of(post(dev_upstream, "/completions", {**payload, "stream": True}).text)
    assert all(c["object"] == "text_completion" for c in streamed)
    assert streamed_text(streamed) == text
    assert streamed[-1]["choices"][0]["finish_reason"] == "length"


def test_wrong_endpoint_or_model(dev_upstream: ThreadedUpstream) -> None:
    r = post(dev_upstream, "/completions", {"model": "dev-chat", "prompt": "x"})
    assert r.status_code == 404 and "chat model" in r.json()["error"]["message"]
    r = post(dev_upstream, "/chat/completions", {"model": "nope", "messages": MESSAGES})
    assert r.status_code == 404 and r.json()["error"]["code"] == "model_not_found"
    r = post(dev_upstream, "/chat/completions", {"model": "dev-chat"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "messages"
    r = httpx.post(dev_upstream.v1() + "/chat/completions", content=b"{not json")
    assert r.status_code == 400
    r = post(dev_upstream, "/chat/completions", chat(n=2))
    assert r.status_code == 400
    long = [{"role": "user", "content": "word " * 40000}]
    r = post(dev_upstream, "/chat/completions", {"model": "dev-chat", "messages": long})
    assert r.status_code == 400 and r.json()["error"]["code"] == "context_length_exceeded"


def test_max_tokens_and_stop(dev_upstream: ThreadedUpstream) -> None:
    full = post(dev_upstream, "/chat/completions", chat()).json()["choices"][0]["message"]["content"]
    cut = post(dev_upstream, "/chat/completions", chat(max_tokens=7)).json()
    assert cut["choices"][0]["finish_reason"] == "length"
    assert cut["usage"]["completion_tokens"] == count_tokens(cut["choices"][0]["message"]["content"]) <= 7
    assert full.startswith(cut["choices"][0]["message"]["content"])
    word = full.split()[5]
    stopped = post(dev_upstream, "/chat/completions", chat(stop=[word, "zzz-never"])).json()
    text = stopped["choices"][0]["message"]["content"]
    assert stopped["choices"][0]["finish_reason"] == "stop"
    assert word not in text and full.startswith(text)
    streamed = chunks_of(post(dev_upstream, "/chat/completions", chat(stop=word, stream=True)).text)
    assert streamed_text(streamed) == text


def test_echo_returns_hostile_markdown_verbatim(dev_upstream: ThreadedUpstream) -> None:
    hostile = '<script>alert("x")</script>\n\n[click](javascript:alert(1)) ![i](x" onerror="y) 𝔘nicode ✓'
    payload = {"model": "dev-chat", "messages": [{"role": "user", "content": hostile}], "stream": True}
    assert streamed_text(chunks_of(post(dev_upstream, "/chat/completions", payload, echo=1).text)) == hostile


def test_tokens_and_delay(dev_upstream: ThreadedUpstream) -> None:
    started = time.monotonic()
    chunks = chunks_of(post(dev_upstream, "/chat/completions", chat(stream=True), tokens=10, delay=0.05).text)
    elapsed = time.monotonic() - started
    assert len([c for c in chunks if c["choices"][0]["delta"].get("content")]) == 10
    assert 0.4 <= elapsed < 3


def test_first_delay_holds_the_headers(dev_upstream: ThreadedUpstream) -> None:
    started = time.monotonic()
    with httpx.stream(
        "POST", dev_upstream.v1(first_delay=0.4, tokens=2) + "/chat/completions", json=chat(stream=True)
    ) as r:
        assert time.monotonic() - started >= 0.4
        r.read()


# --- failures -----------------------------------------------------------------------------------


def test_fail_times_per_key_with_retry_after(dev_upstream: ThreadedUpstream, nonce: str) -> None:
    switches = {"fail": 429, "times": 2, "retry_after": 3, "retry_after_ms": 2500, "key": nonce}
    answers = [post(dev_upstream, "/chat/completions", chat(), **switches) for _ in range(3)]
    assert [a.status_code for a in answers] == [429, 429, 200]
    assert answers[0].headers["retry-after"] == "3"
    assert answers[0].headers["retry-after-ms"] == "2500"
    assert answers[0].json()["error"]["code"] == "rate_limit_exceeded"
    assert dev_upstream.stats(nonce) == {
        "requests": 3,
        "completed": 3,
        "disconnected": 0,
        "failed": 2,
        "dropped": 0,
        "active": 0,
    }


@pytest.mark.parametrize("status", [400, 401, 402, 403, 500, 503])
def test_fail_statuses_use_openai_error_shape(dev_upstream: ThreadedUpstream, status: int) -> None:
    r = post(dev_upstream, "/chat/completions", chat(), fail=status)
    assert r.status_code == status
    error = r.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["message"]


def test_require_key(dev_upstream: ThreadedUpstream) -> None:
    url = dev_upstream.v1(require_key="s3cret") + "/models"
    assert httpx.get(url).status_code == 401
    assert (
        httpx.get(url, headers={"Authorization": "Bearer wrong"}).json()["error"]["code"] == "invalid_api_key"
    )
    assert httpx.get(url, headers={"Authorization": "Bearer s3cret"}).status_code == 200


def test_bad_switch_is_a_400(dev_upstream: ThreadedUpstream) -> None:
    r = httpx.get(f"{dev_upstream.url}/s/dealy=1/v1/models")
    assert r.status_code == 400 and "dealy" in r.json()["error"]["message"]
    with pytest.raises(ValueError, match="dialect"):
        parse_options("dialect=martian")
    assert parse_options("delay=0.5, tokens=3,no_usage=1") == {"delay": 0.5, "tokens": 3, "no_usage": True}
    assert switches_path(fail=429, echo=True, key=None) == "/s/fail=429,echo=1"


def test_error_after_sends_an_error_event(dev_upstream: ThreadedUpstream) -> None:
    r = post(dev_upstream, "/chat/completions", chat(stream=True), tokens=10, error_after=3)
    assert r.status_code == 200
    data = sse_lines(r.text)
    assert data[-1] == "[DONE]"
    assert json.loads(data[-2])["error"]["code"] == 500
    assert len(chunks_of(r.text)) == 1 + 3 + 1  # role, three tokens, the error
    assert post(dev_upstream, "/chat/completions", chat(), error_after=1).status_code == 500


def test_malformed_after(dev_upstream: ThreadedUpstream) -> None:
    r = post(dev_upstream, "/chat/completions", chat(stream=True), tokens=5, malformed_after=2)
    bad = [d for d in sse_lines(r.text) if d.startswith("{")]
    broken = [d for d in bad if not _parses(d)]
    assert len(broken) == 1
    assert bad.index(broken[0]) == 3  # after the role chunk and two tokens


def _parses(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


def test_drop_after_closes_abruptly(dev_upstream: ThreadedUpstream, nonce: str) -> None:
    received = b""
    with (
        pytest.raises(httpx.RemoteProtocolError),
        httpx.stream(
            "POST",
            dev_upstream.v1(tokens=10, drop_after=4, key=nonce) + "/chat/completions",
            json=chat(stream=True),
        ) as r,
    ):
        for part in r.iter_bytes():
            received += part
    assert len(chunks_of(received.decode())) == 1 + 4
    assert b"[DONE]" not in received and b'finish_reason":"stop' not in received
    assert dev_upstream.stats(nonce)["dropped"] == 1


def test_eof_after_ends_cleanly_without_finish(dev_upstream: ThreadedUpstream) -> None:
    r = post(dev_upstream, "/chat/completions", chat(stream=True), tokens=10, eof_after=4)
    assert "[DONE]" not in r.text
    assert all(c["choices"][0]["finish_reason"] is None for c in chunks_of(r.text))


def test_no_usage(dev_upstream: ThreadedUpstream) -> None:
    for dialect in DIALECTS:
        r = post(
            dev_upstream,
            "/chat/completions",
            chat(stream=True, stream_options={"include_usage": True}),
            tokens=3,
            no_usage=1,
            dialect=dialect,
        )
        assert '"usage":{' not in r.text and '"usage": {' not in r.text, dialect
    assert "usage" not in post(dev_upstream, "/chat/completions", chat(), no_usage=1).json()


def test_disconnect_is_counted(dev_upstream: ThreadedUpstream, nonce: str) -> None:
    with httpx.stream(
        "POST",
        dev_upstream.v1(delay=0.05, tokens=200, key=nonce) + "/chat/completions",
        json=chat(stream=True),
    ) as r:
        for _ in r.iter_bytes():
            break
    stats = dev_upstream.wait_for(nonce, disconnected=1)
    assert stats["disconnected"] == 1 and stats["completed"] == 0 and stats["active"] == 0


# --- dialects -----------------------------------------------------------------------------------


def stream_in(upstream: ThreadedUpstream, dialect: str, **extra: Any) -> str:
    payload = chat(stream=True, stream_options={"include_usage": True}, **extra)
    return post(upstream, "/chat/completions", payload, tokens=6, dialect=dialect).text


def test_dialect_deepinfra(dev_upstream: ThreadedUpstream) -> None:
    chunks = chunks_of(stream_in(dev_upstream, "deepinfra"))
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    usage = chunks[-1]["usage"]
    assert usage["estimated_cost"] > 0 and usage["completion_tokens"] == count_tokens(streamed_text(chunks))
    assert all("usage" not in c for c in chunks[:-1])


def test_dialect_groq(dev_upstream: ThreadedUpstream) -> None:
    chunks = chunks_of(stream_in(dev_upstream, "groq"))
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["x_groq"]["usage"]["completion_tokens"] == count_tokens(streamed_text(chunks))
    assert all("usage" not in c for c in chunks)


def test_dialect_vllm(dev_upstream: ThreadedUpstream) -> None:
    chunks = chunks_of(stream_in(dev_upstream, "vllm"))
    completions = [c["usage"]["completion_tokens"] for c in chunks]
    assert completions == sorted(completions), "cumulative"
    assert completions[-1] == count_tokens(streamed_text(chunks))
    assert chunks[-1]["choices"] == []
    r = post(dev_upstream, "/chat/completions", chat(stream_options={"include_usage": True}), dialect="vllm")
    assert r.status_code == 400 and r.json()["object"] == "error" and r.json()["code"] == 400


def test_dialect_openrouter(dev_upstream: ThreadedUpstream) -> None:
    text = post(
        dev_upstream, "/chat/completions", chat(stream=True), tokens=4, dialect="openrouter", first_delay=1.2
    ).text
    lines = sse_lines(text)
    assert lines[0] == lines[1] == ": OPENROUTER PROCESSING"  # at once, then every second while waiting
    chunks = chunks_of(text)
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["cost"] > 0
    assert chunks[0]["provider"] == "DevProvider"


def test_dialect_llamacpp(dev_upstream: ThreadedUpstream) -> None:
    chunks = chunks_of(stream_in(dev_upstream, "llamacpp"))
    assert chunks[0]["choices"][0]["delta"]["content"] is None
    assert "timings" in chunks[-2]
    assert chunks[-1]["usage"]["completion_tokens"] == count_tokens(streamed_text(chunks))


# --- the official client -------------------------------------------------------------------------


def test_official_openai_client_streams(dev_upstream: ThreadedUpstream) -> None:
    client = openai.OpenAI(base_url=dev_upstream.v1(require_key="k1"), api_key="k1", max_retries=0)
    stream = client.chat.completions.create(
        model="dev-chat",
        messages=MESSAGES,
        stream=True,
        stream_options={"include_usage": True},  # type: ignore[arg-type]
    )
    parts, usage = [], None
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            parts.append(chunk.choices[0].delta.content)
        usage = chunk.usage or usage
    assert usage is not None and usage.completion_tokens == count_tokens("".join(parts))
    models = [m.id for m in client.models.list()]
    assert "dev-chat" in models
    whole = client.completions.create(model="dev-complete", prompt="Hello", max_tokens=5)
    assert whole.choices[0].finish_reason == "length"
    with pytest.raises(openai.RateLimitError):
        openai.OpenAI(base_url=dev_upstream.v1(fail=429), api_key="x", max_retries=0).models.list()


def test_the_doc_the_server_and_bootstrap_agree_on_the_dev_models(db):
    import io
    import re
    from decimal import Decimal
    from pathlib import Path

    from conversations.catalog.localdev import DEV_MODELS, DEV_PROVIDER_NAME
    from conversations.devupstream.app import MODELS
    from conversations.management.commands.bootstrap import Command
    from conversations.models import Model

    doc = (Path(__file__).resolve().parents[2] / "docs" / "devupstream.md").read_text()
    command = Command(stdout=io.StringIO())  # its dev provider step alone (the whole command makes an admin)
    command._ensure_dev_provider("http://127.0.0.1:8001/v1")
    for spec in DEV_MODELS:
        row = re.search(rf"\| `{spec.id}` \| (\w+) \| \$([\d.]+) / \$([\d.]+) \| ([\d,]+) \|", doc)
        assert row, spec.id
        api, price_in, price_out, context = row.groups()
        registered = Model.objects.get(provider__name=DEV_PROVIDER_NAME, upstream_id=spec.id)
        served = MODELS[spec.id]
        assert api == registered.api == served.api
        assert Decimal(price_in) == registered.input_price == Decimal(str(served.input_price))
        assert Decimal(price_out) == registered.output_price == Decimal(str(served.output_price))
        assert int(context.replace(",", "")) == registered.context_length == served.context_length
        assert registered.display_name == spec.display_name
