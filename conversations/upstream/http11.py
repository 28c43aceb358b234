"""HTTP/1.1 to the providers: the upstream client's httpx transport, a keep-alive pool whose bodies are read straight
from asyncio's socket buffer.

Through httpcore every chunk of a stream went up seven nested async iterators and through h11's state machine; a
process streaming 1,000 replies reads 20,000 chunks a second, and that reading was a fifth of its CPU (issue #9,
docs/benchmarks.md). Here a protocol buffers what arrives, and a body's iterator decodes its framing (chunked, a
length, or up to the close) in one pass over that buffer, handing over at once all the data that has arrived.
httpx keeps the rest: building requests, content decoding, the `Response` that the client code reads. Failures are
httpx's own exceptions (ConnectError, ConnectTimeout, ReadError, RemoteProtocolError, ...), which the client maps.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import ssl
from collections.abc import AsyncIterator
from typing import Any

import httpx

HIGH_WATER = 256 * 1024  # bytes buffered before the socket stops being read (a slow consumer)
MAX_HEAD = 64 * 1024  # a response's status line and headers
MAX_CHUNK_LINE = 4096  # a chunk's size line, extensions included
_HEAD_END = re.compile(rb"\n\r?\n")  # the blank line after a response's head (CRLF, or a bare LF as h11 took)

Origin = tuple[str, str, int]


class _Protocol(asyncio.Protocol):
    """Buffers what the socket receives; wakes the one reader waiting for more."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.closed = False  # EOF or connection lost
        self.error: BaseException | None = None
        self.reader: asyncio.Future[None] | None = None
        self.reading_paused = False
        self.writer: asyncio.Future[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if len(self.buffer) > HIGH_WATER and not self.reading_paused and self.transport is not None:
            self.transport.pause_reading()
            self.reading_paused = True
        self._wake(self.reader)

    def eof_received(self) -> bool:
        self.closed = True
        self._wake(self.reader)
        return False  # let the transport close itself

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.error = exc
        self._wake(self.reader)
        self._wake(self.writer)

    def pause_writing(self) -> None:
        self.writer = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        self._wake(self.writer)
        self.writer = None

    @staticmethod
    def _wake(future: asyncio.Future[None] | None) -> None:
        if future is not None and not future.done():
            future.set_result(None)


class _Connection:
    """One socket to one origin, carrying one request at a time."""

    def __init__(self, origin: Origin, transport: asyncio.Transport, protocol: _Protocol) -> None:
        self.origin = origin
        self.transport = transport
        self.protocol = protocol
        self.idle_since = 0.0

    def quiet(self) -> bool:
        """Open, and nothing unasked-for received (a server that closed it or sent garbage)."""
        protocol = self.protocol
        return not protocol.closed and not protocol.buffer and not self.transport.is_closing()

    def reusable(self, now: float, expiry: float) -> bool:
        """Quiet and idle for less than `expiry` seconds."""
        return self.quiet() and now - self.idle_since < expiry

    async def fill(self, timeout: float | None) -> None:  # noqa: ASYNC109 (httpx hands each request its timeouts)
        """Wait until more bytes arrive or the connection ends; httpx.ReadTimeout after `timeout` seconds."""
        protocol = self.protocol
        if protocol.closed:
            return
        future = protocol.reader = asyncio.get_running_loop().create_future()
        try:
            if timeout is None:
                await future
            else:
                async with asyncio.timeout(timeout):
                    await future
        except TimeoutError:
            raise httpx.ReadTimeout(f"nothing received within {timeout:g} s") from None
        finally:
            protocol.reader = None

    def take(self, size: int) -> bytes:
        """Up to `size` buffered bytes, removed from the buffer."""
        data = bytes(self.protocol.buffer[:size])
        self.skip(size)
        return data

    def skip(self, size: int) -> None:
        del self.protocol.buffer[:size]
        self._resume()

    def _resume(self) -> None:
        protocol = self.protocol
        if protocol.reading_paused and len(protocol.buffer) < HIGH_WATER // 2:
            protocol.reading_paused = False
            self.transport.resume_reading()

    def ended(self) -> httpx.TransportError:
        """What to raise when the connection ended before the message did."""
        error = self.protocol.error
        if error is not None:
            return httpx.ReadError(f"{type(error).__name__}: {error}")
        return httpx.RemoteProtocolError("the server closed the connection before the end of the response")

    async def write(self, data: bytes, timeout: float | None) -> None:  # noqa: ASYNC109
        if self.protocol.closed or self.transport.is_closing():
            raise httpx.WriteError("the connection is closed")
        self.transport.write(data)
        writer = self.protocol.writer
        if writer is not None:  # the socket's buffer is full: wait for it to drain
            try:
                async with asyncio.timeout(timeout):
                    await writer
            except TimeoutError:
                raise httpx.WriteTimeout(f"could not write within {timeout:g} s") from None
            if self.protocol.closed:
                raise httpx.WriteError("the connection was closed while writing")

    def close(self) -> None:
        """Close now: asyncio would close the socket only on the loop's next turn, and a provider must see a
        stopped reply's disconnect even if this task blocks or is cancelled first."""
        if not self.transport.is_closing():
            sock = self.transport.get_extra_info("socket")
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
        self.transport.close()


class _Stale(Exception):
    """A kept-alive connection turned out closed before any byte of the answer: try a new one."""


def _head(request: httpx.Request, body: bytes) -> bytes:
    lines = [request.method.encode("ascii") + b" " + request.url.raw_path + b" HTTP/1.1"]
    for name, value in request.headers.raw:
        if b"\r" in value or b"\n" in value or b"\0" in value:  # a staff-entered header must not split the head
            raise httpx.LocalProtocolError(f"invalid value in header {name.decode('latin-1')!r}")
        lines.append(name + b": " + value)
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def _parse_head(head: bytes) -> tuple[int, bytes, bytes, list[tuple[bytes, bytes]]]:
    """(status, reason, version, headers) of a response head without its final blank line. Lines may end in a bare
    LF, as h11 allowed (RFC 9112 §2.2)."""
    status_line, *lines = (line[:-1] if line[-1:] == b"\r" else line for line in head.split(b"\n"))
    version, _, rest = status_line.partition(b" ")
    code, _, reason = rest.partition(b" ")
    if not version.startswith(b"HTTP/1.") or len(code) != 3 or not code.isdigit():
        raise httpx.RemoteProtocolError(f"not an HTTP/1.1 status line: {status_line[:100]!r}")
    headers: list[tuple[bytes, bytes]] = []
    for line in lines:
        if line[:1] in (b" ", b"\t") and headers:  # an obsolete folded continuation
            name, value = headers[-1]
            headers[-1] = (name, value + b" " + line.strip())
            continue
        name, colon, value = line.partition(b":")
        if not colon or not name or name != name.strip():
            raise httpx.RemoteProtocolError(f"malformed header line: {line[:100]!r}")
        headers.append((name, value.strip()))
    return int(code), reason, version, headers


class _Body(httpx.AsyncByteStream):
    """A response body as it arrives: each step hands over every byte of it buffered so far."""

    def __init__(self, pool: Http11Transport, connection: _Connection, framing: str, length: int,
                 keep_alive: bool, timeout: float | None) -> None:
        self._pool = pool
        self._connection: _Connection | None = connection
        self._framing = framing  # "length", "chunked" or "close"
        self._left = length  # "length": bytes to come; "chunked": bytes of the current chunk to come
        self._keep_alive = keep_alive
        self._timeout = timeout
        self._done = framing == "length" and length == 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        if self._done:
            return
        connection = self._connection
        if connection is None:
            raise httpx.StreamClosed()
        read = self._chunked if self._framing == "chunked" else self._plain
        while not self._done:
            data = read(connection)
            if data:
                yield data
            elif not self._done:
                if connection.protocol.closed:
                    if self._framing == "close" and connection.protocol.error is None:
                        self._done = True  # the close is the end of this body
                        break
                    raise connection.ended()
                await connection.fill(self._timeout)

    def buffered(self) -> bool:
        """Whether more of the body has arrived already (the next step will not wait)."""
        return self._connection is not None and bool(self._connection.protocol.buffer)

    def _plain(self, connection: _Connection) -> bytes:
        buffer = connection.protocol.buffer
        if not buffer:
            return b""
        if self._framing == "close":
            return connection.take(len(buffer))
        data = connection.take(self._left)
        self._left -= len(data)
        self._done = self._left == 0
        return data

    def _chunked(self, connection: _Connection) -> bytes:
        """Decode every whole piece of chunked framing in the buffer; the data of several chunks comes out as one.
        `_left` is the state: > 0 data of the current chunk to come, 0 a size line, -1 the CRLF closing a chunk's
        data, -2 the trailer lines after the last chunk."""
        buffer = connection.protocol.buffer
        if not buffer:
            return b""
        wire = bytes(buffer)  # parsed by position, removed from the buffer once at the end
        at, size, left = 0, len(wire), self._left
        out: list[bytes] = []
        while at < size:
            if left > 0:
                end = min(at + left, size)
                out.append(wire[at:end])
                left -= end - at
                at = end
                if left == 0:
                    left = -1
            elif left == -1:
                if size - at < 2:
                    break
                if wire[at:at + 2] != b"\r\n":
                    raise httpx.RemoteProtocolError("a chunk does not end with CRLF")
                at += 2
                left = 0
            else:
                end = wire.find(b"\r\n", at)
                if end < 0:
                    if size - at > MAX_CHUNK_LINE:
                        raise httpx.RemoteProtocolError("a chunk's size line is too long")
                    break
                line, at = wire[at:end], end + 2
                if left == -2:  # a trailer line, or the empty line that ends the message
                    if not line:
                        self._done = True
                        break
                    continue
                digits = line.split(b";", 1)[0].strip()
                if not digits or digits.strip(b"0123456789abcdefABCDEF"):
                    raise httpx.RemoteProtocolError(f"invalid chunk size {digits[:20]!r}")
                left = int(digits, 16) or -2
        self._left = left
        connection.skip(at)
        return b"".join(out)

    async def aclose(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            self._pool.release(connection, reuse=self._done and self._keep_alive)


class Http11Transport(httpx.AsyncBaseTransport):
    """HTTP/1.1 over asyncio's sockets (TLS included), at most `max_connections` at once, up to `max_keepalive`
    idle ones kept for `keepalive_expiry` seconds and reused most recent first. One event loop only."""

    def __init__(self, *, ssl_context: ssl.SSLContext, max_connections: int = 1000, max_keepalive: int = 200,
                 keepalive_expiry: float = 5.0) -> None:
        self._ssl_context = ssl_context
        self._max_connections = max_connections
        self._max_keepalive = max_keepalive
        self._expiry = keepalive_expiry
        self._idle: dict[Origin, list[_Connection]] = {}
        self._idle_count = 0
        self._slots: asyncio.Semaphore | None = None  # made on first use, in the loop that uses it

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        if url.scheme not in ("http", "https"):
            raise httpx.UnsupportedProtocol(f"unsupported scheme {url.scheme!r}", request=request)
        if not url.host:
            raise httpx.UnsupportedProtocol("no host in the URL", request=request)
        origin = (url.scheme, url.host, url.port or (443 if url.scheme == "https" else 80))
        timeouts: dict[str, Any] = request.extensions.get("timeout", {})
        message = _head(request, await request.aread())
        if self._slots is None:
            self._slots = asyncio.Semaphore(self._max_connections)
        try:
            async with asyncio.timeout(timeouts.get("pool")):
                await self._slots.acquire()
        except TimeoutError:
            raise httpx.PoolTimeout("no free connection in time", request=request) from None
        connection = None
        body = None
        try:
            while True:
                connection = self._take_idle(origin)
                reused = connection is not None
                if connection is None:
                    connection = await self._connect(origin, timeouts.get("connect"))
                try:
                    await connection.write(message, timeouts.get("write"))
                    status, reason, version, headers = await self._response_head(
                        connection, timeouts.get("read"), reused=reused
                    )
                    break
                except (_Stale, httpx.WriteError):
                    connection.close()
                    if not reused:
                        raise
                    connection = None  # the server had closed it while it waited: once more on a new one
            framing, length, keep_alive = _framing(request.method, status, version, headers)
            body = _Body(self, connection, framing, length, keep_alive, timeouts.get("read"))
            response = httpx.Response(status, headers=headers, stream=body,
                                      extensions={"http_version": version, "reason_phrase": reason})
            if body._done:  # nothing to read: the connection is free at once
                await body.aclose()
            return response
        except BaseException as exc:
            if body is None:  # else the body has the slot and gives it back when closed
                if connection is not None:
                    connection.close()
                self._slots.release()
            if isinstance(exc, httpx.TransportError) and exc._request is None:
                exc.request = request
            raise

    def _take_idle(self, origin: Origin) -> _Connection | None:
        idle = self._idle.get(origin)
        if not idle:
            return None
        now = asyncio.get_running_loop().time()
        while idle:
            connection = idle.pop()
            self._idle_count -= 1
            if connection.reusable(now, self._expiry):
                return connection
            connection.close()
        return None

    async def _connect(self, origin: Origin, timeout: float | None) -> _Connection:  # noqa: ASYNC109
        scheme, host, port = origin
        tls = self._ssl_context if scheme == "https" else None
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeout):
                transport, protocol = await loop.create_connection(
                    _Protocol, host, port, ssl=tls, server_hostname=host if tls else None
                )
        except TimeoutError:
            raise httpx.ConnectTimeout(f"no connection within {timeout:g} s") from None
        except OSError as exc:  # refused, unreachable, unknown name, TLS (ssl.SSLError is an OSError)
            raise httpx.ConnectError(f"{type(exc).__name__}: {exc}") from None
        return _Connection(origin, transport, protocol)  # type: ignore[arg-type]

    async def _response_head(
        self, connection: _Connection, timeout: float | None, *, reused: bool  # noqa: ASYNC109
    ) -> tuple[int, bytes, bytes, list[tuple[bytes, bytes]]]:
        protocol = connection.protocol
        searched = 0
        while True:
            found = _HEAD_END.search(protocol.buffer, searched)
            end = found.start() if found else -1
            if end < 0 or end > MAX_HEAD:
                if max(end, len(protocol.buffer)) > MAX_HEAD:
                    raise httpx.RemoteProtocolError("the response's head is too large")
                searched = max(0, len(protocol.buffer) - 2)
                if protocol.closed:
                    if reused and not protocol.buffer:
                        raise _Stale()
                    if protocol.error is None and not protocol.buffer:
                        raise httpx.RemoteProtocolError("the server disconnected without sending a response")
                    raise connection.ended()
                await connection.fill(timeout)
                continue
            head = connection.take(found.end())[:end]  # type: ignore[union-attr]
            searched = 0
            status, reason, version, headers = _parse_head(head)
            if 100 <= status < 200:
                if status == 101:
                    raise httpx.RemoteProtocolError("the server switched protocols")
                continue  # 100 Continue and other interim answers: the real one follows
            return status, reason, version, headers

    def release(self, connection: _Connection, *, reuse: bool) -> None:
        """A response is done with its connection: keep it for the next request, or close it."""
        assert self._slots is not None
        self._slots.release()
        if reuse and connection.quiet():
            if self._idle_count >= self._max_keepalive:
                self._evict_one()
            if self._idle_count < self._max_keepalive:
                connection.idle_since = asyncio.get_running_loop().time()
                self._idle.setdefault(connection.origin, []).append(connection)
                self._idle_count += 1
                return
        connection.close()

    def _evict_one(self) -> None:
        oldest = min((idle[0] for idle in self._idle.values() if idle), key=lambda c: c.idle_since, default=None)
        if oldest is not None:
            self._idle[oldest.origin].remove(oldest)
            self._idle_count -= 1
            oldest.close()

    async def aclose(self) -> None:
        for idle in self._idle.values():
            for connection in idle:
                connection.close()
        self._idle.clear()
        self._idle_count = 0


def _framing(method: str, status: int, version: bytes, headers: list[tuple[bytes, bytes]]) -> tuple[str, int, bool]:
    """(framing, length, keep-alive) of a response body (RFC 9112 §6.3)."""
    connection_tokens: set[bytes] = set()
    encodings: list[bytes] = []
    lengths: set[bytes] = set()
    for name, value in headers:
        lowered = name.lower()
        if lowered == b"transfer-encoding":
            encodings += [e.strip().lower() for e in value.split(b",") if e.strip()]
        elif lowered == b"content-length":
            lengths.update(v.strip() for v in value.split(b","))
        elif lowered == b"connection":
            connection_tokens.update(t.strip().lower() for t in value.split(b","))
    keep_alive = version == b"HTTP/1.1" and b"close" not in connection_tokens
    if method == "HEAD" or status in (204, 304):
        return "length", 0, keep_alive
    if encodings:
        return ("chunked", 0, keep_alive) if encodings[-1] == b"chunked" else ("close", 0, False)
    if lengths:
        if len(lengths) > 1 or not all(v.isdigit() for v in lengths):
            raise httpx.RemoteProtocolError("invalid Content-Length")
        return "length", int(lengths.pop()), keep_alive
    return "close", 0, False
