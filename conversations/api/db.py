"""The API's database work off the event loop: DB_THREADS long-lived threads (conversations/db.py).

Django runs each request's thread-sensitive code in a thread of its own, so `sync_to_async` in a view opened a
new database connection for every request (~1.1-1.8 ms on SQLite, on the path to the first token). Calls that
overlap (several requests admitted at once) get up to DB_THREADS threads, each with its own connection.
"""

from __future__ import annotations

from conversations.db import DbThreads

DB_THREADS = 4

_threads = DbThreads("chatweb-api-db", DB_THREADS)
run = _threads.run
submit = _threads.submit
