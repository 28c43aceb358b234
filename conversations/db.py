"""How async code reaches the database: the one door. `await db.chat.run(function, *args, **kwargs)` runs a sync
function on a lane of long-lived named threads; `db.<lane>.submit(...)` gives its future instead (a caller that
must outlive a cancellation shields it). Nothing else in chatweb uses `database_sync_to_async` or `sync_to_async`
for database work.

channels' `database_sync_to_async` and a view's `sync_to_async` close the connection after each call (with
CONN_MAX_AGE 0) or run in a thread made per request, so every call opened a new one: 1-4 ms on SQLite with the
WAL pragmas, on the path to the first token. Calls made through a lane run on its own threads:

- SQLite: the thread keeps its connection between calls. A connection that saw an error is kept only if still
  usable; one left inside a transaction or out of autocommit is closed (never reused dirty).
- PostgreSQL: the connection goes back to psycopg's pool after each call (settings: CONN_MAX_AGE 0 with the
  pool), as everywhere else; the pool makes that cheap, and no thread pins a pooled connection.

With one thread, calls run one after another in call order; with several, calls that overlap get their own
thread and connection (they share nothing but the database).

`await db.<lane>.together(function, ...)` is for short write transactions that arrive in bursts and that nobody
waits for to see a first token (the finishes of a class's replies, the ledger rows of /v1): the calls queued while
the lane is busy run one after another in ONE transaction, each in a savepoint of its own, so a burst of N costs a
handful of commits instead of N (on SQLite each commit takes and hands back the one write lock; on PostgreSQL it is
a round trip and a WAL flush). Every caller of a batch hears only once the whole batch has committed, so admissions
never use it: each would wait for all the others of its batch before its upstream request could start. A call
that raises rolls back to its savepoint only: the others commit. If the shared transaction itself fails (a
deadlock between processes, the commit), every call of the batch runs again in a transaction of its own, so only
functions whose whole effect is in the database (nothing counted in memory, nothing sent) may use it.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any, ParamSpec, TypeVar

from django.db import connections, transaction

P = ParamSpec("P")
T = TypeVar("T")

BATCH_LIMIT = 16  # calls in one shared transaction at most: an ordinary call (an admission) queued behind a batch
# waits for 16 finishes at most, and the write lock is never held long


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


def _settle(future: asyncio.Future[Any], ok: bool, value: Any) -> None:
    if future.cancelled():
        return
    if ok:
        future.set_result(value)
    else:
        future.set_exception(value)


def _attempt(call: Callable[[], Any], *, savepoint: bool) -> tuple[bool, Any]:
    """(True, result) or (False, the exception); with `savepoint`, inside one that a failure rolls back."""
    try:
        if savepoint:
            with transaction.atomic():
                return True, call()
        return True, call()
    except Exception as exc:
        return False, exc


class _SharedTransactionLost(Exception):
    """The shared transaction is marked for rollback: what its calls wrote would silently be undone."""


def _run_batch(calls: list[Callable[[], Any]]) -> list[tuple[bool, Any]]:
    """The calls in one transaction, each in its own savepoint; each in its own transaction if that one fails."""
    try:
        if len(calls) == 1:
            return [_attempt(calls[0], savepoint=False)]
        try:
            with transaction.atomic():
                outcomes = [_attempt(call, savepoint=True) for call in calls]
                if transaction.get_rollback():  # a savepoint could not be rolled back: Django would roll back all
                    raise _SharedTransactionLost
            return outcomes
        except Exception:  # nothing of the batch was committed: run each alone
            return [_attempt(call, savepoint=False) for call in calls]
    finally:
        _tidy()


class DbThreads:
    """`threads` named threads for database calls: `await lane.run(function, *args, **kwargs)`."""

    def __init__(self, name: str, threads: int = 1) -> None:
        self.name = name
        self.threads = threads
        self._executor: ThreadPoolExecutor | None = None
        self._pid = 0
        self._lock = threading.Lock()
        self._queued: list[tuple[Callable[[], Any], asyncio.Future[Any], asyncio.AbstractEventLoop]] = []
        self._draining = False

    def _get_executor(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._executor is None or self._pid != os.getpid():  # a forked worker starts its own threads
                self._executor = ThreadPoolExecutor(self.threads, thread_name_prefix=self.name)
                self._pid = os.getpid()
            return self._executor

    def submit(self, function: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> asyncio.Future[T]:
        """Start `function(*args, **kwargs)` on these threads; its future (no task around it: a caller that must
        outlive a cancellation shields this future itself)."""
        # The loop's own executor call, in a copy of the caller's context: what asgiref's sync_to_async does for a
        # given executor, without its bookkeeping for thread-sensitive code (a third of each hop's cost).
        call = partial(contextvars.copy_context().run, _call, function, *args, **kwargs)
        return asyncio.get_running_loop().run_in_executor(self._get_executor(), call)

    async def run(self, function: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """`function(*args, **kwargs)` on these threads, awaited."""
        return await self.submit(function, *args, **kwargs)

    def submit_together(self, function: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> asyncio.Future[T]:
        """Queue `function(*args, **kwargs)` to run in a transaction shared with the calls queued beside it (see the
        module's docstring); its future."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        call = partial(contextvars.copy_context().run, function, *args, **kwargs)
        with self._lock:
            self._queued.append((call, future, loop))
            start, self._draining = not self._draining, True
        if start:
            self._get_executor().submit(self._drain)
        return future

    async def together(self, function: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """`function(*args, **kwargs)` in a transaction shared with the calls queued beside it, awaited."""
        return await self.submit_together(function, *args, **kwargs)

    def _drain(self) -> None:
        """One batch of the queued calls (on a lane thread), then the next batch behind whatever else was submitted
        meanwhile, so ordinary calls never wait for a whole burst."""
        with self._lock:
            batch, self._queued = self._queued[:BATCH_LIMIT], self._queued[BATCH_LIMIT:]
        try:
            outcomes = _run_batch([call for call, _, _ in batch])
        except Exception as exc:  # tidying the connection failed: every caller hears of it, none waits forever
            outcomes = [(False, exc)] * len(batch)
        for (_, future, loop), (ok, value) in zip(batch, outcomes, strict=True):
            with contextlib.suppress(RuntimeError):  # the caller's loop has closed (shutdown): nobody to tell
                loop.call_soon_threadsafe(_settle, future, ok, value)
        with self._lock:
            self._draining = bool(self._queued)
            if not self._draining:
                return
        self._get_executor().submit(self._drain)


# The lanes. Each is separate for a measured reason: a slow call on one never queues the others.
chat = DbThreads("chatweb-chat-db")
"""The chat's reads and writes (admission, finish, reaping, titles, the socket's small reads): one thread, so
the process's chat writes run one after another in call order."""
checkpoints = DbThreads("chatweb-checkpoint")
"""Checkpoints and heartbeats of streaming replies, never queued behind a burst of admissions on `chat` (under
load that queue grew past a minute, and other processes' reapers took this process's replies for dead). On
SQLite the two lanes' short write transactions take turns on the lock (IMMEDIATE, 30 s busy timeout)."""
api = DbThreads("chatweb-api-db", 4)
"""The /v1 API: calls that overlap (several requests admitted at once) get up to four threads."""
auth = DbThreads("chatweb-ws-auth", 2)
"""A websocket's sign-in (session and user), apart from the chat's lane so that connecting never waits on it."""
pages = DbThreads("chatweb-pages-db", 2)
"""Async page views' longer reads (the CSV export's batches), never in the way of chat or API admissions."""
