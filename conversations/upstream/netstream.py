"""httpcore's network layer on asyncio's own transports, for the upstream pool (HTTP itself stays httpcore's and h11's).

anyio's streams, httpcore's default, cost on every read a selector registration and its removal, a cancel scope
and two context managers; an upstream stream reads once per token, and at 1,000 streams a process reads 20,000
times a second (issue #9, docs/benchmarks.md). Here a protocol buffers what arrives and a read takes from the
buffer, waiting on one future only when it is empty. Errors are httpcore's own exceptions, which httpx maps.
"""

# ruff: noqa: ASYNC109 (httpcore's interface hands each call its timeout as an argument)
from __future__ import annotations

import asyncio
import ssl
from collections.abc import Iterable
from typing import Any

import httpcore

HIGH_WATER = 256 * 1024  # bytes buffered before the socket stops being read (a slow consumer)


class _Protocol(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.closed = False  # EOF or connection lost
        self.error: BaseException | None = None
        self.reader: asyncio.Future[None] | None = None
        self.reading_paused = False
        self.writer: asyncio.Future[None] | None = None
        self.writing_paused = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if len(self.buffer) > HIGH_WATER and not self.reading_paused and self.transport is not None:
            self.transport.pause_reading()
            self.reading_paused = True
        self._wake_reader()

    def eof_received(self) -> bool:
        self.closed = True
        self._wake_reader()
        return False  # let the transport close itself

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.error = exc
        self._wake_reader()
        self.writing_paused = False
        if self.writer is not None and not self.writer.done():
            self.writer.set_result(None)

    def pause_writing(self) -> None:
        self.writing_paused = True

    def resume_writing(self) -> None:
        self.writing_paused = False
        if self.writer is not None and not self.writer.done():
            self.writer.set_result(None)

    def _wake_reader(self) -> None:
        if self.reader is not None and not self.reader.done():
            self.reader.set_result(None)


async def _within(timeout: float | None, awaitable: Any) -> Any:
    if timeout is None:
        return await awaitable
    async with asyncio.timeout(timeout):
        return await awaitable


async def _park(protocol: _Protocol, waiter: str, timeout: float | None, timed_out: Exception) -> None:
    """Wait until the protocol wakes its `reader` or `writer` (data, drained, closed), or raise `timed_out`."""
    future = asyncio.get_running_loop().create_future()
    setattr(protocol, waiter, future)
    try:
        await _within(timeout, future)
    except TimeoutError:
        raise timed_out from None
    finally:
        setattr(protocol, waiter, None)


class AsyncioStream(httpcore.AsyncNetworkStream):
    def __init__(self, transport: asyncio.Transport, protocol: _Protocol) -> None:
        self._transport = transport
        self._protocol = protocol

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        protocol = self._protocol
        if not protocol.buffer and not protocol.closed:
            await _park(protocol, "reader", timeout, httpcore.ReadTimeout(f"nothing to read within {timeout} s"))
        if protocol.buffer:
            data = bytes(protocol.buffer[:max_bytes])
            del protocol.buffer[:max_bytes]
            if protocol.reading_paused and len(protocol.buffer) < HIGH_WATER // 2:
                protocol.reading_paused = False
                self._transport.resume_reading()
            return data
        if protocol.error is not None:
            raise httpcore.ReadError(f"{type(protocol.error).__name__}: {protocol.error}")
        return b""  # end of stream

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if not buffer:
            return
        protocol = self._protocol
        if protocol.closed or self._transport.is_closing():
            raise httpcore.WriteError("the connection is closed")
        self._transport.write(buffer)
        if protocol.writing_paused:
            await _park(protocol, "writer", timeout, httpcore.WriteTimeout(f"could not write within {timeout} s"))
            if protocol.closed:
                raise httpcore.WriteError("the connection was closed while writing")

    async def aclose(self) -> None:
        self._transport.close()
        await asyncio.sleep(0)  # asyncio closes the socket on the loop's next turn: let it, as anyio's aclose does

    async def start_tls(
        self, ssl_context: ssl.SSLContext, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.AsyncNetworkStream:
        loop = asyncio.get_running_loop()
        try:
            transport = await _within(
                timeout,
                loop.start_tls(self._transport, self._protocol, ssl_context, server_hostname=server_hostname),
            )
        except TimeoutError:
            self._transport.close()
            raise httpcore.ConnectTimeout(f"no TLS handshake within {timeout} s") from None
        except (OSError, ssl.SSLError) as exc:
            self._transport.close()
            raise httpcore.ConnectError(f"{type(exc).__name__}: {exc}") from None
        self._protocol.transport = transport
        return AsyncioStream(transport, self._protocol)

    def get_extra_info(self, info: str) -> Any:
        if info == "ssl_object":
            return self._transport.get_extra_info("ssl_object")
        if info == "client_addr":
            return self._transport.get_extra_info("sockname")
        if info == "server_addr":
            return self._transport.get_extra_info("peername")
        if info == "socket":
            return self._transport.get_extra_info("socket")
        if info == "is_readable":  # asked of an idle connection: anything pending means the server closed it
            return bool(self._protocol.buffer) or self._protocol.closed
        return None


class AsyncioBackend(httpcore.AsyncNetworkBackend):
    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        loop = asyncio.get_running_loop()
        try:
            transport, protocol = await _within(
                timeout,
                loop.create_connection(
                    _Protocol, host, port, local_addr=(local_address, 0) if local_address else None
                ),
            )
        except TimeoutError:
            raise httpcore.ConnectTimeout(f"no connection within {timeout} s") from None
        except OSError as exc:
            raise httpcore.ConnectError(f"{type(exc).__name__}: {exc}") from None
        sock = transport.get_extra_info("socket")
        for option in socket_options or ():
            sock.setsockopt(*option)
        return AsyncioStream(transport, protocol)

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.AsyncNetworkStream:
        loop = asyncio.get_running_loop()
        try:
            transport, protocol = await _within(timeout, loop.create_unix_connection(_Protocol, path))
        except TimeoutError:
            raise httpcore.ConnectTimeout(f"no connection within {timeout} s") from None
        except OSError as exc:
            raise httpcore.ConnectError(f"{type(exc).__name__}: {exc}") from None
        return AsyncioStream(transport, protocol)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
