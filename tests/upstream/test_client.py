"""The upstream client against the dev upstream over real HTTP: streaming, retries, timeouts, cancellation."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from contextlib import aclosing
from typing import Any

import pytest

from conversations.devupstream.server import ThreadedUpstream
from conversations.upstream import client
from conversations.upstream.client import UpstreamTarget, complete, join_url, list_models, stream
from conversations.upstream.errors import ErrorCode, UpstreamError
from conversations.upstream.events import (
    ContentDelta,
    Finish,
    ReasoningDelta,
    StreamError,
    UpstreamEvent,
    Usage,
)
from conversations.upstream.tokens import count_prompt_tokens, count_tokens

pytestmark = pytest.mark.usefixtures("upstream_http")

MESSAGES = [{"role": "user", "content": "What makes a good code review checklist?"}]
CHAT = {"model": "dev-chat", "messages": MESSAGES}


def target(upstream: ThreadedUpstream, **switches: Any) -> UpstreamTarget:
    return UpstreamTarget(base_url=upstream.v1(**switches))


async def collect(
    t: UpstreamTarget, path: str = "/chat/completions", payload: dict | None = None
) -> list[UpstreamEvent]:
    return [event async for event in stream(t, path, payload or CHAT)]


def text_of(events: list[UpstreamEvent]) -> str:
    return "".join(e.text for e in events if isinstance(e, ContentDelta))


def only(events: list[UpstreamEvent], kind: type) -> list:
    return [e for e in events if isinstance(e, kind)]


# --- normal streams ----------------------------------------------------------------------------


async def test_stream_with_usage(dev_upstream: ThreadedUpstream) -> None:
    events = await collect(target(dev_upstream))
    text = text_of(events)
    assert len(only(events, ContentDelta)) > 20
    assert events[-2] == Finish("stop")
    usage = events[-1]
    assert isinstance(usage, Usage)
    assert usage.prompt_tokens == count_prompt_tokens(MESSAGES)
    assert usage.completion_tokens == count_tokens(text)
    assert not only(events, StreamError)


@pytest.mark.parametrize("dialect", ["openai", "deepinfra", "groq", "vllm", "openrouter", "llamacpp"])
async def test_each_dialect(dev_upstream: ThreadedUpstream, dialect: str) -> None:
    events = await collect(target(dev_upstream, dialect=dialect, tokens=12))
    assert len(only(events, ContentDelta)) == 12
    assert only(events, Finish) == [Finish("stop")]
    [usage] = only(events, Usage)
    assert usage.completion_tokens == count_tokens(text_of(events))
    assert usage.prompt_tokens == count_prompt_tokens(MESSAGES)
    assert (usage.cost is not None) == (dialect in ("deepinfra", "openrouter"))
    assert not only(events, StreamError)


async def test_reasoning_before_content(dev_upstream: ThreadedUpstream) -> None:
    events = await collect(target(dev_upstream), payload={"model": "dev-reasoner", "messages": MESSAGES})
    kinds = [type(e) for e in events if isinstance(e, ContentDelta | ReasoningDelta)]
    assert kinds[0] is ReasoningDelta and kinds[-1] is ContentDelta
    assert kinds.index(ContentDelta) == kinds.count(ReasoningDelta)


async def test_completions_api(dev_upstream: ThreadedUpstream) -> None:
    payload = {"model": "dev-complete", "prompt": "The three rules of testing are", "max_tokens": 9}
    events = await collect(target(dev_upstream), "/completions", payload)
    assert only(events, Finish) == [Finish("length")]
    assert only(events, Usage)[0].completion_tokens == count_tokens(text_of(events)) <= 9


async def test_no_usage_means_no_usage_event(dev_upstream: ThreadedUpstream) -> None:
    events = await collect(target(dev_upstream, no_usage=1, tokens=5))
    assert not only(events, Usage) and events[-1] == Finish("stop")


async def test_stream_options_can_be_left_out(dev_upstream: ThreadedUpstream) -> None:
    t = UpstreamTarget(base_url=dev_upstream.v1(tokens=5), send_stream_options=False)
    events = await collect(t)
    assert not only(events, Usage), "OpenAI's dialect sends usage only when asked"
    assert events[-1] == Finish("stop")


async def test_key_is_sent_and_never_shown(dev_upstream: ThreadedUpstream) -> None:
    t = UpstreamTarget(base_url=dev_upstream.v1(require_key="sk-dev-123", tokens=3), api_key="sk-dev-123")
    assert "api_key" not in repr(t) and "sk-dev-123" not in repr(t).replace(t.base_url, "")
    assert not only(await collect(t), StreamError)
    wrong = UpstreamTarget(base_url=t.base_url, api_key="sk-other-456")
    [error] = await collect(wrong)
    assert error.code == ErrorCode.UPSTREAM_AUTH and "sk-other" not in error.message


# --- HTTP errors and retries -------------------------------------------------------------------


async def test_429_with_retry_after_then_success(dev_upstream: ThreadedUpstream, nonce: str) -> None:
    t = target(dev_upstream, fail=429, times=1, retry_after=0.8, key=nonce, tokens=3)
    started = time.monotonic()
    events = await collect(t)
    waited = time.monotonic() - started
    assert text_of(events) and not only(events, StreamError)
    assert 0.8 <= waited < 3, waited  # Retry-After, not the 0.5 s backoff
    assert dev_upstream.stats(nonce)["requests"] == 2


async def test_429_forever_is_rate_limited(
    dev_upstream: ThreadedUpstream, nonce: str, fast_backoff: None
) -> None:
    [error] = await collect(target(dev_upstream, fail=429, key=nonce))
    assert error.code == ErrorCode.UPSTREAM_RATE_LIMITED and error.status == 429
    assert dev_upstream.stats(nonce)["requests"] == 3  # max_retries=2


async def test_500_is_unavailable_after_retries(
    dev_upstream: ThreadedUpstream, nonce: str, fast_backoff: None
) -> None:
    [error] = await collect(target(dev_upstream, fail=500, key=nonce))
    assert error.code == ErrorCode.UPSTREAM_UNAVAILABLE
    assert dev_upstream.stats(nonce)["requests"] == 3


async def test_500_twice_then_success(dev_upstream: ThreadedUpstream, nonce: str, fast_backoff: None) -> None:
    events = await collect(target(dev_upstream, fail=503, times=2, key=nonce, tokens=4))
    assert len(only(events, ContentDelta)) == 4 and not only(events, StreamError)


@pytest.mark.parametrize(
    ("status", "code"),
    [(401, ErrorCode.UPSTREAM_AUTH), (403, ErrorCode.UPSTREAM_AUTH), (402, ErrorCode.INSUFFICIENT_CREDITS)],
)
async def test_final_errors_are_not_retried(
    dev_upstream: ThreadedUpstream, nonce: str, status: int, code: ErrorCode
) -> None:
    [error] = await collect(target(dev_upstream, fail=status, key=nonce))
    assert error.code == code and error.status == status and not error.retryable
    assert dev_upstream.stats(nonce)["requests"] == 1


async def test_400_carries_the_provider_message(dev_upstream: ThreadedUpstream, nonce: str) -> None:
    [error] = await collect(target(dev_upstream, fail=400, key=nonce))
    assert error.code == ErrorCode.UPSTREAM_BAD_REQUEST and "fail=400" in error.message
    [error] = await collect(target(dev_upstream), payload={"model": "no-such-model", "messages": MESSAGES})
    assert error.code == ErrorCode.UPSTREAM_BAD_REQUEST and "no-such-model" in error.message
    [error] = await collect(target(dev_upstream, dialect="vllm", fail=400))  # vLLM's flat error shape
    assert "fail=400" in error.message
    assert dev_upstream.stats(nonce)["requests"] == 1


async def test_connection_refused_is_unreachable_and_never_sent(fast_backoff: None) -> None:
    [error] = await collect(UpstreamTarget(base_url="http://127.0.0.1:9/v1"))
    assert error.code == ErrorCode.UPSTREAM_UNREACHABLE and not error.sent


async def test_an_unknown_host_is_unreachable_and_never_sent(fast_backoff: None) -> None:
    [error] = await collect(UpstreamTarget(base_url="http://nonexistent.invalid/v1", max_retries=0))
    assert error.code == ErrorCode.UPSTREAM_UNREACHABLE and not error.sent
    with pytest.raises(UpstreamError) as caught:
        await list_models(UpstreamTarget(base_url="http://nonexistent.invalid/v1", max_retries=0))
    assert caught.value.code == ErrorCode.UPSTREAM_UNREACHABLE and not caught.value.sent


async def test_an_answered_failure_was_sent(dev_upstream: ThreadedUpstream, nonce: str) -> None:
    [error] = await collect(dataclasses.replace(target(dev_upstream, fail=503, key=nonce), max_retries=0))
    assert error.code == ErrorCode.UPSTREAM_UNAVAILABLE and error.sent


@pytest.mark.parametrize("base", ["not a url", "ftp://example.com/v1", "http://127.0.0.1:99999/v1"])
async def test_invalid_base_url_is_an_error_not_an_exception(base: str) -> None:
    t = UpstreamTarget(base_url=base)
    [error] = await collect(t)
    assert error.code == ErrorCode.UPSTREAM_UNREACHABLE and "base URL" in error.message and not error.sent
    [error] = await complete(t, "/chat/completions", CHAT)
    assert "base URL" in error.message
    with pytest.raises(UpstreamError):
        await list_models(t)


# --- timeouts ------------------------------------------------------------------------------------


@pytest.mark.parametrize("dialect", ["openai", "openrouter"])  # OpenRouter's comments are not tokens
async def test_slow_first_token_times_out(dev_upstream: ThreadedUpstream, nonce: str, dialect: str) -> None:
    t = UpstreamTarget(
        base_url=dev_upstream.v1(first_delay=3, dialect=dialect, key=nonce),
        first_token_timeout=0.4,
        read_timeout=5,
    )
    started = time.monotonic()
    [error] = await collect(t)
    assert error.code == ErrorCode.UPSTREAM_TIMEOUT
    assert 0.4 <= time.monotonic() - started < 2.5  # well before first_delay=3
    assert dev_upstream.stats(nonce)["requests"] == 1, "a timeout is not retried"
    assert dev_upstream.wait_for(nonce, disconnected=1)["disconnected"] == 1


async def test_stall_between_chunks_times_out_with_partial_content(dev_upstream: ThreadedUpstream) -> None:
    t = UpstreamTarget(base_url=dev_upstream.v1(delay=1.0, tokens=5), first_token_timeout=5, read_timeout=0.3)
    events = await collect(t)
    assert len(only(events, ContentDelta)) == 1
    assert events[-1].code == ErrorCode.UPSTREAM_TIMEOUT


# --- broken streams: never retried once a token was relayed -------------------------------------


async def test_dropped_connection_keeps_partial_content(dev_upstream: ThreadedUpstream, nonce: str) -> None:
    events = await collect(target(dev_upstream, tokens=20, drop_after=5, key=nonce))
    assert len(only(events, ContentDelta)) == 5
    assert isinstance(events[-1], StreamError) and events[-1].code == ErrorCode.UPSTREAM_STREAM_BROKEN
    assert len(only(events, StreamError)) == 1
    assert dev_upstream.stats(nonce)["requests"] == 1


async def test_mid_stream_error(dev_upstream: ThreadedUpstream, nonce: str) -> None:
    events = await collect(target(dev_upstream, tokens=20, error_after=3, key=nonce))
    assert len(only(events, ContentDelta)) == 3
    assert events[-1].code == ErrorCode.UPSTREAM_STREAM_BROKEN and "error_after" in events[-1].message
    assert dev_upstream.stats(nonce)["requests"] == 1


async def test_malformed_chunk(dev_upstream: ThreadedUpstream, nonce: str) -> None:
    events = await collect(target(dev_upstream, tokens=20, malformed_after=4, key=nonce))
    assert len(only(events, ContentDelta)) == 4
    assert events[-1].code == ErrorCode.UPSTREAM_STREAM_BROKEN
    assert dev_upstream.stats(nonce)["requests"] == 1


async def test_failure_before_the_first_token_is_retried(
    dev_upstream: ThreadedUpstream, nonce: str, fast_backoff: None
) -> None:
    events = await collect(target(dev_upstream, tokens=20, drop_after=0, key=nonce))
    assert [type(e) for e in events] == [StreamError]
    assert dev_upstream.stats(nonce)["requests"] == 3
    other = f"{nonce}-err"
    events = await collect(target(dev_upstream, tokens=20, error_after=0, key=other))
    assert [type(e) for e in events] == [StreamError]
    assert dev_upstream.stats(other)["requests"] == 3


async def test_truncated_stream_is_reported(dev_upstream: ThreadedUpstream) -> None:
    events = await collect(target(dev_upstream, tokens=20, eof_after=6))
    assert len(only(events, ContentDelta)) == 6
    assert events[-1].code == ErrorCode.UPSTREAM_STREAM_BROKEN


# --- cancellation ------------------------------------------------------------------------------


async def test_cancel_closes_the_upstream_connection(dev_upstream: ThreadedUpstream, nonce: str) -> None:
    received: list[UpstreamEvent] = []
    three = asyncio.Event()

    async def consume() -> None:
        async with aclosing(
            stream(target(dev_upstream, delay=0.05, tokens=400, key=nonce), "/chat/completions", CHAT)
        ) as events:
            async for event in events:
                received.append(event)
                if len(received) == 3:
                    three.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(three.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    started = time.monotonic()
    stats = await asyncio.to_thread(dev_upstream.wait_for, nonce, 5.0, disconnected=1)
    assert stats["disconnected"] == 1 and stats["completed"] == 0
    assert time.monotonic() - started < 2, "the server saw the close at once"
    assert len(received) < 10


async def test_breaking_out_closes_the_connection(dev_upstream: ThreadedUpstream, nonce: str) -> None:
    async with aclosing(
        stream(target(dev_upstream, delay=0.05, tokens=400, key=nonce), "/chat/completions", CHAT)
    ) as events:
        async for _event in events:
            break
    stats = await asyncio.to_thread(dev_upstream.wait_for, nonce, 5.0, disconnected=1)
    assert stats["disconnected"] == 1


async def test_cancel_during_retry_wait(dev_upstream: ThreadedUpstream, nonce: str) -> None:
    task = asyncio.create_task(collect(target(dev_upstream, fail=429, retry_after=30, key=nonce)))
    await asyncio.sleep(0.3)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert dev_upstream.stats(nonce)["requests"] == 1


# --- non-streaming, models, URLs, pool -------------------------------------------------------


async def test_complete_non_streaming(dev_upstream: ThreadedUpstream) -> None:
    events = await complete(
        target(dev_upstream, dialect="vllm"),
        "/chat/completions",
        {**CHAT, "stream_options": {"include_usage": True}},
    )  # vLLM would 400 on it
    assert [type(e) for e in events] == [ContentDelta, Finish, Usage]
    assert events[-1].completion_tokens == count_tokens(events[0].text)
    streamed = await collect(target(dev_upstream))
    assert events[0].text == text_of(streamed)


async def test_complete_reasoner_and_completions(dev_upstream: ThreadedUpstream) -> None:
    events = await complete(
        target(dev_upstream, dialect="deepinfra"),
        "chat/completions",
        {"model": "dev-reasoner", "messages": MESSAGES},
    )
    assert [type(e) for e in events] == [ReasoningDelta, ContentDelta, Finish, Usage]
    assert events[-1].cost is not None
    events = await complete(
        target(dev_upstream), "/completions", {"model": "dev-complete", "prompt": "Hi", "max_tokens": 4}
    )
    assert events[-2] == Finish("length")


async def test_complete_errors_and_retries(
    dev_upstream: ThreadedUpstream, nonce: str, fast_backoff: None
) -> None:
    events = await complete(target(dev_upstream, fail=500, times=1, key=nonce), "/chat/completions", CHAT)
    assert not only(events, StreamError)
    [error] = await complete(target(dev_upstream, fail=402), "/chat/completions", CHAT)
    assert error.code == ErrorCode.INSUFFICIENT_CREDITS
    [error] = await complete(
        UpstreamTarget(base_url=dev_upstream.v1(first_delay=2), first_token_timeout=0.3),
        "/chat/completions",
        CHAT,
    )
    assert error.code == ErrorCode.UPSTREAM_TIMEOUT
    other = f"{nonce}-drop"
    [error] = await complete(target(dev_upstream, drop_after=1, key=other), "/chat/completions", CHAT)
    assert error.code == ErrorCode.UPSTREAM_STREAM_BROKEN
    assert dev_upstream.stats(other)["requests"] == 3


async def test_list_models(dev_upstream: ThreadedUpstream, nonce: str, fast_backoff: None) -> None:
    models = await list_models(target(dev_upstream))
    assert [m["id"] for m in models] == ["dev-chat", "dev-reasoner", "dev-complete"]
    assert await list_models(target(dev_upstream, fail=503, times=1, key=nonce))
    with pytest.raises(UpstreamError) as info:
        await list_models(target(dev_upstream, require_key="right"))
    assert info.value.code == ErrorCode.UPSTREAM_AUTH


@pytest.mark.parametrize(
    ("base", "path", "url"),
    [
        ("https://api.example.com/v1", "/chat/completions", "https://api.example.com/v1/chat/completions"),
        ("https://api.example.com/v1/", "/chat/completions", "https://api.example.com/v1/chat/completions"),
        ("https://api.example.com/v1/", "models", "https://api.example.com/v1/models"),
        ("https://api.example.com/v1", "models", "https://api.example.com/v1/models"),
        ("https://h/openai/v1//", "//completions", "https://h/openai/v1/completions"),
    ],
)
def test_join_url(base: str, path: str, url: str) -> None:
    assert join_url(base, path) == url


async def test_one_pooled_client_per_loop() -> None:
    first = client.get_client()
    assert client.get_client() is first
    other = await asyncio.to_thread(lambda: asyncio.run(_client_in_new_loop()))
    assert other is not first


async def _client_in_new_loop() -> object:
    c = client.get_client()
    await client.close_client()
    return c


async def test_the_first_token_is_handed_over_before_the_rest_of_its_read(dev_upstream: ThreadedUpstream) -> None:
    """A fast upstream's whole answer can arrive in one read: the first batch is the first token alone (the rest of
    the read follows in the next), so that it is not held until everything that arrived with it is normalised."""
    t = target(dev_upstream, delay=0, tokens=200)
    batches = []
    async with aclosing(client.stream_batches(t, "/chat/completions", CHAT)) as stream_of_batches:
        async for batch in stream_of_batches:
            batches.append(batch)
    events = [e for batch in batches for e in batch]
    assert len(only(events, ContentDelta)) == 200 and isinstance(events[-1], Usage)
    assert [type(e) for e in batches[0]] == [ContentDelta]
    assert max(len(batch) for batch in batches) > 1, "later reads still come a read at a time"


async def test_concurrent_streams_share_the_pool(dev_upstream: ThreadedUpstream) -> None:
    t = target(dev_upstream, delay=0.01, tokens=20)
    results = await asyncio.gather(*(collect(t) for _ in range(50)))
    assert all(len(only(r, ContentDelta)) == 20 and not only(r, StreamError) for r in results)


# --- HTTPS (tls_upstream: tests/upstream_fixtures.py) --------------------------------------------------


async def test_https_upstream_streams_whole_replies_on_kept_connections(
    tls_upstream: ThreadedUpstream, monkeypatch: pytest.MonkeyPatch, nonce: str
) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", tls_upstream.tls[0])  # the pool's TLS context trusts it (httpx reads it)
    await client.close_client()  # a pool made from now on
    t = target(tls_upstream, key=nonce, tokens=30)
    first, second = await collect(t), await collect(t)
    assert len(only(first, ContentDelta)) == 30 and text_of(first) == text_of(second)
    assert isinstance(first[-1], Usage)
    stats = tls_upstream.stats(nonce)
    assert stats["requests"] == 2 and stats["completed"] == 2
    cancelled = stream(target(tls_upstream, key=nonce + "-stop", delay=0.05, tokens=100), "/chat/completions", CHAT)
    async with aclosing(cancelled):
        async for event in cancelled:
            if isinstance(event, ContentDelta):
                break  # closing the stream closes its TLS connection: the provider stops
    assert tls_upstream.wait_for(nonce + "-stop", disconnected=1)["disconnected"] == 1
    await client.close_client()


async def test_https_upstream_with_an_untrusted_certificate_is_unreachable(tls_upstream: ThreadedUpstream) -> None:
    await client.close_client()
    events = await collect(UpstreamTarget(base_url=tls_upstream.v1(), max_retries=0))
    assert len(events) == 1 and events[0].code == ErrorCode.UPSTREAM_UNREACHABLE and not events[0].sent
    await client.close_client()


# --- One timer per stream ---------------------------------------------------------------------------------

async def test_read_deadline_keeps_one_timer_and_only_times_out_reads() -> None:
    """Reads under a deadline that moves on share one timer; it firing between reads cancels nothing; a read
    past its deadline raises TimeoutError; a cancel from outside stays a cancel."""
    loop = asyncio.get_running_loop()
    reads = client._ReadDeadline()
    try:
        assert await reads.read(asyncio.sleep(0.01, "a"), loop.time() + 0.05) == "a"
        for _ in range(10):  # each read within its own deadline, together well past the first one
            assert await reads.read(asyncio.sleep(0.01, "b"), loop.time() + 0.05) == "b"
        await asyncio.sleep(0.1)  # the timer fires between reads: nothing is cancelled
        assert await reads.read(asyncio.sleep(0, "c"), loop.time() + 0.05) == "c"
        started = loop.time()
        with pytest.raises(TimeoutError):
            await reads.read(asyncio.sleep(5), loop.time() + 0.05)
        assert loop.time() - started < 1
        assert asyncio.current_task().cancelling() == 0
        assert await reads.read(asyncio.sleep(0, "d"), loop.time() + 0.05) == "d"  # usable after a timeout

        async def read_forever() -> None:
            await reads.read(asyncio.sleep(5), loop.time() + 10)

        task = asyncio.create_task(read_forever())
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    finally:
        reads.close()


async def test_read_deadline_creates_timers_per_deadline_not_per_read(monkeypatch) -> None:
    loop = asyncio.get_running_loop()
    made = []
    call_at = loop.call_at
    monkeypatch.setattr(loop, "call_at", lambda *args, **kw: made.append(args[0]) or call_at(*args, **kw))
    reads = client._ReadDeadline()
    try:
        for _ in range(200):
            await reads.read(asyncio.sleep(0), loop.time() + 30)
    finally:
        reads.close()
    assert len(made) == 1, made
