"""Database work off the event loop, on long-lived named threads that keep their SQLite connection between calls.

channels' `database_sync_to_async` and a view's `sync_to_async` close the connection after each call (with
CONN_MAX_AGE 0) or run in a thread made per request, so every call opened a new one: 1-4 ms on SQLite with the
WAL pragmas, on the path to the first token (issue #9). Calls made through a `DbThreads` run on its own threads:

- SQLite: the thread keeps its connection between calls. A connection that saw an error is kept only if still
  usable; one left inside a transaction or out of autocommit is closed (never reused dirty).
- PostgreSQL: the connection goes back to psycopg's pool after each call (settings: CONN_MAX_AGE 0 with the
  pool), as everywhere else; the pool makes that cheap, and no thread pins a pooled connection.

With one thread, calls run one after another in call order; with several, calls that overlap get their own
thread and connection (they share nothing but the database).
"""

from __future__ import annotations

import asyncio
import contextvars
import os
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial, wraps
from typing import Any

from django.db import connections


def _tidy() -> None:
    """After a call: keep a clean SQLite connection for the next one, hand back or drop any other."""
    for conn in connections.all(initialized_only=True):
        if conn.connection is None:
            continue
        keep = conn.vendor == "sqlite" and not conn.in_atomic_block and conn.get_autocommit()
        if keep and conn.errors_occurred:
            keep = conn.is_usable()
            conn.errors_occurred = False
        if not keep:
            conn.close()


def _call(function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    try:
        return function(*args, **kwargs)
    finally:
        _tidy()


class DbThreads:
    """`threads` named threads for database calls: `await pool.run(function)(*args, **kwargs)`."""

    def __init__(self, name: str, threads: int = 1) -> None:
        self.name = name
        self.threads = threads
        self._executor: ThreadPoolExecutor | None = None
        self._pid = 0
        self._lock = threading.Lock()

    def _get_executor(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._executor is None or self._pid != os.getpid():  # a forked worker starts its own threads
                self._executor = ThreadPoolExecutor(self.threads, thread_name_prefix=self.name)
                self._pid = os.getpid()
            return self._executor

    def submit(self, function: Callable[..., Any], *args: Any, **kwargs: Any) -> asyncio.Future[Any]:
        """Start `function(*args, **kwargs)` on these threads; its future (no task around it: a caller that must
        outlive a cancellation shields this future itself)."""
        # The loop's own executor call, in a copy of the caller's context: what asgiref's sync_to_async does for a
        # given executor, without its bookkeeping for thread-sensitive code (a third of each hop's cost).
        call = partial(contextvars.copy_context().run, _call, function, *args, **kwargs)
        return asyncio.get_running_loop().run_in_executor(self._get_executor(), call)

    def run(self, function: Callable[..., Any]) -> Callable[..., Awaitable[Any]]:
        """`function` as a coroutine function that runs it on these threads."""

        @wraps(function)
        async def runner(*args: Any, **kwargs: Any) -> Any:
            return await self.submit(function, *args, **kwargs)

        return runner
