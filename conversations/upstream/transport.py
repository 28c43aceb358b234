"""HTTP/1.1 to the providers on aiohttp's connection pool and C parser, as an httpx transport.

httpx keeps what the client code reads (requests, `Response`, content decoding, its exception types); aiohttp
does the connections (keep-alive pool, TLS, an egress proxy) and the parsing. This module adds what a provider's
request needs on top:

- header names and values are checked before anything is sent: a provider's extra header can never add a line
  or a header of its own to the request;
- the egress proxy comes from ``HTTPS_PROXY`` / ``HTTP_PROXY`` / ``ALL_PROXY`` and ``NO_PROXY``, read once when the
  transport is made (aiohttp's own ``trust_env`` would also read ``~/.netrc`` and hop to a thread every request);
- every aiohttp failure leaves as one of httpx's exceptions, which the client maps to its stable codes;
- a body closed before its end closes its socket at once (``shutdown``), so the provider stops generating even if
  the task is cancelled or blocks next; aiohttp alone would close it on the loop's next turn;
- a POST is sent once: aiohttp replays only idempotent methods on a kept connection the server had closed.
"""

from __future__ import annotations

import contextlib
import contextvars
import socket
import ssl
import urllib.request
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import httpx

from conversations.upstream.headers import check_headers


class EnvironmentProxies:
    """The proxy for a URL as curl, requests and httpx choose it from the environment: ``<scheme>_PROXY`` (either
    case), else ``ALL_PROXY``; none for a host that ``NO_PROXY`` names (a domain and its subdomains, an address,
    ``host:port``, or ``*``)."""

    def __init__(self) -> None:
        self._proxies = urllib.request.getproxies_environment()
        self._chosen: dict[tuple[str, str, int | None], str | None] = {}

    def __bool__(self) -> bool:
        return any(k != "no" for k in self._proxies)

    def for_url(self, url: httpx.URL) -> str | None:
        key = (url.scheme, url.host, url.port)
        if key not in self._chosen:
            self._chosen[key] = self._choose(url)
        return self._chosen[key]

    def _choose(self, url: httpx.URL) -> str | None:
        proxy = self._proxies.get(url.scheme) or self._proxies.get("all")
        if not proxy:
            return None
        host = f"{url.host}:{url.port}" if url.port else url.host
        # NO_PROXY as urllib reads it; the function is undocumented (so untyped) but present since Python 2.
        if urllib.request.proxy_bypass_environment(host, self._proxies):  # type: ignore[attr-defined]
            return None
        return proxy if "://" in proxy else f"http://{proxy}"


def _mapped(exc: BaseException, *, connecting: bool) -> httpx.TransportError:
    """One of httpx's exceptions for an aiohttp failure; `connecting`: no response head had arrived yet."""
    text = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, aiohttp.ClientProxyConnectionError | aiohttp.ClientHttpProxyError):
        return httpx.ProxyError(text)
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return httpx.ConnectTimeout(text)
    if isinstance(exc, aiohttp.SocketTimeoutError):
        return httpx.ReadTimeout(text)
    if isinstance(exc, aiohttp.ClientConnectorError):  # refused, unknown name, TLS (certificates included)
        return httpx.ConnectError(text)
    if isinstance(exc, aiohttp.InvalidURL):
        return httpx.UnsupportedProtocol(text)
    if isinstance(exc, aiohttp.ServerDisconnectedError | aiohttp.ClientPayloadError | aiohttp.ClientResponseError):
        return httpx.RemoteProtocolError(text)  # cut short, malformed head or body
    if isinstance(exc, TimeoutError):
        return httpx.ConnectTimeout(text) if connecting else httpx.ReadTimeout(text)
    if isinstance(exc, aiohttp.ClientOSError | OSError):
        return httpx.ConnectError(text) if connecting else httpx.ReadError(text)
    return httpx.RemoteProtocolError(text)  # any other aiohttp.ClientError


def _shut(transport: Any) -> None:
    """Shut the socket under an asyncio transport down now: the peer sees the close even if this task is cancelled or
    the loop blocks next (asyncio closes a socket on the loop's next turn)."""
    sock = transport.get_extra_info("socket") if transport is not None else None
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


# The connections handed to the request in progress in this task, to be shut at once when it fails or is cancelled
# before its response head (aiohttp closes them, on the loop's next turn).
_attempt: contextvars.ContextVar[list[Any] | None] = contextvars.ContextVar("upstream_attempt", default=None)


class _Connector(aiohttp.TCPConnector):
    async def connect(self, req: Any, traces: Any, timeout: Any) -> Any:  # noqa: ASYNC109 (aiohttp's signature)
        connection = await super().connect(req, traces, timeout)
        attempt = _attempt.get()
        if attempt is not None:
            attempt.append(connection.transport)
        return connection


class _Body(httpx.AsyncByteStream):
    """A response body as it arrives: each step hands over all of it that aiohttp has buffered."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response
        self._early = b""  # what `buffered` took from aiohttp's buffer, handed over next
        # aiohttp's C parser leaves a body waiting forever when it rejects the body's framing (an invalid chunk
        # size): it closes the connection but tells the body nothing. The connection's end tells it here.
        connection = response.connection
        protocol = connection.protocol if connection is not None else None
        self._closed = protocol.closed if protocol is not None else None
        if self._closed is not None:
            self._closed.add_done_callback(self._connection_ended)

    def _connection_ended(self, _: Any) -> None:
        content = self._response.content
        if not content.is_eof() and content.exception() is None:
            content.set_exception(aiohttp.ClientPayloadError("the connection ended before the body did"))

    async def __aiter__(self) -> AsyncIterator[bytes]:
        content = self._response.content
        try:
            while True:
                if self._early:
                    data, self._early = self._early, b""
                else:
                    data = await content.readany()
                    if not data:
                        return
                yield data
        except aiohttp.ClientError as exc:
            raise _mapped(exc, connecting=False) from exc
        except TimeoutError as exc:
            raise httpx.ReadTimeout(f"nothing received: {exc}") from exc

    def buffered(self) -> bool:
        """Whether more of the body has arrived already (the next step will not wait)."""
        if not self._early:
            try:
                self._early = self._response.content.read_nowait()
            except (aiohttp.ClientError, RuntimeError):
                return False  # the next step raises it
        return bool(self._early)

    async def aclose(self) -> None:
        if self._closed is not None:
            self._closed.remove_done_callback(self._connection_ended)
            self._closed = None
        response = self._response
        if response.content.is_eof():
            response.release()  # whole: the connection goes back to the pool
            return
        connection = response.connection
        _shut(connection.transport if connection is not None else None)
        response.close()


class AiohttpTransport(httpx.AsyncBaseTransport):
    """At most `max_connections` connections at once, idle ones kept `keepalive_expiry` seconds. The aiohttp session
    is made on first use, in the loop that uses it: one event loop only."""

    def __init__(self, *, ssl_context: ssl.SSLContext, max_connections: int = 1000, keepalive_expiry: float = 5.0,
                 proxies: EnvironmentProxies | None = None) -> None:
        self._ssl_context = ssl_context
        self._max_connections = max_connections
        self._expiry = keepalive_expiry
        self._proxies = proxies if proxies is not None else EnvironmentProxies()
        self._session: aiohttp.ClientSession | None = None

    def _open(self) -> aiohttp.ClientSession:
        connector = _Connector(limit=self._max_connections, limit_per_host=0, ssl=self._ssl_context,
                                         keepalive_timeout=self._expiry)
        # No cookie jar (a provider's cookies are not kept), no decompression (httpx decodes, by the headers); the
        # request's headers are httpx's, so aiohttp adds none of its own but Host and Content-Length.
        return aiohttp.ClientSession(connector=connector, cookie_jar=aiohttp.DummyCookieJar(), auto_decompress=False,
                                     trust_env=False)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        if url.scheme not in ("http", "https"):
            raise httpx.UnsupportedProtocol(f"unsupported scheme {url.scheme!r}", request=request)
        headers = [(name.decode("latin-1"), value.decode("latin-1")) for name, value in request.headers.raw
                   if name.lower() not in (b"host", b"content-length", b"transfer-encoding")]
        try:
            check_headers(headers)
        except httpx.LocalProtocolError as exc:
            exc.request = request
            raise
        if self._session is None or self._session.closed:
            self._session = self._open()
        timeouts: dict[str, Any] = request.extensions.get("timeout", {})
        timeout = aiohttp.ClientTimeout(total=None, connect=timeouts.get("pool"), sock_connect=timeouts.get("connect"),
                                        sock_read=timeouts.get("read"))
        proxy = self._proxies.for_url(url)
        body = await request.aread()
        attempt: list[Any] = []
        token = _attempt.set(attempt)
        try:
            response = await self._session.request(
                request.method, str(url), headers=headers, data=body or None, allow_redirects=False,
                timeout=timeout, proxy=proxy, compress=False,
            )
        except BaseException as exc:
            for transport in attempt:
                _shut(transport)
            if not isinstance(exc, aiohttp.ClientError | OSError | TimeoutError):
                raise  # cancelled
            error = _mapped(exc, connecting=True)
            error.request = request
            raise error from exc
        finally:
            _attempt.reset(token)
        return httpx.Response(response.status, headers=response.raw_headers, stream=_Body(response),
                              extensions={"http_version": b"HTTP/1.1",
                                          "reason_phrase": (response.reason or "").encode("latin-1", "replace")})

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
