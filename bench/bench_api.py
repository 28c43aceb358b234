"""Overhead of /v1/chat/completions: time to first token and total time via chatweb vs direct to the upstream.

Run: `.venv/bin/python bench/bench_api.py [--requests 200] [--concurrency 8] [--tokens 64]`

It starts the dev upstream and a Daphne, each in a process of its own as a provider and chatweb would be (the
upstream used to run in a thread of this process, where the client's own work delayed it), on a throwaway SQLite
database (migrated first), registers the upstream as a provider with a priced model and creates a key, then
streams the same request with the official `openai` client both ways, alternating, so both see the same machine.
Goal: overhead <= 5 ms median and <= 20 ms p99.
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # runnable as `python bench/bench_api.py` from anywhere

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


def migrate(env: dict[str, str]) -> None:
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT, env=env, check=True
    )


def setup_data(upstream_v1: str) -> str:
    """A user, the upstream as a provider with one priced model, and a key (raw, returned)."""
    import django

    django.setup()
    from decimal import Decimal

    from conversations.accounts.apikeys import api_key_create
    from conversations.models import Model, Provider, User

    user = User.objects.create_user(username="bench", password=secrets.token_urlsafe(12))
    provider = Provider.objects.create(name="bench", base_url=upstream_v1)
    Model.objects.create(
        provider=provider,
        upstream_id="dev-chat",
        input_price=Decimal("0.5"),
        output_price=Decimal("1.5"),
        context_length=32768,
        max_output_tokens=1024,
    )
    return api_key_create(user=user, name="bench")[1]


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


def sequential(direct_client, via_client, n: int, tokens: int):
    direct, via = [], []
    for _ in range(n):  # alternate, so that a busy moment of the machine hurts both alike
        direct.append(one(direct_client, "dev-chat", tokens))
        via.append(one(via_client, "bench/dev-chat", tokens))
    return direct, via


def concurrent(make_direct, make_via, n: int, workers: int, tokens: int):
    results: dict[str, list[tuple[float, float]]] = {"direct": [], "via": []}
    lock = threading.Lock()

    def worker(kind: str, count: int) -> None:
        client = make_direct() if kind == "direct" else make_via()
        model = "dev-chat" if kind == "direct" else "bench/dev-chat"
        for _ in range(count):
            r = one(client, model, tokens)
            with lock:
                results[kind].append(r)

    per_worker = max(1, n // workers)
    for kind in ("direct", "via"):
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(worker, [kind] * workers, [per_worker] * workers))
    return results["direct"], results["via"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200, help="sequential requests each way")
    parser.add_argument("--concurrency", type=int, default=8, help="parallel clients in the concurrent round")
    parser.add_argument(
        "--concurrent-requests", type=int, default=160, help="requests each way, concurrent round"
    )
    parser.add_argument("--tokens", type=int, default=64, help="reply length in tokens")
    parser.add_argument("--delay", type=float, default=0.0, help="dev upstream seconds between tokens")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="chatweb-bench-api-"))
    env = environment(workdir)
    os.environ.update(
        {k: env[k] for k in ("DATABASE_URL", "DEBUG", "SECRET_KEY", "CHATWEB_ENCRYPTION_KEYS", "LOG_LEVEL")}
    )
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatweb.settings")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"

    import openai

    migrate(env)
    upstream_port = free_port()
    upstream = Service(
        [sys.executable, "-m", "conversations.devupstream", "--port", str(upstream_port), "--log-level", "warning",
         "--options", f"delay={args.delay},tokens={args.tokens}"], env, workdir / "upstream.log", upstream_port)
    upstream_v1 = f"{upstream.url}/v1"
    try:
        raw = setup_data(upstream_v1)
        port = free_port()
        daphne = Service(daphne_argv(port), env, workdir / "daphne.log", port, timeout=30)
        try:

            def make_direct():
                return openai.OpenAI(base_url=upstream_v1, api_key="unused", max_retries=0)

            def make_via():
                return openai.OpenAI(base_url=f"{daphne.url}/v1", api_key=raw, max_retries=0)

            direct_client, via_client = make_direct(), make_via()
            print(
                f"chatweb {daphne.url} (Daphne, DEBUG off, SQLite) -> dev upstream {upstream_v1}; "
                f"{args.tokens} tokens a reply, {args.delay * 1000:g} ms between tokens"
            )
            sequential(direct_client, via_client, 20, args.tokens)  # warm-up: imports, tiktoken, connections
            seq = report("sequential", *sequential(direct_client, via_client, args.requests, args.tokens))
            conc = report(
                f"concurrent ({args.concurrency} clients)",
                *concurrent(make_direct, make_via, args.concurrent_requests, args.concurrency, args.tokens),
            )
        finally:
            daphne.stop()
    finally:
        upstream.stop()
    ok = seq["time to 1st token median"] <= 5 and seq["total time median"] <= 5
    ok = ok and seq["time to 1st token p99"] <= 20 and seq["total time p99"] <= 20
    print(f"\ngoal (sequential): overhead <= 5 ms median, <= 20 ms p99: {'met' if ok else 'NOT met'}")
    del conc
    return 0


if __name__ == "__main__":
    sys.exit(main())
