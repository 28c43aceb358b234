"""The upstream client's HTTP/1.1 transport (conversations/upstream/http11.py) against scripted servers on real sockets:
framing, keep-alive and its limits, stale connections, malformed answers; and its chunked decoder on every split."""

from __future__ import annotations

import asyncio
import gzip
import ssl
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conversations.upstream.http11 import HIGH_WATER, Http11Transport, _Body, _Connection, _Protocol

Answer = list[bytes] | Callable[[bytes], list[bytes]]


class Scripted:
    """A TCP server answering its n-th request with `answers[n]` (the last one again after), its pieces written apart;
    the connection stays open unless `close_after` or the answer says `Connection: close`. Counts what it sees."""

    def __init__(self, answers: list[Answer], *, close_after: bool = False) -> None:
        self.answers = answers
        self.close_after = close_after
        self.connections = 0
        self.requests: list[bytes] = []
        self.server: asyncio.Server | None = None

    async def __aenter__(self) -> Scripted:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: Any) -> None:
        assert self.server is not None
        self.server.close()

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}/v1/x"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                               if line.lower().startswith(b"content-length:")), 0)
                request = head + await reader.readexactly(length)
                self.requests.append(request)
                answer = self.answers[min(len(self.requests), len(self.answers)) - 1]
                for piece in request_answer(answer, request):
                    writer.write(piece)
                    await writer.drain()
                    await asyncio.sleep(0.002)
                if self.close_after or b"Connection: close" in request_answer(answer, request)[0]:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


def request_answer(answer: Answer, request: bytes) -> list[bytes]:
    return answer(request) if callable(answer) else answer


def ok_chunked(*pieces: bytes) -> list[bytes]:
    head = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
    return [head, *(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces), b"0\r\n\r\n"]


def transport(**limits: Any) -> Http11Transport:
    return Http11Transport(ssl_context=ssl.create_default_context(), **limits)


async def fetch(pool: Http11Transport, url: str, body: bytes = b"{}") -> tuple[httpx.Response, bytes]:
    request = httpx.Request("POST", url, content=body, extensions={"timeout": {"read": 5, "connect": 5}})
    response = await pool.handle_async_request(request)
    data = b"".join([chunk async for chunk in response.aiter_bytes()])
    await response.aclose()
    return response, data


async def test_chunked_body_whole_and_connection_kept() -> None:
    async with Scripted([ok_chunked(b"data: one\n\n", b"data: two\n\n")]) as server:
        pool = transport()
        response, data = await fetch(pool, server.url)
        _, data_again = await fetch(pool, server.url)
        assert response.status_code == 200 and response.http_version == "HTTP/1.1"
        assert response.headers["content-type"] == "text/event-stream"
        assert data == data_again == b"data: one\n\ndata: two\n\n"
        assert server.connections == 1 and len(server.requests) == 2  # kept alive, reused
        assert server.requests[0].startswith(b"POST /v1/x HTTP/1.1\r\n") and b"\r\nhost: 127.0.0.1:" in (
            server.requests[0].lower())
        assert server.requests[0].endswith(b"\r\n\r\n{}")
        await pool.aclose()


async def test_length_close_and_interim_answers() -> None:
    answers: list[Answer] = [
        [b"HTTP/1.1 100 Continue\r\n\r\n", b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhel", b"lo"],
        [b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil the ", b"close"],
        [b"HTTP/1.1 200 OK\nContent-Length: 7\nX-Note: bare LF, as h11 took\n\nlf only"],
    ]
    async with Scripted(answers) as server:
        pool = transport()
        assert (await fetch(pool, server.url))[1] == b"hello"
        assert (await fetch(pool, server.url))[1] == b"until the close"  # no length: the body ends with the socket
        assert server.connections == 1
        response, data = await fetch(pool, server.url)
        assert data == b"lf only" and response.headers["x-note"] == "bare LF, as h11 took"
        assert server.connections == 2, "a connection the server closes is not reused"
        assert (await fetch(pool, server.url))[1] == b"lf only" and server.connections == 2
        await pool.aclose()


async def test_no_body_statuses_free_the_connection_at_once() -> None:
    async with Scripted([[b"HTTP/1.1 204 No Content\r\n\r\n"]]) as server:
        pool = transport(max_connections=1)
        request = httpx.Request("POST", server.url, content=b"{}")
        response = await pool.handle_async_request(request)
        assert response.status_code == 204 and await response.aread() == b""
        response, _ = await asyncio.wait_for(fetch(pool, server.url), 5)  # the one slot is free again
        assert server.connections == 1
        await pool.aclose()


async def test_a_kept_connection_the_server_closed_is_replaced_once() -> None:
    async with Scripted([ok_chunked(b"x")], close_after=True) as server:
        pool = transport()
        assert (await fetch(pool, server.url))[1] == b"x"
        await asyncio.sleep(0.05)  # the server has closed the idle connection
        assert (await fetch(pool, server.url))[1] == b"x"
        assert server.connections == 2
        await pool.aclose()


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        ([b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel"], httpx.RemoteProtocolError),
        ([b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n"], httpx.RemoteProtocolError),
        ([b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhiXX0\r\n\r\n"], httpx.RemoteProtocolError),
        ([b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort"], httpx.RemoteProtocolError),
        ([b"HTTP/1.1 200 OK\r\nContent-Length: 1, 2\r\n\r\nx"], httpx.RemoteProtocolError),
        ([b"SMTP ready\r\n\r\n"], httpx.RemoteProtocolError),
        ([b"HTTP/1.1 200 OK\r\nbad header line\r\n\r\n"], httpx.RemoteProtocolError),
        ([b"HTTP/1.1 200 OK\r\n" + b"X-Big: " + b"y" * 70_000 + b"\r\n\r\n"], httpx.RemoteProtocolError),
        ([b"HTTP/1.1 200 OK\r\nContent-Le"], httpx.RemoteProtocolError),
    ],
    ids=["chunked-cut", "chunk-size", "chunk-crlf", "length-cut", "two-lengths", "not-http", "header", "huge-head",
         "head-cut"],
)
async def test_malformed_or_cut_answers_raise_httpx_errors(answer: list[bytes], error: type[Exception]) -> None:
    async with Scripted([answer], close_after=True) as server:
        pool = transport()
        with pytest.raises(error):
            await fetch(pool, server.url)
        await pool.aclose()


async def test_a_header_value_cannot_split_the_request() -> None:
    async with Scripted([ok_chunked(b"x")]) as server:
        pool = transport()
        request = httpx.Request("POST", server.url, headers={"X-Extra": "a\r\nInjected: yes"}, content=b"{}")
        with pytest.raises(httpx.LocalProtocolError):
            await pool.handle_async_request(request)
        assert server.requests == []
        assert (await fetch(pool, server.url))[1] == b"x", "the refused request held no slot"
        await pool.aclose()


async def test_refused_connection_and_unsupported_scheme() -> None:
    pool = transport()
    with pytest.raises(httpx.ConnectError):
        await pool.handle_async_request(httpx.Request("POST", "http://127.0.0.1:9/v1/x", content=b"{}"))
    with pytest.raises(httpx.UnsupportedProtocol):
        await pool.handle_async_request(httpx.Request("POST", "ftp://127.0.0.1/v1/x", content=b"{}"))
    await pool.aclose()


async def test_limits_one_connection_at_a_time_and_idle_ones_kept() -> None:
    async with Scripted([ok_chunked(b"x")]) as server:
        pool = transport(max_connections=1, max_keepalive=1)
        held = await pool.handle_async_request(httpx.Request("POST", server.url, content=b"{}"))
        waiting = asyncio.ensure_future(fetch(pool, server.url))
        await asyncio.sleep(0.05)
        assert not waiting.done(), "the only connection is taken: the next request waits for it"
        await held.aclose()  # its body unread: the connection is closed, the slot freed
        assert (await asyncio.wait_for(waiting, 5))[1] == b"x"
        request = httpx.Request("POST", server.url, content=b"{}", extensions={"timeout": {"pool": 0.05}})
        busy = await pool.handle_async_request(httpx.Request("POST", server.url, content=b"{}"))
        with pytest.raises(httpx.PoolTimeout):
            await pool.handle_async_request(request)
        await busy.aclose()
        await pool.aclose()

    async with Scripted([ok_chunked(b"x")]) as server:
        pool = transport(max_keepalive=1)
        await asyncio.gather(*(fetch(pool, server.url) for _ in range(3)))
        assert server.connections == 3 and pool._idle_count == 1
        await pool.aclose()


async def test_a_slow_reader_pauses_the_socket_and_loses_nothing() -> None:
    """A body far larger than the buffer's high-water mark, read slowly: the socket is paused and resumed, the
    body arrives whole and in order."""
    body = bytes(range(256)) * 4096  # 1 MiB
    head = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body)
    async with Scripted([[head, body]]) as server:
        pool = transport()
        response = await pool.handle_async_request(httpx.Request("POST", server.url, content=b"{}"))
        received = bytearray()
        largest = 0
        async for chunk in response.aiter_raw():  # a read takes all that is buffered
            received += chunk
            largest = max(largest, len(chunk))
            await asyncio.sleep(0.01)
        await response.aclose()
        assert bytes(received) == body
        assert largest > HIGH_WATER, "the buffer passed its mark, so the socket was paused (and resumed: all came)"
        assert (await fetch(pool, server.url))[1] == body and server.connections == 1, "and the connection is kept"
        await pool.aclose()


async def test_content_encoding_is_decoded_by_httpx() -> None:
    packed = gzip.compress(b"data: zipped\n\n")
    head = b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n" % len(packed)
    async with Scripted([[head, packed]]) as server:
        pool = transport()
        assert (await fetch(pool, server.url))[1] == b"data: zipped\n\n"
        await pool.aclose()


# --- the chunked decoder, on every way TCP may cut the bytes ----------------------------------------------


class _Transport(asyncio.Transport):
    def pause_reading(self) -> None: ...
    def resume_reading(self) -> None: ...
    def is_closing(self) -> bool:
        return False


@settings(max_examples=300, deadline=None)
@given(
    pieces=st.lists(st.binary(min_size=1, max_size=40), min_size=1, max_size=8),
    cuts=st.lists(st.integers(min_value=1, max_value=30), max_size=40),
    extension=st.booleans(),
)
def test_chunked_decoder_gives_the_body_whatever_the_cuts(
    pieces: list[bytes], cuts: list[int], extension: bool
) -> None:
    wire = b"".join(b"%x%s\r\n%s\r\n" % (len(p), b";ext=1" if extension else b"", p) for p in pieces)
    wire += b"0\r\nTrailer: t\r\n\r\n"
    protocol = _Protocol()
    protocol.connection_made(_Transport())
    body = _Body(pool=None, connection=_Connection(("http", "h", 80), _Transport(), protocol),  # type: ignore[arg-type]
                 framing="chunked", length=0, keep_alive=True, timeout=None)
    out, at = bytearray(), 0
    for cut in [*cuts, len(wire)]:
        protocol.data_received(wire[at:at + cut])
        at += cut
        out += body._chunked(body._connection)  # type: ignore[arg-type]
        if at >= len(wire):
            break
    assert bytes(out) == b"".join(pieces)
    assert body._done and not protocol.buffer
