"""Overhead of /v1/chat/completions: time to first token and total time via chatweb vs direct to the upstream.

Run: `.venv/bin/python bench/bench_api.py [--requests 200] [--concurrency 8] [--tokens 64] [--server-root DIR]`

It starts the dev upstream and a Daphne, each in a process of its own as a provider and chatweb would be (the
upstream used to run in a thread of this process, where the client's own work delayed it), on a throwaway SQLite
database (migrated first), registers the upstream as a provider with a priced model and creates a key, then
streams the same request with the official `openai` client both ways, alternating, so both see the same machine.
`--server-root DIR`: a second chatweb from another source tree (an older commit: its own database, migrated by its
own migrations), against the same upstream, in turn with this one: one client and one upstream for both.
Goal: overhead <= 5 ms median and <= 20 ms p99.
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # runnable as `python bench/bench_api.py` from anywhere

from bench import throwaway  # noqa: E402
from bench.bench_ws import cpu_seconds  # noqa: E402
from bench.process import Service, daphne_argv, free_port  # noqa: E402

MESSAGES = [
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": "How should I structure a caching layer for my Django project?"},
]


def environment(workdir: Path) -> dict[str, str]:
    from cryptography.fernet import Fernet

    return {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{workdir / 'bench.sqlite3'}",
        "DEBUG": "false",  # as in production: no SQL query log, no debug pages
        "SECURE_SSL_REDIRECT": "false",  # plain HTTP on 127.0.0.1, as behind the TLS proxy of production
        "SECRET_KEY": secrets.token_urlsafe(40),
        "CHATWEB_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
        "LOG_LEVEL": "WARNING",
        "PYTHONUNBUFFERED": "1",
    }


def one(client, model: str, tokens: int) -> tuple[float, float]:
    """(time to first token, total time) in seconds for one streamed request."""
    start = time.perf_counter()
    first = None
    stream = client.chat.completions.create(
        model=model, messages=MESSAGES, max_tokens=tokens, stream=True, stream_options={"include_usage": True}
    )
    for chunk in stream:
        if first is None and chunk.choices and chunk.choices[0].delta.content:
            first = time.perf_counter()
    end = time.perf_counter()
    return (first or end) - start, end - start


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def report(label: str, direct: list[tuple[float, float]], via: list[tuple[float, float]]) -> dict[str, float]:
    out = {}
    print(f"\n{label}: {len(via)} requests each way")
    print(
        f"  {'':18} {'direct med':>11} {'chatweb med':>12} {'overhead med':>13}   "
        f"{'direct p99':>10} {'chatweb p99':>11} {'overhead p99':>12}"
    )
    for i, name in enumerate(("time to 1st token", "total time")):
        d = [x[i] * 1000 for x in direct]
        v = [x[i] * 1000 for x in via]
        med = statistics.median(v) - statistics.median(d)
        p99 = percentile(v, 0.99) - percentile(d, 0.99)
        out[f"{name} median"], out[f"{name} p99"] = med, p99
        print(
            f"  {name:18} {statistics.median(d):9.2f}ms {statistics.median(v):10.2f}ms {med:+11.2f}ms   "
            f"{percentile(d, 0.99):8.2f}ms {percentile(v, 0.99):9.2f}ms {p99:+10.2f}ms"
        )
    return out


def sequential(direct_client, servers: dict[str, tuple[object, str]], n: int, tokens: int):
    """`n` requests each way, in turn: straight to the upstream, then through each server."""
    direct: list[tuple[float, float]] = []
    via: dict[str, list[tuple[float, float]]] = {name: [] for name in servers}
    order = list(servers.items())
    for _ in range(n):  # alternate, so that a busy moment of the machine hurts every way alike
        direct.append(one(direct_client, "dev-chat", tokens))
        for name, (client, model) in order:
            via[name].append(one(client, model, tokens))
        order.reverse()  # and no server always answers right after the other
    return direct, via


def concurrent(make_client, ways: dict[str, str], n: int, workers: int, tokens: int):
    """`n` requests each way with `workers` clients at once, one way after the other."""
    results: dict[str, list[tuple[float, float]]] = {way: [] for way in ways}
    lock = threading.Lock()

    def worker(way: str, count: int) -> None:
        client = make_client(way)
        for _ in range(count):
            r = one(client, ways[way], tokens)
            with lock:
                results[way].append(r)

    per_worker = max(1, n // workers)
    for way in ways:
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(worker, [way] * workers, [per_worker] * workers))
    return results


def dev_upstream(env: dict[str, str], workdir: Path, *, delay: float, tokens: int) -> Service:
    """The dev upstream in a process of its own, as a provider would be: `tokens` a reply, `delay` s apart."""
    port = free_port()
    return Service(
        [sys.executable, "-m", "conversations.devupstream", "--port", str(port), "--log-level", "warning",
         "--options", f"delay={delay},tokens={tokens}"], env, workdir / "upstream.log", port)


class Server:
    """chatweb from one source tree: its own throwaway database (that tree's migrations) and Daphne process."""

    def __init__(self, name: str, root: Path, upstream_v1: str, workdir: Path, extra_env: dict[str, str] | None = None,
                 extra_path: tuple[Path, ...] = ()) -> None:
        self.name, self.root = name, root
        env = {**environment(workdir / name), **(extra_env or {})}
        (workdir / name).mkdir()
        path = ([root] if root != ROOT else []) + list(extra_path)
        if path:
            env["PYTHONPATH"] = os.pathsep.join(map(str, path))
        site = throwaway.prepare_in_subprocess(env, root=root, users=1, api_key=True,
                                               providers={"bench": upstream_v1})
        self.model, self.key = site["models"]["bench"], site["api_key"]
        port = free_port()
        self.daphne = Service(daphne_argv(port), env, workdir / name / "daphne.log", port, timeout=30, cwd=root)
        self.v1 = f"{self.daphne.url}/v1"

    def stop(self) -> None:
        self.daphne.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200, help="sequential requests each way")
    parser.add_argument("--concurrency", type=int, default=8, help="parallel clients in the concurrent round")
    parser.add_argument(
        "--concurrent-requests", type=int, default=160, help="requests each way, concurrent round"
    )
    parser.add_argument("--tokens", type=int, default=64, help="reply length in tokens")
    parser.add_argument("--delay", type=float, default=0.0, help="dev upstream seconds between tokens")
    parser.add_argument("--server-root", default="",
                        help="also serve chatweb from this source tree (an older commit), in turn with this one")
    args = parser.parse_args()

    import openai

    workdir = Path(tempfile.mkdtemp(prefix="chatweb-bench-api-"))
    env = environment(workdir)
    upstream = dev_upstream(env, workdir, delay=args.delay, tokens=args.tokens)
    upstream_v1 = f"{upstream.url}/v1"
    servers: list[Server] = []
    try:
        servers.append(Server("chatweb", ROOT, upstream_v1, workdir))
        if args.server_root:
            servers.append(Server("other", Path(args.server_root).resolve(), upstream_v1, workdir))
        ways = {"direct": "dev-chat", **{s.name: s.model for s in servers}}
        by_name = {s.name: s for s in servers}

        def make_client(way: str):
            if way == "direct":
                return openai.OpenAI(base_url=upstream_v1, api_key="unused", max_retries=0)
            return openai.OpenAI(base_url=by_name[way].v1, api_key=by_name[way].key, max_retries=0)

        direct_client = make_client("direct")
        clients = {s.name: (make_client(s.name), s.model) for s in servers}
        for s in servers:
            print(f"{s.name}: {s.daphne.url} from {s.root} (Daphne, DEBUG off, SQLite) -> dev upstream {upstream_v1}")
        print(f"{args.tokens} tokens a reply, {args.delay * 1000:g} ms between tokens")
        sequential(direct_client, clients, 20, args.tokens)  # warm-up: imports, tiktoken, connections
        cpu = {s.name: cpu_seconds(s.daphne.pid) for s in servers}
        direct, via = sequential(direct_client, clients, args.requests, args.tokens)
        seq = {name: report(f"sequential, {name}", direct, results) for name, results in via.items()}
        for s in servers:  # each server is idle while the others answer: its CPU is its own requests'
            print(f"  {s.name}: server CPU {(cpu_seconds(s.daphne.pid) - cpu[s.name]) / args.requests * 1000:.2f} ms"
                  " a request")
            cpu[s.name] = cpu_seconds(s.daphne.pid)
        conc = concurrent(make_client, ways, args.concurrent_requests, args.concurrency, args.tokens)
        for s in servers:
            report(f"concurrent ({args.concurrency} clients), {s.name}", conc["direct"], conc[s.name])
            print(f"  server CPU {(cpu_seconds(s.daphne.pid) - cpu[s.name]) / len(conc[s.name]) * 1000:.2f} ms"
                  " a request")
    finally:
        for s in servers:
            s.stop()
        upstream.stop()
    if args.server_root:
        mine, other = seq["chatweb"]["time to 1st token median"], seq["other"]["time to 1st token median"]
        print(f"\nadded to the first token (sequential median): this tree {mine:+.2f} ms, the other {other:+.2f} ms"
              f" ({(mine - other) / abs(other) * 100 if other else 0:+.0f} %)")
    main_seq = seq["chatweb"]
    ok = main_seq["time to 1st token median"] <= 5 and main_seq["total time median"] <= 5
    ok = ok and main_seq["time to 1st token p99"] <= 20 and main_seq["total time p99"] <= 20
    print(f"\ngoal (sequential): overhead <= 5 ms median, <= 20 ms p99: {'met' if ok else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
