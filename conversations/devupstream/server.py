"""Running the dev upstream: blocking under uvicorn, or in a background thread for tests and benchmarks."""

from __future__ import annotations

import json
import socket
import ssl
import threading
import time
import urllib.request
from types import TracebackType
from typing import Any
from urllib.parse import quote

import uvicorn

from .app import DevUpstream, create_app, warm_up

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8001


def run(
    host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, *, log_level: str = "info", **defaults: Any
) -> None:
    """Serve until interrupted. `defaults` are switches (delay=0.02, dialect="groq", ...) over the
    DEVUPSTREAM_OPTIONS environment variable."""
    app = create_app(**defaults)
    warm_up()
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_level=log_level,
        access_log=False,
        lifespan="off",
        backlog=4096,
        timeout_keep_alive=30,
        timeout_graceful_shutdown=2,
    )


def switches_path(**switches: Any) -> str:
    """The `/s/<opts>` path prefix for per-request switches (empty without any)."""
    parts = []
    for name, value in switches.items():
        if value is None:
            continue
        if isinstance(value, bool):
            value = int(value)
        parts.append(f"{name}={value}")
    return "/s/" + quote(",".join(parts), safe="=,.-_") if parts else ""


class ThreadedUpstream:
    """The dev upstream on a free port in a background thread::

    with ThreadedUpstream(delay=0.001) as upstream:
        base_url = upstream.v1(fail=429, times=1, key="t1")   # http://127.0.0.1:PORT/s/.../v1
        ...
        upstream.stats("t1")   # {"requests": 2, "completed": 2, "disconnected": 0, ...}
    """

    def __init__(
        self,
        host: str = DEFAULT_HOST,
        port: int = 0,
        *,
        log_level: str = "warning",
        tls: tuple[str, str] | None = None,
        **defaults: Any,
    ) -> None:
        self.app: DevUpstream = create_app(**defaults)
        self.tls = tls  # (certificate file, key file): serve HTTPS
        self.host = host
        self._port = port
        self._log_level = log_level
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._sock: socket.socket | None = None

    @property
    def port(self) -> int:
        assert self._sock is not None, "not started"
        return self._sock.getsockname()[1]

    @property
    def url(self) -> str:
        """http://HOST:PORT (no /v1)."""
        return f"{'https' if self.tls else 'http'}://{self.host}:{self.port}"

    def v1(self, **switches: Any) -> str:
        """The base URL of the OpenAI-compatible API with per-request switches."""
        return f"{self.url}{switches_path(**switches)}/v1"

    def stats(self, key: str | None = None) -> dict[str, int]:
        """The connection counters of one key (or the totals), read over HTTP like any client would."""
        query = f"?key={quote(key)}" if key is not None else ""
        # Over HTTPS this trusts the server's own certificate (tests use a self-signed one).
        context = ssl.create_default_context(cafile=self.tls[0]) if self.tls else None
        url = f"{self.url}/_stats{query}"
        with urllib.request.urlopen(url, timeout=5, context=context) as response:  # noqa: S310 (our own URL)
            return json.loads(response.read())

    def received(self, key: str) -> list[Any]:
        """The prompts (chat `messages`, or a completion's `prompt`) the server received with this key, oldest first."""
        context = ssl.create_default_context(cafile=self.tls[0]) if self.tls else None
        url = f"{self.url}/_received?key={quote(key)}"
        with urllib.request.urlopen(url, timeout=5, context=context) as response:  # noqa: S310 (our own URL)
            return json.loads(response.read())

    def wait_for(self, key: str, timeout: float = 5.0, **expected: int) -> dict[str, int]:
        """Poll stats(key) until every expected counter is reached (the server sees a close a moment
        after the client made it); returns the last stats either way."""
        deadline = time.monotonic() + timeout
        while True:
            stats = self.stats(key)
            if all(stats.get(name, 0) >= value for name, value in expected.items()):
                return stats
            if time.monotonic() > deadline:
                return stats
            time.sleep(0.01)

    def start(self) -> ThreadedUpstream:
        warm_up()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # Accepted sockets inherit TCP_NODELAY (Linux): without it a reused connection can wait ~40 ms for a
        # delayed ACK between a response's head and its body (Nagle), which no real provider makes clients do.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind((self.host, self._port))
        self._sock = sock
        config = uvicorn.Config(
            self.app,
            log_level=self._log_level,
            access_log=False,
            lifespan="off",
            backlog=4096,
            timeout_graceful_shutdown=1,
            ssl_certfile=self.tls[0] if self.tls else None,
            ssl_keyfile=self.tls[1] if self.tls else None,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, name="devupstream", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the development upstream did not start")
            time.sleep(0.005)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self._sock is not None:
            self._sock.close()
        self._server = self._thread = None

    def __enter__(self) -> ThreadedUpstream:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
