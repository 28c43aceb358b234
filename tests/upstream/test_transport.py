"""The upstream client's transport (conversations/upstream/transport.py: aiohttp under httpx) against servers on real
sockets: headers that would inject a line are refused, the egress proxy of the environment is used (a real HTTP
proxy on loopback), a POST is never sent twice, every failure ends in a stable code, a stopped reply's socket is shut
at once, kept connections are reused."""

from __future__ import annotations

import asyncio
import gzip
import socket
import threading
import time
from collections.abc import Callable
from contextlib import aclosing
from typing import Any

import httpx
import pytest

from conversations.devupstream.server import ThreadedUpstream
from conversations.upstream import client
from conversations.upstream.client import UpstreamTarget, complete, list_models, stream
from conversations.upstream.errors import ErrorCode, UpstreamError
from conversations.upstream.events import ContentDelta, StreamError, UpstreamEvent, Usage
from conversations.upstream.headers import header_problem, is_secret_header
from conversations.upstream.transport import EnvironmentProxies

pytestmark = pytest.mark.usefixtures("upstream_http", "no_proxy_env")

CHAT = {"model": "dev-chat", "messages": [{"role": "user", "content": "hello"}]}
PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")


@pytest.fixture
def no_proxy_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No proxy from the machine's environment; a test sets its own (the pool reads it when it is made)."""
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


async def collect(t: UpstreamTarget) -> list[UpstreamEvent]:
    return [event async for event in stream(t, "/chat/completions", CHAT)]


def sse(*texts: str) -> list[bytes]:
    """Chunked SSE pieces of a chat completion stream, one piece per token, then [DONE]."""
    events = [b'data: {"choices":[{"index":0,"delta":{"content":"%s"}}]}\n\n' % t.encode() for t in texts]
    events.append(b"data: [DONE]\n\n")
    return [b"%x\r\n%s\r\n" % (len(e), e) for e in events] + [b"0\r\n\r\n"]


SSE_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"


# --- a server in a thread of its own: it sees a close while the test's event loop is blocked ----------------------


class Raw:
    """A TCP server on loopback running `script(connection, server)` for each connection, in threads of its own.
    Counts connections and the requests read with `read_request`; `closed` is set when a peer's close is seen."""

    def __init__(self, script: Callable[[socket.socket, Raw], None]) -> None:
        self.script = script
        self.connections = 0
        self.requests: list[bytes] = []
        self.closed = threading.Event()
        self.requested = threading.Event()
        self._sock = socket.create_server(("127.0.0.1", 0))
        self._sock.settimeout(0.2)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)

    def __enter__(self) -> Raw:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join(2)
        self._sock.close()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._sock.getsockname()[1]}/v1"

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._run, args=(conn,), daemon=True).start()

    def _run(self, conn: socket.socket) -> None:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn.settimeout(10)
        try:
            self.script(conn, self)
        except OSError:
            pass
        finally:
            conn.close()

    def read_request(self, conn: socket.socket) -> bytes | None:
        """One whole request (head and Content-Length body), or None when the peer closed first."""
        data = b""
        while b"\r\n\r\n" not in data:
            piece = conn.recv(65536)
            if not piece:
                self.closed.set()
                return None
            data += piece
        head, _, body = data.partition(b"\r\n\r\n")
        length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                       if line.lower().startswith(b"content-length:")), 0)
        while len(body) < length:
            body += conn.recv(65536)
        self.requests.append(head + b"\r\n\r\n" + body)
        self.requested.set()
        return head

    def wait_close(self, conn: socket.socket) -> None:
        """Block until the peer closes (or 10 s)."""
        try:
            while conn.recv(65536):
                pass
        except OSError:
            pass
        self.closed.set()


def answering(*answers: list[bytes], pause: float = 0.0) -> Callable[[socket.socket, Raw], None]:
    """A script answering the n-th request of the server with answers[n] (the last one again after), each piece
    written apart; keeps the connection for the next request."""

    def script(conn: socket.socket, server: Raw) -> None:
        while server.read_request(conn) is not None:
            for piece in answers[min(len(server.requests), len(answers)) - 1]:
                conn.sendall(piece)
                time.sleep(pause)

    return script


# --- headers -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "value"), [
    ("X-Team", "a\r\nX-Injected: 1"),
    ("X-Team", "a\nX-Injected: 1"),
    ("X-Team", "a\rb"),
    ("X-Team", "a\x00b"),
    ("X-Team: 1\r\nX-Injected", "s3cr3t"),
    ("X Team", "s3cr3t"),
    ("X-Team:", "s3cr3t"),
    ("", "s3cr3t"),
])
async def test_a_header_that_would_inject_a_line_is_refused_before_anything_is_sent(name: str, value: str) -> None:
    with Raw(answering([SSE_HEAD, *sse("hi")])) as server:
        t = UpstreamTarget(base_url=server.base_url, headers={name: value}, max_retries=2)
        events = await collect(t)
        assert len(events) == 1 and isinstance(events[0], StreamError)
        assert events[0].code == ErrorCode.UPSTREAM_UNAVAILABLE and not events[0].retryable
        assert "headers are invalid" in events[0].message and value not in events[0].message
        [error] = await complete(t, "/chat/completions", CHAT)
        assert error.code == ErrorCode.UPSTREAM_UNAVAILABLE
        with pytest.raises(UpstreamError, match="headers are invalid"):
            await list_models(t)
        assert server.connections == 0 and server.requests == []


def test_header_rules() -> None:
    assert header_problem("api-key", "sk-1 2\tthree é") is None  # spaces, tabs and obs-text are values
    assert header_problem("X-Title", "") is None
    assert header_problem("X-Title", "a\r\nb") == "invalid value in header 'X-Title'"
    assert header_problem("X(Title)", "a") is not None
    for name in ("Authorization", "api-key", "X-API-Key", "x-goog-api-key", "X-Auth-Token", "X-Client-Secret",
                 "Proxy-Authorization", "Cookie", "X-Password"):
        assert is_secret_header(name), name
    for name in ("HTTP-Referer", "X-Title", "OpenAI-Organization", "anthropic-version", "X-Team"):
        assert not is_secret_header(name), name


async def test_good_extra_headers_are_sent_as_given() -> None:
    with Raw(answering([SSE_HEAD, *sse("hi")])) as server:
        t = UpstreamTarget(base_url=server.base_url, api_key="sk-test",
                           headers={"HTTP-Referer": "https://chat.example", "X-Title": "chat web"})
        assert [e.text for e in await collect(t) if isinstance(e, ContentDelta)] == ["hi"]
        head = server.requests[0].split(b"\r\n\r\n")[0].split(b"\r\n")
        assert head[0] == b"POST /v1/chat/completions HTTP/1.1"
        sent = {line.split(b":", 1)[0].lower(): line.split(b":", 1)[1].strip() for line in head[1:]}
        assert sent[b"http-referer"] == b"https://chat.example" and sent[b"x-title"] == b"chat web"
        assert sent[b"authorization"] == b"Bearer sk-test" and sent[b"accept"] == b"text/event-stream"
        assert b"cookie" not in sent


# --- the egress proxy of the environment ----------------------------------------------------------------------


class LoopbackProxy:
    """A real HTTP proxy on loopback: CONNECT tunnels (HTTPS) and absolute-form forwarding (HTTP); records each
    connection's first request line. `refuse`: answer 403 to everything."""

    def __init__(self, *, refuse: bool = False) -> None:
        self.refuse = refuse
        self.lines: list[str] = []
        self.server: asyncio.Server | None = None

    async def __aenter__(self) -> LoopbackProxy:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: Any) -> None:
        assert self.server is not None
        self.server.close()

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            line = head.split(b"\r\n", 1)[0].decode()
            self.lines.append(line)
            method, target, _ = line.split(" ")
            if self.refuse:
                writer.write(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                return
            if method == "CONNECT":
                host, port = target.rsplit(":", 1)
                up_reader, up_writer = await asyncio.open_connection(host, int(port))
                writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            else:  # one request on this connection, in origin form, then the proxy closes it
                url = httpx.URL(target)
                up_reader, up_writer = await asyncio.open_connection(url.host, url.port or 80)
                fields = [f for f in head.split(b"\r\n")[1:] if f and not f.lower().startswith(
                    (b"connection:", b"proxy-connection:", b"keep-alive:"))]
                up_writer.write(b"\r\n".join([f"{method} {url.raw_path.decode()} HTTP/1.1".encode(), *fields,
                                               b"Connection: close", b"", b""]))
            await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()


async def test_http_proxy_of_the_environment_is_used_and_no_proxy_honoured(
    dev_upstream: ThreadedUpstream, monkeypatch: pytest.MonkeyPatch, nonce: str
) -> None:
    async with LoopbackProxy() as proxy:
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        await client.close_client()  # the pool reads the environment when it is made
        events = await collect(UpstreamTarget(base_url=dev_upstream.v1(key=nonce, tokens=5)))
        assert len([e for e in events if isinstance(e, ContentDelta)]) == 5 and isinstance(events[-1], Usage)
        assert proxy.lines == [f"POST {dev_upstream.v1(key=nonce, tokens=5)}/chat/completions HTTP/1.1"]

        monkeypatch.setenv("NO_PROXY", "localhost,127.0.0.1")
        await client.close_client()
        events = await collect(UpstreamTarget(base_url=dev_upstream.v1(key=nonce, tokens=5)))
        assert isinstance(events[-1], Usage) and len(proxy.lines) == 1, "NO_PROXY: straight to the upstream"
    monkeypatch.delenv("HTTP_PROXY")  # the stats are read with urllib, which would use it too
    assert dev_upstream.stats(nonce)["completed"] == 2


async def test_https_proxy_of_the_environment_tunnels_with_connect(
    tls_upstream: ThreadedUpstream, monkeypatch: pytest.MonkeyPatch, nonce: str
) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", tls_upstream.tls[0])
    async with LoopbackProxy() as proxy:
        monkeypatch.setenv("https_proxy", proxy.url)  # either case, as curl reads it
        monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")  # not for https URLs
        await client.close_client()
        t = UpstreamTarget(base_url=tls_upstream.v1(key=nonce, tokens=5))
        first, second = await collect(t), await collect(t)
        assert isinstance(first[-1], Usage) and isinstance(second[-1], Usage)
        assert proxy.lines == [f"CONNECT 127.0.0.1:{tls_upstream.port} HTTP/1.1"], "one tunnel, kept for both"
    monkeypatch.delenv("https_proxy")  # the stats are read with urllib, which would use it too
    assert tls_upstream.stats(nonce)["completed"] == 2


@pytest.mark.parametrize("how", ["down", "refusing"])
async def test_a_proxy_that_is_down_or_refuses_the_tunnel_is_unreachable(
    monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    async with LoopbackProxy(refuse=True) as proxy:
        monkeypatch.setenv("HTTPS_PROXY", proxy.url if how == "refusing" else f"http://127.0.0.1:{_closed_port()}")
        await client.close_client()
        events = await collect(UpstreamTarget(base_url="https://api.example.invalid/v1", max_retries=0))
    assert len(events) == 1 and events[0].code == ErrorCode.UPSTREAM_UNREACHABLE, events
    assert not events[0].sent  # the provider was never reached: nothing is billed
    assert proxy.lines == (["CONNECT api.example.invalid:443 HTTP/1.1"] if how == "refusing" else [])


def test_proxy_choice_follows_curl(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    assert not EnvironmentProxies()
    monkeypatch.setenv("HTTPS_PROXY", "proxy.internal:3128")
    monkeypatch.setenv("ALL_PROXY", "http://all.internal:8080")
    monkeypatch.setenv("NO_PROXY", ".corp.example,10.0.0.7,vllm:8000")
    proxies = EnvironmentProxies()
    assert proxies.for_url(httpx.URL("https://api.openai.com/v1")) == "http://proxy.internal:3128"
    assert proxies.for_url(httpx.URL("http://api.openai.com/v1")) == "http://all.internal:8080"
    assert proxies.for_url(httpx.URL("https://llm.corp.example/v1")) is None
    assert proxies.for_url(httpx.URL("http://10.0.0.7:8000/v1")) is None
    assert proxies.for_url(httpx.URL("http://vllm:8000/v1")) is None
    assert proxies.for_url(httpx.URL("http://vllm:9000/v1")) == "http://all.internal:8080"


# --- a POST is sent once ----------------------------------------------------------------------------------


async def test_a_post_is_not_replayed_when_a_kept_connection_is_closed_after_it_was_written() -> None:
    def script(conn: socket.socket, server: Raw) -> None:
        while server.read_request(conn) is not None:
            if len(server.requests) >= 2:
                return  # read, then closed without a byte of answer: the provider may have acted on it
            conn.sendall(SSE_HEAD)
            for piece in sse("one"):
                conn.sendall(piece)

    with Raw(script) as server:
        t = UpstreamTarget(base_url=server.base_url, max_retries=0)
        assert isinstance((await collect(t))[-1], Usage | ContentDelta)
        events = await collect(t)
        assert len(events) == 1 and events[0].code == ErrorCode.UPSTREAM_UNAVAILABLE
        await asyncio.sleep(0.2)
        assert len(server.requests) == 2 and server.connections == 1, "the second POST went once, on the kept one"


async def test_a_kept_connection_the_server_closed_while_idle_is_not_used() -> None:
    def script(conn: socket.socket, server: Raw) -> None:
        if server.read_request(conn) is not None:
            conn.sendall(SSE_HEAD)
            for piece in sse("one"):
                conn.sendall(piece)
        # then closed while idle, as a server's keep-alive timeout does

    with Raw(script) as server:
        t = UpstreamTarget(base_url=server.base_url, max_retries=0)
        for _ in range(3):
            events = await collect(t)
            assert [e.text for e in events if isinstance(e, ContentDelta)] == ["one"]
            await asyncio.sleep(0.1)
        assert len(server.requests) == 3 and server.connections == 3


async def test_kept_connections_are_reused_and_gzip_is_decoded() -> None:
    body = b'{"choices":[{"index":0,"message":{"role":"assistant","content":"zipped"},"finish_reason":"stop"}]}'
    packed = gzip.compress(body)
    answer = [b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Encoding: gzip\r\n"
              b"Content-Length: %d\r\n\r\n" % len(packed), packed]
    with Raw(answering([SSE_HEAD, *sse("a", "b")], answer)) as server:
        t = UpstreamTarget(base_url=server.base_url, max_retries=0)
        assert "".join(e.text for e in await collect(t) if isinstance(e, ContentDelta)) == "ab"
        assert "".join(e.text for e in await collect(t) if isinstance(e, ContentDelta)) == "zipped"
        assert server.connections == 1 and len(server.requests) == 2


def _closed_port() -> int:
    with socket.create_server(("127.0.0.1", 0)) as sock:
        return sock.getsockname()[1]


# --- every failure ends in a stable code --------------------------------------------------------------------


def _cut(conn: socket.socket, server: Raw, pieces: list[bytes]) -> None:
    if server.read_request(conn) is not None:
        for piece in pieces:
            conn.sendall(piece)
            time.sleep(0.01)


FAILURES: dict[str, tuple[list[bytes], str, int]] = {  # what the server sends, the code, content deltas before it
    "closed before a byte": ([], ErrorCode.UPSTREAM_UNAVAILABLE, 0),
    "not HTTP": ([b"SSH-2.0-OpenSSH_9.6\r\n\r\n"], ErrorCode.UPSTREAM_UNAVAILABLE, 0),
    "malformed header line": ([b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n"], ErrorCode.UPSTREAM_UNAVAILABLE, 0),
    "head cut short": ([b"HTTP/1.1 200 OK\r\nContent-Ty"], ErrorCode.UPSTREAM_UNAVAILABLE, 0),
    "switching protocols": ([b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n\r\n"],
                            ErrorCode.UPSTREAM_UNAVAILABLE, 0),
    "body cut after two tokens": ([SSE_HEAD, *sse("a", "b")[:2]], ErrorCode.UPSTREAM_STREAM_BROKEN, 2),
    "invalid chunk size": ([SSE_HEAD, *sse("a")[:1], b"zz\r\n"], ErrorCode.UPSTREAM_STREAM_BROKEN, 1),
    "shorter than its length": ([b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Length: 500\r\n\r\n"
                                 b'data: {"choices":[{"index":0,"delta":{"content":"a"}}]}\n\n'],
                                ErrorCode.UPSTREAM_STREAM_BROKEN, 1),
    "5xx": ([b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\n\r\nbusy"], ErrorCode.UPSTREAM_UNAVAILABLE, 0),
    "json cut short": ([b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 90\r\n\r\n{\"choi"],
                       ErrorCode.UPSTREAM_STREAM_BROKEN, 0),
}


@pytest.mark.parametrize("case", FAILURES)
async def test_every_failure_ends_in_one_stable_code(case: str) -> None:
    pieces, code, deltas = FAILURES[case]
    with Raw(lambda conn, server: _cut(conn, server, pieces)) as server:
        events = await collect(UpstreamTarget(base_url=server.base_url, max_retries=0, read_timeout=5))
    assert isinstance(events[-1], StreamError) and events[-1].code == code, events
    assert len([e for e in events if isinstance(e, ContentDelta)]) == deltas
    assert all(not isinstance(e, StreamError) for e in events[:-1])


async def test_refused_and_silent_upstreams_end_in_stable_codes() -> None:
    events = await collect(UpstreamTarget(base_url=f"http://127.0.0.1:{_closed_port()}/v1", max_retries=0))
    assert len(events) == 1 and events[0].code == ErrorCode.UPSTREAM_UNREACHABLE and not events[0].sent

    def silent(conn: socket.socket, server: Raw) -> None:
        if server.read_request(conn) is not None:
            server.wait_close(conn)

    with Raw(silent) as server:
        t = UpstreamTarget(base_url=server.base_url, max_retries=0, first_token_timeout=0.3)
        events = await collect(t)
        assert len(events) == 1 and events[0].code == ErrorCode.UPSTREAM_TIMEOUT
        [error] = await complete(t, "/chat/completions", CHAT)
        assert error.code == ErrorCode.UPSTREAM_TIMEOUT
    with Raw(answering([SSE_HEAD, *sse("a")[:1]])) as server:  # a token, then nothing more
        events = await collect(UpstreamTarget(base_url=server.base_url, max_retries=0, read_timeout=0.3))
        assert events[-1].code == ErrorCode.UPSTREAM_TIMEOUT and isinstance(events[0], ContentDelta)


# --- stopping closes the upstream's socket at once --------------------------------------------------------------


def _slow_stream(conn: socket.socket, server: Raw) -> None:
    if server.read_request(conn) is None:
        return
    conn.sendall(SSE_HEAD)
    pieces = sse(*(f"t{i}" for i in range(200)))
    conn.sendall(pieces[0])
    conn.settimeout(0.05)
    for piece in pieces[1:]:  # a token every 50 ms, until the client goes
        try:
            if conn.recv(65536) == b"":
                server.closed.set()
                return
        except TimeoutError:
            pass
        conn.sendall(piece)


async def test_breaking_out_shuts_the_upstream_socket_before_the_loop_turns() -> None:
    with Raw(_slow_stream) as server:
        events = stream(UpstreamTarget(base_url=server.base_url), "/chat/completions", CHAT)
        async with aclosing(events):
            async for event in events:
                assert isinstance(event, ContentDelta)
                break
        # The loop is blocked from here on: only a socket shut in the close itself is seen by the server.
        assert server.closed.wait(2), "the provider saw the close while the loop was blocked"


async def test_cancelling_before_the_answer_shuts_the_upstream_socket_at_once() -> None:
    def silent(conn: socket.socket, server: Raw) -> None:
        if server.read_request(conn) is not None:
            server.wait_close(conn)

    with Raw(silent) as server:
        task = asyncio.create_task(collect(UpstreamTarget(base_url=server.base_url)))
        assert await asyncio.to_thread(server.requested.wait, 5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert server.closed.wait(2), "the provider saw the close while the loop was blocked"
