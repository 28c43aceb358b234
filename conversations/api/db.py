"""The API's database work off the event loop, on a few long-lived threads that keep their SQLite connection.

Django runs each request's thread-sensitive code in a thread of its own (ASGIHandler's per-request
ThreadSensitiveContext), so `sync_to_async` in a view opens a new database connection for every request:
~1.1-1.8 ms on SQLite with the WAL pragmas, on the path to the first token. The API's calls run here instead
(`run`), on DB_THREADS threads that outlive requests:

- SQLite: the thread keeps its connection between calls. A connection that saw an error is checked and
  replaced if unusable; one left inside a transaction or out of autocommit is closed (never reused dirty).
- PostgreSQL: the connection goes back to psycopg's pool after each call (settings: CONN_MAX_AGE 0 with the
  pool), as everywhere else in the project; the pool makes that cheap, and no thread pins a pooled connection.

Calls that can overlap (several requests admitted at once) get up to DB_THREADS threads, each with its own
connection; one request's calls are not bound to one thread (they share nothing but the database).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial, wraps
from typing import Any, ParamSpec, TypeVar

from asgiref.sync import sync_to_async
from django.db import connections

DB_THREADS = 4

P = ParamSpec("P")
R = TypeVar("R")

_lock = threading.Lock()
_executor: ThreadPoolExecutor | None = None
_executor_pid = 0


def _get_executor() -> ThreadPoolExecutor:
    global _executor, _executor_pid
    with _lock:
        if _executor is None or _executor_pid != os.getpid():  # a forked worker starts its own threads
            _executor = ThreadPoolExecutor(DB_THREADS, thread_name_prefix="chatweb-api-db")
            _executor_pid = os.getpid()
        return _executor


def _tidy() -> None:
    """After a call: keep a clean SQLite connection for the next one, hand back or drop any other."""
    for conn in connections.all(initialized_only=True):
        if conn.connection is None:
            continue
        keep = (
            conn.vendor == "sqlite"
            and not conn.in_atomic_block
            and conn.get_autocommit() == conn.settings_dict["AUTOCOMMIT"]
        )
        if keep and conn.errors_occurred:
            keep = conn.is_usable()
            conn.errors_occurred = False
        if not keep:
            conn.close()


def _call(function: Callable[..., R], *args: Any, **kwargs: Any) -> R:
    try:
        return function(*args, **kwargs)
    finally:
        _tidy()


def run(function: Callable[P, R]) -> Callable[P, Any]:
    """`function` as a coroutine function that runs it on the API's database threads (see the docstring)."""

    @wraps(function)
    async def runner(*args: P.args, **kwargs: P.kwargs) -> R:
        return await sync_to_async(partial(_call, function), thread_sensitive=False, executor=_get_executor())(
            *args, **kwargs
        )

    return runner
