"""Several Daphne processes of chatweb behind nginx on PostgreSQL and a Redis of their own, for `bench burst
--processes`, with the counters that say what limits a process: Redis commands (`INFO commandstats`), the
database's transactions (`pg_stat_database`), and the CPU time of every part."""

from __future__ import annotations

import subprocess
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from bench.bench_ws import cpu_seconds
from bench.nginx import Nginx
from bench.process import Service, daphne_argv, free_port

# The channel layer's round trips are counted on this Redis alone: a server of the benchmark's own, not one that
# other programs share.
REDIS_ARGS = ["--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--protected-mode", "yes"]
# One statement, one transaction: the database's counters and the pids of the backends serving chatweb.
READING = """SELECT xact_commit, xact_rollback,
                    ARRAY(SELECT pid FROM pg_stat_activity WHERE datname = d.datname AND pid <> pg_backend_pid())
             FROM pg_stat_database d WHERE datname = current_database()"""
POOL_MAX = 10  # psycopg connections per process: 4 processes stay well inside PostgreSQL's 100


def recreate_database(url: str) -> None:
    """Drop the database of `url` (its sessions ended) and create it empty: each run starts from the same state."""
    import psycopg

    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    if not name.replace("_", "").isalnum():
        raise ValueError(f"database name {name!r}: letters, digits and _ only")
    admin = urlunsplit(parts._replace(path="/postgres"))
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


class Cluster:
    """`start(n)`: n Daphne processes and nginx in front of them; Redis and the database outlive restarts."""

    def __init__(self, workdir: Path, env: dict[str, str], database_url: str, root: Path) -> None:
        self.workdir, self.root, self.database_url = workdir, root, database_url
        recreate_database(database_url)
        port = free_port()
        self.redis = Service(["redis-server", "--port", str(port), "--dir", str(workdir), *REDIS_ARGS],
                             env, workdir / "redis.log", port)
        self.redis_url = f"redis://127.0.0.1:{port}/0"
        self.env = {**env, "DATABASE_URL": database_url, "REDIS_URL": self.redis_url,
                    "CHATWEB_CHANNEL_PREFIX": f"bench-{uuid.uuid4().hex[:8]}",
                    "CHATWEB_TRUSTED_PROXIES": "1",  # behind nginx, as in production
                    "CHATWEB_DB_POOL_MAX": str(POOL_MAX)}
        self.daphnes: list[Service] = []
        self.nginx: Nginx | None = None

    def start(self, processes: int) -> str:
        """n Daphne processes and nginx in front; returns nginx's base URL."""
        self.stop_servers()
        for i in range(processes):
            port = free_port()
            self.daphnes.append(Service(daphne_argv(port, "bench.serve"), self.env,
                                        self.workdir / f"daphne-{processes}-{i}.log", port, cwd=self.root))
        port = free_port()
        self.nginx = Nginx(self.workdir / f"nginx-{processes}", port, [d.port for d in self.daphnes])
        return f"http://127.0.0.1:{port}"

    def stop_servers(self) -> None:
        if self.nginx is not None:
            self.nginx.stop()
            self.nginx = None
        for daphne in self.daphnes:
            daphne.stop()
        self.daphnes = []

    def stop(self) -> None:
        self.stop_servers()
        self.redis.stop()

    @property
    def daphne_pids(self) -> list[int]:
        return [d.pid for d in self.daphnes]

    def counters(self) -> dict[str, Any]:
        """Redis commands by name and in all, the database's commits and rollbacks, CPU seconds by part."""
        import psycopg

        port = urlsplit(self.redis_url).port
        stats = subprocess.run(["redis-cli", "-p", str(port), "info", "commandstats"], capture_output=True,
                               text=True, check=True).stdout
        commands = {}
        for line in stats.splitlines():  # cmdstat_evalsha:calls=12,usec=...
            if line.startswith("cmdstat_"):
                name, _, fields = line.removeprefix("cmdstat_").partition(":")
                commands[name] = int(fields.split(",")[0].removeprefix("calls="))
        commands.pop("info", None)  # these readings
        with psycopg.connect(self.database_url, autocommit=True) as conn:
            commits, rollbacks, backends = conn.execute(READING).fetchone()
        return {"redis_commands": commands, "redis_calls": sum(commands.values()),
                "pg_commits": commits, "pg_rollbacks": rollbacks,
                "cpu": {"daphne": sum(_cpu(p) for p in self.daphne_pids),
                        "nginx": sum(_cpu(p) for p in _children_and_self(self.nginx.pid)) if self.nginx else 0.0,
                        "redis": _cpu(self.redis.pid)},
                "pg_backend_cpu": {pid: _cpu(pid) for pid in backends}}


def settle_database_statistics() -> None:
    """PostgreSQL's backends report their transaction counts when idle, up to 10 s late (PGSTAT_IDLE_INTERVAL):
    wait that long before reading them."""
    time.sleep(11)


def difference(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """What happened between two readings of `Cluster.counters()`."""
    names = set(before["redis_commands"]) | set(after["redis_commands"])
    commands = {n: after["redis_commands"].get(n, 0) - before["redis_commands"].get(n, 0) for n in names}
    cpu = {part: after["cpu"][part] - before["cpu"][part] for part in after["cpu"]}
    # Backends that appeared during the burst count from zero; one that ended during it is missed (the pool
    # keeps its connections for minutes).
    cpu["postgres"] = sum(t - before["pg_backend_cpu"].get(pid, 0.0) for pid, t in after["pg_backend_cpu"].items())
    return {"redis_commands": {n: c for n, c in sorted(commands.items(), key=lambda kv: -kv[1]) if c},
            "redis_calls": after["redis_calls"] - before["redis_calls"],
            # less the `before` reading's own transaction, which its backend reported as it disconnected
            "pg_commits": after["pg_commits"] - before["pg_commits"] - 1,
            "pg_rollbacks": after["pg_rollbacks"] - before["pg_rollbacks"], "cpu": cpu}


def _cpu(pid: int) -> float:
    try:
        return cpu_seconds(pid)
    except (FileNotFoundError, ProcessLookupError):
        return 0.0


def _children_and_self(pid: int) -> list[int]:
    """nginx's master and its workers."""
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True, check=False)
    return [pid, *(int(p) for p in out.stdout.split())]

