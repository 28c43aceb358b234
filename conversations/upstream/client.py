"""Owns all HTTP to providers: the shared connection pool, streaming with timeouts and retries, error mapping.

Nothing here raises for an upstream failure while streaming or completing: the failure arrives as one
final `StreamError` event (only `list_models` raises `UpstreamError`). Cancelling the consuming task
propagates `CancelledError` and closes the upstream response and its connection at once; consumers
that may stop early should iterate under ``contextlib.aclosing(stream(...))`` so the same happens on
``break``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import os
import random
import weakref
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from functools import lru_cache
from typing import Any, Literal
from urllib.parse import urlsplit

import httpx

from conversations.upstream.errors import (
    ErrorCode,
    UpstreamError,
    error_from_response,
    unreachable,
    user_message,
)
from conversations.upstream.events import StreamError, UpstreamEvent, Usage
from conversations.upstream.normalize import StreamNormalizer, normalize_response
from conversations.upstream.sse import SSEDecoder
from conversations.upstream.transport import AiohttpTransport

logger = logging.getLogger(__name__)

# Exponential backoff between retries when the upstream gives no usable Retry-After (as the official SDK).
BACKOFF_BASE = 0.5
BACKOFF_CAP = 8.0
# After `[DONE]` the body should end at once; a server that keeps it open is waited for this long only.
AFTER_DONE_GRACE = 1.0
# When more of the answer has arrived with a reply's first token (a fast upstream's whole answer can come in one
# read), the reader steps aside this long after handing the token over, so that it reaches the client first: a
# turn of the loop is not enough for the relay, the consumer and Daphne's write.
FIRST_TOKEN_PAUSE = 0.001
MAX_ERROR_BODY = 64 * 1024  # bytes of an error answer kept (proxies send whole HTML pages)
MAX_JSON_BODY = 16 * 1024 * 1024  # a non-streaming answer larger than this is refused


@dataclass(frozen=True)
class UpstreamTarget:
    """Where and how to reach one provider. The key never appears in repr() or logs."""

    base_url: str
    api_key: str | None = field(default=None, repr=False)
    headers: Mapping[str, str] = field(default_factory=dict, hash=False, repr=False)  # may carry secrets too
    send_stream_options: bool = True  # some upstreams reject `stream_options`
    connect_timeout: float = 10
    first_token_timeout: float = 120  # request sent → first event (keep-alive comments do not count)
    read_timeout: float = 60  # between two reads once the reply is flowing
    max_retries: int = 2
    retry_after_max: float = 60  # a longer Retry-After is not waited for: backoff instead
    cost_lookup: bool = False  # ask the provider its own cost of each reply (OpenRouter's /generation?id=)


# --- the shared client ----------------------------------------------------------------------------

_limits = {"max_connections": 1000, "keepalive_expiry": 5.0}
_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, httpx.AsyncClient]
_clients = weakref.WeakKeyDictionary()
_transports: weakref.WeakKeyDictionary[httpx.AsyncClient, AiohttpTransport] = weakref.WeakKeyDictionary()
_clients_pid = os.getpid()


def configure(*, max_connections: int = 1000, keepalive_expiry: float = 5.0) -> None:
    """Pool limits for clients created from now on (call at startup, before the first request): connections open at
    once, and how long an idle one is kept for the next request."""
    _limits.update(max_connections=max_connections, keepalive_expiry=keepalive_expiry)


def get_client() -> httpx.AsyncClient:
    """The process's AsyncClient for the running event loop (a pool cannot be shared across loops)."""
    global _clients_pid
    if _clients_pid != os.getpid():  # a forked worker must not share its parent's sockets
        _clients.clear()
        _clients_pid = os.getpid()
    loop = asyncio.get_running_loop()
    client = _clients.get(loop)
    if client is None or client.is_closed:
        # Every request sets its own timeouts (this default is a backstop); HTTP/1.1 on aiohttp (transport.py), the
        # egress proxy read from the environment now. Loading the CA bundle takes ~50 ms: once per client.
        transport = AiohttpTransport(ssl_context=httpx.create_ssl_context(),
                                     max_connections=int(_limits["max_connections"]),
                                     keepalive_expiry=_limits["keepalive_expiry"])
        client = httpx.AsyncClient(transport=transport, follow_redirects=False, timeout=httpx.Timeout(60, connect=10))
        _clients[loop] = client
        _transports[client] = transport
    return client


async def _send(client: httpx.AsyncClient, request: httpx.Request) -> httpx.Response:
    """`client.send(request, stream=True)` without the client's layers this module never uses (auth flows,
    redirects, event hooks, a cookie jar: a provider's cookies are not kept) and their cost on every request
    (about 0.4 ms of the time to first token, timed ad hoc)."""
    response = await _transports[client].handle_async_request(request)
    response.request = request
    return response


async def close_client() -> None:
    """Close the running loop's client (application shutdown, end of a test)."""
    client = _clients.pop(asyncio.get_running_loop(), None)
    if client is not None:
        await client.aclose()


# --- helpers --------------------------------------------------------------------------------------


def join_url(base_url: str, path: str) -> str:
    """`base_url` + `path` with exactly one slash between them, whichever of the two carries it."""
    if not path:
        return base_url
    return base_url.rstrip("/") + "/" + path.lstrip("/")


def _api_of(path: str) -> Literal["chat", "completions"]:
    p = path.rstrip("/")
    return "completions" if p.endswith("/completions") and not p.endswith("chat/completions") else "chat"


def _headers(target: UpstreamTarget, accept: str) -> dict[str, str]:
    headers = {"Accept": accept, **target.headers}
    if target.api_key:
        headers["Authorization"] = f"Bearer {target.api_key}"
    return headers


def _timeout(target: UpstreamTarget) -> dict[str, float | None]:
    # Reads are timed here, not by httpx: its read timeout would also apply while waiting for the
    # first token, which is allowed to take much longer than the gap between two chunks.
    return {"connect": target.connect_timeout, "read": None, "write": target.read_timeout, "pool": None}


@lru_cache(maxsize=256)
def _parsed_url(url: str) -> httpx.URL:
    return httpx.URL(url)


def _request(
    client: httpx.AsyncClient, url: str, body: dict[str, Any], target: UpstreamTarget, accept: str
) -> httpx.Request:
    """The POST that `client.build_request(url, json=body, ...)` makes, built directly: this client has no cookies,
    params or base URL to merge in, and the merging is two thirds of the build (0.15 → 0.05 ms: docs/benchmarks.md)."""
    content = json.dumps(body, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()
    headers = {**client.headers, **_headers(target, accept), "Content-Type": "application/json"}
    return httpx.Request("POST", _parsed_url(url), headers=headers, content=content,
                         extensions={"timeout": _timeout(target)})


def _where(target: UpstreamTarget) -> str:
    try:
        return urlsplit(target.base_url).netloc  # for logs: never the path's query, never the key
    except ValueError:
        return "(invalid base URL)"


@lru_cache(maxsize=256)
def _url_problem(url: str) -> str | None:
    """Why httpx could not even try this URL (checked first: some mistakes surface as odd exceptions)."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, ValueError) as exc:
        return str(exc)
    if parsed.scheme not in ("http", "https"):
        return f"unsupported scheme {parsed.scheme or '(none)'!r}"
    if not parsed.host:
        return "no host"
    if parsed.port is not None and not 0 < parsed.port < 65536:
        return f"port {parsed.port} out of range"
    return None


def _bad_url(url: str) -> UpstreamError | None:
    problem = _url_problem(url)
    if problem is None:
        return None
    return unreachable(problem, message=f"The provider's base URL is invalid: {problem}.")


def _backoff(target: UpstreamTarget, attempt: int, retry_after: float | None) -> float:
    if retry_after is not None and 0 < retry_after <= target.retry_after_max:
        return retry_after
    return min(BACKOFF_CAP, BACKOFF_BASE * 2**attempt) * (1 - 0.25 * random.random())


def _error_event(err: UpstreamError) -> StreamError:
    return StreamError(err.code, err.message, retryable=err.retryable, status=err.status, sent=err.sent)


def _transport_error(exc: Exception, target: UpstreamTarget, *, responded: bool) -> UpstreamError:
    """A network failure as an UpstreamError; `responded`: the status line had arrived."""
    if responded:
        return UpstreamError(
            ErrorCode.UPSTREAM_STREAM_BROKEN,
            user_message(ErrorCode.UPSTREAM_STREAM_BROKEN),
            retryable=True,
            detail=f"{type(exc).__name__}: {exc}",
        )
    if isinstance(exc, httpx.ConnectTimeout):
        return unreachable(f"no connection within {target.connect_timeout:g} s")
    if isinstance(exc, httpx.UnsupportedProtocol):
        return unreachable(str(exc), message=f"The provider's base URL is invalid: {exc}")
    if isinstance(exc, httpx.LocalProtocolError):  # nothing was sent; the message names a header, never its value
        return UpstreamError(
            ErrorCode.UPSTREAM_UNAVAILABLE, f"The provider's request headers are invalid: {exc}.", sent=False
        )
    if isinstance(exc, httpx.ProxyError):  # the egress proxy refused or failed: the provider was never reached
        return unreachable(f"egress proxy: {exc}")
    detail = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, httpx.ConnectError):  # nothing was sent: no connection to send it on
        return unreachable(detail)
    return UpstreamError(
        ErrorCode.UPSTREAM_UNAVAILABLE,
        user_message(ErrorCode.UPSTREAM_UNAVAILABLE),
        retryable=True,
        detail=detail,
        sent=not isinstance(exc, httpx.PoolTimeout),  # still waiting for a connection of chatweb's own pool
    )


def _only_failure(events: list[UpstreamEvent]) -> bool:
    """True when the events end in a StreamError and carry nothing else but usage."""
    return (
        bool(events)
        and isinstance(events[-1], StreamError)
        and all(isinstance(e, Usage) for e in events[:-1])
    )


def _as_error(event: StreamError) -> UpstreamError:
    return UpstreamError(event.code, event.message, status=event.status, retryable=event.retryable)


def _timed_out(what: str) -> UpstreamError:
    return UpstreamError(ErrorCode.UPSTREAM_TIMEOUT, f"{user_message(ErrorCode.UPSTREAM_TIMEOUT)} ({what})")


async def _read_limited(response: httpx.Response, limit: int) -> bytes:
    body = bytearray()
    async for chunk in response.aiter_bytes():
        body += chunk
        if len(body) >= limit:
            break
    return bytes(body[:limit])


async def _error_from(response: httpx.Response, deadline: float) -> UpstreamError:
    try:
        async with asyncio.timeout_at(deadline):
            body = await _read_limited(response, MAX_ERROR_BODY)
    except (TimeoutError, httpx.HTTPError):
        body = b""  # the status says enough
    return error_from_response(response.status_code, response.headers, body)


def _log_retry(target: UpstreamTarget, err: UpstreamError, attempt: int, wait: float) -> None:
    logger.warning(
        "upstream %s: %s (status %s, %s); retry %d/%d in %.2f s",
        _where(target),
        err.code,
        err.status,
        err.detail or err.message,
        attempt + 1,
        target.max_retries,
        wait,
    )


# --- streaming ------------------------------------------------------------------------------------


def _stream_body(target: UpstreamTarget, payload: dict[str, Any]) -> dict[str, Any]:
    body = {**payload, "stream": True}
    if target.send_stream_options:
        options = body.get("stream_options")
        body["stream_options"] = {**(options if isinstance(options, dict) else {}), "include_usage": True}
    else:
        body.pop("stream_options", None)
    return body


class _Retry(Exception):
    """Internal: this attempt failed before anything was relayed and may be tried again."""

    def __init__(self, error: UpstreamError) -> None:
        self.error = error


async def stream(
    target: UpstreamTarget, path: str, payload: dict[str, Any]
) -> AsyncGenerator[UpstreamEvent, None]:
    """Stream a `/chat/completions` or `/completions` reply as typed events.

    Ends after the last event, or with exactly one `StreamError` on failure. Retries (408, 409, 429,
    5xx, network errors, a retryable error sent as the first event) happen only before the first event
    was yielded, waiting Retry-After when 0 < it <= `retry_after_max`, else an exponential backoff.
    """
    async with contextlib.aclosing(stream_batches(target, path, payload)) as batches:
        async for batch in batches:
            for event in batch:
                yield event


async def stream_batches(
    target: UpstreamTarget, path: str, payload: dict[str, Any], *, response_ids: list[str] | None = None
) -> AsyncGenerator[list[UpstreamEvent], None]:
    """`stream`, as the events of each read together: whoever relays them can write them at once (a fast
    upstream's tokens often arrive several to a read). `response_ids`, when given, receives the upstream's id of
    the reply as soon as a chunk carries it: a reply stopped before its usage arrived still has it (for the
    ledger, which reconciliation matches by it)."""
    url = join_url(target.base_url, path)
    if (bad := _bad_url(url)) is not None:
        yield [_error_event(bad)]
        return
    body = _stream_body(target, payload)
    api = _api_of(path)
    attempt = 0
    while True:
        attempt_events = _attempt_stream(
            target, url, body, api, final=attempt >= target.max_retries, response_ids=response_ids
        )
        try:
            async for batch in attempt_events:
                yield batch
            return
        except _Retry as retry:
            err = retry.error
        finally:
            await attempt_events.aclose()
        wait = _backoff(target, attempt, err.retry_after)
        _log_retry(target, err, attempt, wait)
        await asyncio.sleep(wait)
        attempt += 1


class _ReadDeadline:
    """Times the reads of one stream with one timer, not one per read (an `asyncio.timeout` per read was a timer
    made and cancelled for every chunk: 7 % of the server's samples at 1,000 streams). `read(awaitable, when)`
    awaits under a deadline; the timer only moves when it fires early (the deadline moved on) or must fire sooner.
    Like `asyncio.timeout`, expiry cancels the task and the read raises TimeoutError; between reads nothing is
    cancelled, whenever the timer fires."""

    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._task: asyncio.Task | None = None
        self._when = math.inf  # the deadline of the read in progress; inf between reads
        self._timer: asyncio.TimerHandle | None = None
        self._expired = False

    async def read(self, awaitable: Any, when: float) -> Any:
        if self._task is None:
            self._task = asyncio.current_task()
        self._when = when
        if self._timer is None or when < self._timer.when():
            if self._timer is not None:
                self._timer.cancel()
            self._timer = self._loop.call_at(when, self._fire)
        try:
            return await awaitable
        except asyncio.CancelledError:
            if self._expired:
                self._expired = False
                if self._task is not None and self._task.uncancel() == 0:  # ours alone: a timeout
                    raise TimeoutError from None
            raise
        finally:
            self._when = math.inf

    def _fire(self) -> None:
        self._timer = None
        if self._when == math.inf:
            return  # between reads: the next read arms it again
        if self._loop.time() < self._when:
            self._timer = self._loop.call_at(self._when, self._fire)  # the deadline moved on: fire later
        elif self._task is not None and not self._expired:
            self._expired = True
            self._task.cancel()

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


async def _attempt_stream(
    target: UpstreamTarget,
    url: str,
    body: dict[str, Any],
    api: Literal["chat", "completions"],
    *,
    final: bool,
    response_ids: list[str] | None = None,
) -> AsyncGenerator[list[UpstreamEvent], None]:
    """One request, its events a read at a time. Raises _Retry (only before its first event, and unless
    `final`) to ask for another."""
    client = get_client()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + target.first_token_timeout
    relayed = False

    def fail(err: UpstreamError) -> StreamError:
        if err.retryable and not relayed and not final:
            raise _Retry(err)
        if err.detail:
            logger.warning(
                "upstream %s: %s (status %s): %s", _where(target), err.code, err.status, err.detail
            )
        return _error_event(err)

    request = _request(client, url, body, target, "text/event-stream")
    try:
        async with asyncio.timeout_at(deadline):
            response = await _send(client, request)
    except TimeoutError:
        yield [fail(_timed_out(f"no answer within {target.first_token_timeout:g} s"))]
        return
    except httpx.HTTPError as exc:
        yield [fail(_transport_error(exc, target, responded=False))]
        return

    reads = _ReadDeadline()
    try:
        if not response.is_success:
            yield [fail(await _error_from(response, deadline))]
            return
        if response.headers.get("content-type", "").startswith("application/json"):
            # The upstream ignored `stream: true` and answered in one JSON body: relay it all the same.
            yield await _whole_body(response, api, target, deadline, fail)
            return

        decoder, normalizer = SSEDecoder(), StreamNormalizer(api)
        chunks = _body_chunks(response)
        while True:
            try:
                if relayed:
                    deadline = loop.time() + (AFTER_DONE_GRACE if normalizer.done else target.read_timeout)
                data = await reads.read(anext(chunks), deadline)
            except StopAsyncIteration:
                events = [e for sse in decoder.close() for e in normalizer.feed(sse)]
                events.extend(normalizer.finish())
            except TimeoutError:
                if normalizer.done:
                    return
                what = (
                    f"no first token within {target.first_token_timeout:g} s"
                    if not relayed
                    else f"nothing received for {target.read_timeout:g} s"
                )
                events = normalizer.finish()
                if events and isinstance(events[-1], StreamError):  # cut short: say it timed out
                    events[-1] = fail(_timed_out(what))
                elif not relayed:
                    events.append(fail(_timed_out(what)))
            except httpx.HTTPError as exc:
                if normalizer.done:
                    return
                if not relayed and not final:
                    raise _Retry(_transport_error(exc, target, responded=True)) from None
                # What arrived stays valid; the normaliser says whether the reply was complete.
                logger.warning("upstream %s: stream broken: %s: %s", _where(target), type(exc).__name__, exc)
                events = normalizer.finish()
            else:
                sses, start = decoder.feed(data), 0
                while start < len(sses):
                    if relayed:
                        events = [e for sse in sses[start:] for e in normalizer.feed(sse)]
                        start = len(sses)
                    else:
                        # The first token goes as soon as it is known: a fast upstream's whole answer can come in
                        # one read, and normalising all of it first delayed the first token by as much.
                        events = []
                        while start < len(sses) and all(isinstance(e, Usage) for e in events):
                            events.extend(normalizer.feed(sses[start]))
                            start += 1
                    if response_ids is not None and not response_ids and normalizer.response_id:
                        response_ids.append(normalizer.response_id)
                    if not events:
                        continue
                    if not relayed and _only_failure(events):
                        # An error sent in place of the first token: as good as an HTTP error status.
                        events[-1] = fail(_as_error(events[-1]))  # type: ignore[arg-type]
                    failed = next((i for i, e in enumerate(events) if isinstance(e, StreamError)), None)
                    first, relayed = not relayed, True
                    if failed is not None:  # nothing after a failure
                        yield events[: failed + 1]
                        return
                    yield events
                    if first and (start < len(sses) or _more_arrived(response)):
                        await asyncio.sleep(FIRST_TOKEN_PAUSE)
                continue
            # End of the body (clean, timed out or broken): the last events, then stop.
            if events:
                relayed = True
                yield events
            return
    finally:
        reads.close()
        await response.aclose()


def _more_arrived(response: httpx.Response) -> bool:
    buffered = getattr(response.stream, "buffered", None)  # the transport's body; httpx's decoding one cannot tell
    return bool(buffered and buffered())


def _body_chunks(response: httpx.Response) -> AsyncIterator[bytes]:
    """The body as it arrives: straight from the transport's stream unless it is content-encoded (then httpx decodes
    it), so that a chunk passes through no layer of httpx's on its way."""
    if response.headers.get("content-encoding", "identity").strip().lower() in ("", "identity"):
        return aiter(response.stream)  # type: ignore[arg-type]
    return response.aiter_bytes()


async def _whole_body(
    response: httpx.Response,
    api: Literal["chat", "completions"],
    target: UpstreamTarget,
    deadline: float,
    fail: Callable[[UpstreamError], StreamError],
) -> list[UpstreamEvent]:
    try:
        async with asyncio.timeout_at(deadline):
            raw = await _read_limited(response, MAX_JSON_BODY + 1)
    except TimeoutError:
        return [fail(_timed_out(f"no answer within {target.first_token_timeout:g} s"))]
    except httpx.HTTPError as exc:
        return [fail(_transport_error(exc, target, responded=True))]
    if len(raw) > MAX_JSON_BODY:
        return [StreamError(ErrorCode.UPSTREAM_STREAM_BROKEN, "The provider's answer is too large.")]
    try:
        parsed = json.loads(raw, parse_float=Decimal)  # exact decimals for a provider's cost
    except ValueError:
        broken = ErrorCode.UPSTREAM_STREAM_BROKEN
        return [fail(UpstreamError(broken, user_message(broken), detail="malformed JSON body"))]
    events = normalize_response(parsed, api)
    if _only_failure(events):
        events[-1] = fail(_as_error(events[-1]))  # type: ignore[arg-type]
    return events


# --- non-streaming --------------------------------------------------------------------------------


async def complete(target: UpstreamTarget, path: str, payload: dict[str, Any]) -> list[UpstreamEvent]:
    """A non-streaming reply as the same events a stream gives (a failure: one StreamError, last)."""
    url = join_url(target.base_url, path)
    if (bad := _bad_url(url)) is not None:
        return [_error_event(bad)]
    body = {**payload, "stream": False}
    body.pop("stream_options", None)  # vLLM answers 400 to stream_options without stream
    api = _api_of(path)
    client = get_client()
    loop = asyncio.get_running_loop()
    attempt = 0
    while True:
        final = attempt >= target.max_retries

        def fail(err: UpstreamError, final: bool = final) -> StreamError:
            if err.retryable and not final:
                raise _Retry(err)
            return _error_event(err)

        deadline = loop.time() + target.first_token_timeout
        try:
            request = _request(client, url, body, target, "application/json")
            try:
                async with asyncio.timeout_at(deadline):
                    response = await _send(client, request)
            except TimeoutError:
                return [fail(_timed_out(f"no answer within {target.first_token_timeout:g} s"))]
            except httpx.HTTPError as exc:
                return [fail(_transport_error(exc, target, responded=False))]
            try:
                if not response.is_success:
                    return [fail(await _error_from(response, deadline))]
                return await _whole_body(response, api, target, deadline, fail)
            finally:
                await response.aclose()
        except _Retry as retry:
            wait = _backoff(target, attempt, retry.error.retry_after)
            _log_retry(target, retry.error, attempt, wait)
            await asyncio.sleep(wait)
            attempt += 1


async def list_models(target: UpstreamTarget) -> list[dict[str, Any]]:
    """GET /models: the provider's model objects. Raises UpstreamError on failure (after retries)."""
    url = join_url(target.base_url, "/models")
    if (bad := _bad_url(url)) is not None:
        raise bad
    client = get_client()
    timeout = httpx.Timeout(
        connect=target.connect_timeout,
        read=target.read_timeout,
        write=target.read_timeout,
        pool=target.read_timeout,
    )
    attempt = 0
    while True:
        try:
            try:
                response = await client.get(
                    url, headers=_headers(target, "application/json"), timeout=timeout
                )
            except httpx.TimeoutException:
                raise _timed_out(f"no answer within {target.read_timeout:g} s") from None
            except httpx.HTTPError as exc:
                raise _transport_error(exc, target, responded=False) from None
            if not response.is_success:
                raise error_from_response(
                    response.status_code, response.headers, response.content[:MAX_ERROR_BODY]
                )
            try:
                parsed = response.json()
            except ValueError:
                parsed = None
            data = (
                parsed.get("data") if isinstance(parsed, dict) else parsed
            )  # a few servers send a bare list
            if not isinstance(data, list):
                raise UpstreamError(
                    ErrorCode.UPSTREAM_UNAVAILABLE,
                    "The provider's model list is not readable.",
                    status=response.status_code,
                )
            return [m for m in data if isinstance(m, dict)]
        except UpstreamError as err:
            if not err.retryable or attempt >= target.max_retries:
                raise
            wait = _backoff(target, attempt, err.retry_after)
            _log_retry(target, err, attempt, wait)
            await asyncio.sleep(wait)
            attempt += 1


@dataclass(frozen=True, slots=True)
class GenerationCost:
    """One reply as the provider's own account has it (OpenRouter's `GET /generation?id=`): its cost in USD."""

    response_id: str
    cost: Decimal
    model: str
    prompt_tokens: int
    completion_tokens: int
    created_at: str  # as the provider wrote it (ISO 8601), "" when it gave none


async def generation_cost(target: UpstreamTarget, response_id: str) -> GenerationCost:
    """GET /generation?id=RESPONSE_ID: what the provider charged for that reply (`data.total_cost`). Raises
    UpstreamError (its message never holds a key) when it cannot say; one try, the caller decides on more."""
    url = join_url(target.base_url, "/generation")
    if (bad := _bad_url(url)) is not None:
        raise bad
    timeout = httpx.Timeout(
        connect=target.connect_timeout, read=target.read_timeout, write=target.read_timeout, pool=target.read_timeout
    )
    try:
        response = await get_client().get(
            url, params={"id": response_id}, headers=_headers(target, "application/json"), timeout=timeout
        )
    except httpx.TimeoutException:
        raise _timed_out(f"no answer within {target.read_timeout:g} s") from None
    except httpx.HTTPError as exc:
        raise _transport_error(exc, target, responded=False) from None
    if not response.is_success:
        raise error_from_response(response.status_code, response.headers, response.content[:MAX_ERROR_BODY])
    try:
        parsed = response.json()
        data = parsed["data"]
        cost = Decimal(str(data["total_cost"]))
        if not cost.is_finite() or cost < 0:
            raise ValueError("total_cost")
        return GenerationCost(
            response_id=str(data.get("id") or response_id),
            cost=cost,
            model=str(data.get("model") or ""),
            prompt_tokens=_count(data.get("native_tokens_prompt", data.get("tokens_prompt"))),
            completion_tokens=_count(data.get("native_tokens_completion", data.get("tokens_completion"))),
            created_at=str(data.get("created_at") or ""),
        )
    except (ValueError, KeyError, TypeError, ArithmeticError):
        raise UpstreamError(
            ErrorCode.UPSTREAM_UNAVAILABLE, "The provider's generation record is not readable.",
            status=response.status_code,
        ) from None


def _count(value: object) -> int:
    return value if isinstance(value, int) and 0 <= value < 2**31 else 0
