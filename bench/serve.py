"""`daphne` with a database write counter, for bench_ws: `python -m bench.serve [daphne args]`.

Counts every INSERT/UPDATE/DELETE statement the process sends (an executemany counts once, its rows apart) and
the checkpoint/heartbeat writes among them, and writes the counters as JSON to $BENCH_WRITES_FILE (checked
every 0.25 s). $BENCH_SWITCH, if set, is passed to sys.setswitchinterval (an experiment on how the database
thread and the event loop share the GIL). Nothing else differs from `daphne chatweb.asgi:application`.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections import Counter

counts: Counter[str] = Counter()


def _kind(sql: str) -> str | None:
    head = sql.lstrip()[:7].upper()
    if not head.startswith(("INSERT", "UPDATE", "DELETE")):
        return None
    if head.startswith("UPDATE") and '"heartbeat_at"' in sql and '"status"' not in sql.split("WHERE")[0]:
        return "checkpoint"  # partial text and/or heartbeat of streaming replies (not a status change)
    return "other"


def _wrapper(execute, sql, params, many, context):
    kind = _kind(sql)
    if kind is not None:
        counts[f"{kind}_statements"] += 1
        counts[f"{kind}_rows"] += len(params) if many else 1
    return execute(sql, params, many, context)


def _install() -> None:
    from django.db.backends.signals import connection_created

    def on_connection(sender, connection, **kwargs) -> None:
        if _wrapper not in connection.execute_wrappers:
            connection.execute_wrappers.append(_wrapper)

    connection_created.connect(on_connection, weak=False)


def _dump_forever(path: str) -> None:
    written = None
    while True:
        now = dict(counts)
        if now != written:
            tmp = f"{path}.tmp"
            with open(tmp, "w") as f:
                json.dump(now, f)
            os.replace(tmp, path)
            written = now
        time.sleep(0.25)


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatweb.settings")
    if os.environ.get("BENCH_SWITCH"):
        sys.setswitchinterval(float(os.environ["BENCH_SWITCH"]))
    _install()
    path = os.environ.get("BENCH_WRITES_FILE")
    if path:
        threading.Thread(target=_dump_forever, args=(path,), daemon=True, name="write-counter").start()
    from daphne.cli import CommandLineInterface

    sys.argv = ["daphne", *sys.argv[1:]]
    CommandLineInterface.entrypoint()


if __name__ == "__main__":
    main()
