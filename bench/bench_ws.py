"""Chat websocket under load: time to first token and completion time through chatweb vs straight to the upstream.

    python -m bench ws [--streams 100,250,500,1000] [--tokens 600] [--delay 0.05] [--ramp 10] [--workers 3]
                       [--seq 200] [--idle 1000] [--profile] [--no-docs]

Starts the dev upstream (its own process, a fixed token rate) and one Daphne process (chatweb, DEBUG off) on a
throwaway SQLite database in a temp dir (migrated, with one user and session per stream), then drives both with
the same client pattern from separate load-generator processes (bench/ws_load.py): N clients started over
--ramp seconds, each streaming one reply to its end. Straight to the upstream they speak HTTP/SSE; through
chatweb, the chat protocol (docs/protocol.md) over a websocket opened beforehand. Every reply is checked whole:
through chatweb its deltas numbered 1..n with no gap, and its text identical (SHA-1) to the upstream's own
answer to that prompt.

Figures: added time to first token (sequential, one request at a time, and at each concurrency), completion
time, wall time against the ideal (the last start + the reply's own streaming time), database writes per reply
(counted inside the server, bench/serve.py), server CPU and memory, and memory per open idle websocket.
Writes bench/results/ws-<time>.json and .md, and (unless --no-docs) the table and plots in docs/benchmarks.md
and docs/benchmarks/*.svg. Ratios are against the baseline of the same run; this is no timed unit test.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # runnable as `python bench/bench_ws.py` from anywhere

from bench import svgplot, throwaway  # noqa: E402
from bench.process import Service, daphne_argv, free_port  # noqa: E402

RESULTS = ROOT / "bench" / "results"
DOC = ROOT / "docs" / "benchmarks.md"
DOC_IMAGES = ROOT / "docs" / "benchmarks"
BEGIN, END = "<!-- bench-ws:begin (written by `python -m bench ws`) -->", "<!-- bench-ws:end -->"
SEQ_SWITCHES = "tokens=12,delay=0.002"  # the sequential round measures the first token: short quick replies
PROMPTS = [f"Question {k}: how would you size the connection pool of a chat service with {10 * k} users?"
           for k in range(64)]


# --- processes ----------------------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def environment(workdir: Path) -> dict[str, str]:
    from cryptography.fernet import Fernet

    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{workdir / 'bench.sqlite3'}",
        "DEBUG": "false",  # as in production: no query log, no debug pages
        "SECURE_SSL_REDIRECT": "false",  # plain HTTP on 127.0.0.1, as behind the TLS proxy of production
        "SECRET_KEY": secrets.token_urlsafe(40),
        "CHATWEB_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
        "LOG_LEVEL": "WARNING",
        "PYTHONUNBUFFERED": "1",
        "DJANGO_SETTINGS_MODULE": "chatweb.settings",
    }
    for name in ("REDIS_URL", "DJANGO_ALLOW_ASYNC_UNSAFE"):  # one process, in-memory channel layer
        env.pop(name, None)
    return env


def setup_data(env: dict[str, str], upstream_v1: str, seq_upstream_v1: str, users: int) -> dict[str, Any]:
    """Users with a session each (the sign-in form is not what is measured), the upstream as a provider with one
    priced model, and again with short quick replies for the sequential round (bench/throwaway.py)."""
    site = throwaway.prepare_in_subprocess(env, users=users, providers={"bench": upstream_v1,
                                                                        "benchseq": seq_upstream_v1})
    return {"model": site["models"]["bench"], "seq_model": site["models"]["benchseq"], "cookies": site["cookies"]}


# --- load generators ----------------------------------------------------------------------------------------


def run_workers(specs: list[dict[str, Any]], workdir: Path, limit: float) -> list[Any]:
    """Start one ws_load process per spec, wait until every one is ready, start them together, collect."""
    procs = []
    for i, spec in enumerate(specs):
        err = open(workdir / f"load-{i}.log", "ab")  # noqa: SIM115 - closed below
        proc = subprocess.Popen([sys.executable, "-m", "bench.ws_load"], cwd=ROOT, stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=err, text=True)
        proc.stdin.write(json.dumps(spec) + "\n")
        proc.stdin.flush()
        procs.append((proc, err))
    watchdog = threading.Timer(limit, lambda: [p.kill() for p, _ in procs])
    watchdog.start()
    try:
        for proc, _ in procs:
            line = proc.stdout.readline().strip()
            if line != "ready":
                raise RuntimeError(f"load generator not ready ({line!r}); see {workdir}/load-*.log")
        t0 = time.time() + 0.3
        for proc, _ in procs:
            proc.stdin.write(f"go {t0}\n")
            proc.stdin.flush()
        results = []
        for proc, _ in procs:
            line = proc.stdout.readline()
            if not line:
                raise RuntimeError(f"load generator died; see {workdir}/load-*.log")
            results.append(json.loads(line)["result"])
        return results
    finally:
        watchdog.cancel()
        for proc, err in procs:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
            err.close()


def split(items: list[Any], parts: int) -> list[list[Any]]:
    return [items[i::parts] for i in range(parts) if items[i::parts]]


# --- statistics -----------------------------------------------------------------------------------------------


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def summarize(results: list[dict[str, Any]], expected: list[str | None]) -> dict[str, Any]:
    """Figures of one run; `expected`: the SHA-1 of each reply's text as the upstream itself answers it."""
    ok = [r for r in results if r["ok"]]
    whole = [r for r, sha in zip(results, expected, strict=True) if r["ok"] and r["sha"] == sha]
    admitted = [r["admitted"] * 1000 for r in ok if r.get("admitted") is not None]
    # after admission: from `chat.started` to the first delta (the relay's own share of the first token)
    relay = [(r["ttft"] - r["admitted"]) * 1000 for r in ok if r.get("admitted") is not None and r["ttft"]]
    ttft = [r["ttft"] * 1000 for r in ok if r["ttft"] is not None]
    total = [r["total"] * 1000 for r in ok]
    starts = [r["started"] for r in results if r["started"]]
    ends = [r["ended"] for r in results if r["ended"]]
    errors: dict[str, int] = {}
    for r in results:
        if r["error"]:
            errors[r["error"][:80]] = errors.get(r["error"][:80], 0) + 1
    return {
        "requests": len(results), "complete": len(ok), "whole": len(whole),
        "admitted_p50_ms": pct(admitted, 0.5), "admitted_p99_ms": pct(admitted, 0.99),
        "relay_p50_ms": pct(relay, 0.5), "relay_p99_ms": pct(relay, 0.99),
        "ttft_p50_ms": pct(ttft, 0.5), "ttft_p99_ms": pct(ttft, 0.99), "ttft_max_ms": max(ttft, default=0),
        "total_p50_ms": pct(total, 0.5), "total_p99_ms": pct(total, 0.99), "total_max_ms": max(total, default=0),
        "wall_s": (max(ends) - min(starts)) if starts and ends else float("nan"),
        "deltas_per_reply": statistics.mean([r["deltas"] for r in ok]) if ok else 0,
        "errors": dict(sorted(errors.items(), key=lambda kv: -kv[1])[:5]),
    }


def read_writes(path: Path) -> dict[str, int]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


# --- the run ------------------------------------------------------------------------------------------------


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.workdir = Path(tempfile.mkdtemp(prefix="chatweb-bench-ws-"))
        self.env = environment(self.workdir)
        self.writes_file = self.workdir / "writes.json"
        self.expected: dict[str, str] = {}  # prompt -> SHA-1 of the upstream's own answer
        self.services: list[Service] = []

    # one reply streams for (tokens - 1) x delay after its first token
    def stream_seconds(self) -> float:
        return (self.args.tokens - 1) * self.args.delay

    def start(self) -> None:
        a = self.args
        port = free_port()
        self.upstream = Service(
            [sys.executable, "-m", "conversations.devupstream", "--port", str(port), "--log-level", "warning",
             "--options", f"delay={a.delay},tokens={a.tokens}"], self.env, self.workdir / "upstream.log", port)
        self.services.append(self.upstream)
        self.upstream_v1 = f"http://127.0.0.1:{port}/v1"
        users = max(*a.streams, a.idle, 1)
        self.seq_upstream_v1 = f"http://127.0.0.1:{port}/s/{SEQ_SWITCHES}/v1"
        self.data = setup_data(self.env, self.upstream_v1, self.seq_upstream_v1, users)
        port = free_port()
        env = {**self.env, "BENCH_WRITES_FILE": str(self.writes_file)}
        self.daphne = Service(daphne_argv(port, "bench.serve"), env, self.workdir / "daphne.log", port)
        self.services.append(self.daphne)
        self.ws_url = f"ws://127.0.0.1:{port}/ws/chat/"
        self.origin = f"http://127.0.0.1:{port}"

    def stop(self) -> None:
        for service in reversed(self.services):
            service.stop()

    def spec(self, mode: str, clients: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
        return {"mode": mode, "clients": clients, "ws_url": self.ws_url, "origin": self.origin,
                "model": self.data["model"], "upstream_v1": self.upstream_v1, "upstream_model": "dev-chat",
                "timeout": self.stream_seconds() * 4 + self.args.ramp + 60, **extra}

    def clients(self, n: int) -> list[dict[str, Any]]:
        ramp = self.args.ramp
        return [{"cookie": self.data["cookies"][i], "prompt": PROMPTS[i % len(PROMPTS)], "request_id": f"r{i}",
                 "offset": ramp * i / n} for i in range(n)]

    def level(self, mode: str, n: int, profile: bool = False) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        clients = self.clients(n)
        specs = [self.spec(mode, part) for part in split(clients, min(self.args.workers, n))]
        limit = self.stream_seconds() * 6 + self.args.ramp + 180
        profiler = self.start_profiler() if profile else None
        try:
            parts = run_workers(specs, self.workdir, limit)
        finally:
            if profiler is not None:
                profiler.send_signal(signal.SIGINT)  # py-spy writes its output on Ctrl-C
                profiler.wait(30)
        by_id = {}
        for spec, part in zip(specs, parts, strict=True):
            for client, result in zip(spec["clients"], part, strict=True):
                by_id[client["request_id"]] = result
        return clients, [by_id[c["request_id"]] for c in clients]

    def start_profiler(self) -> subprocess.Popen | None:
        py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
        if not Path(py_spy).exists():
            print("  (py-spy not installed: no profile; `make bench` installs it)")
            return None
        self.profile_path = RESULTS / f"ws-profile-{self.stamp}.txt"
        return subprocess.Popen([py_spy, "record", "--pid", str(self.daphne.pid), "--format", "raw", "--rate", "200",
                                 "--nonblocking", "--output", str(self.profile_path)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def warm_up(self) -> None:
        """Every prompt once straight to the upstream (its answer is the reference; the upstream plans it once),
        then a few requests both ways (imports, tokenizer, connections)."""
        clients = [{"prompt": p, "request_id": f"w{i}", "offset": 0.005 * i} for i, p in enumerate(PROMPTS)]
        (results,) = run_workers([self.spec("sse", clients)], self.workdir, 120)
        for client, result in zip(clients, results, strict=True):
            if not result["ok"]:
                raise RuntimeError(f"the upstream failed during warm-up: {result['error']}")
            self.expected[client["prompt"]] = result["sha"]
        run_workers([self.seq_spec(10)], self.workdir, 120)

    def seq_spec(self, count: int) -> dict[str, Any]:
        return self.spec("seq", self.clients(1), count=count, prompts=PROMPTS, model=self.data["seq_model"],
                         upstream_v1=self.seq_upstream_v1, timeout=30)

    def sequential(self) -> dict[str, Any]:
        (out,) = run_workers([self.seq_spec(self.args.seq)], self.workdir, self.args.seq * 2 + 60)
        reference = [d["sha"] if d["ok"] else None for d in out["direct"]]
        direct, via = summarize(out["direct"], reference), summarize(out["chatweb"], reference)
        pairs = [(c["ttft"], d["ttft"]) for c, d in zip(out["chatweb"], out["direct"], strict=True)
                 if c["ttft"] is not None and d["ttft"] is not None]
        added = [(c - d) * 1000 for c, d in pairs]
        return {"direct": direct, "chatweb": via, "added_ttft_p50_ms": via["ttft_p50_ms"] - direct["ttft_p50_ms"],
                "added_ttft_p99_ms": via["ttft_p99_ms"] - direct["ttft_p99_ms"],
                "paired_added_p50_ms": pct(added, 0.5), "paired_added_p99_ms": pct(added, 0.99)}

    def idle_memory(self) -> dict[str, Any]:
        n = self.args.idle
        before = rss_mb(self.daphne.pid)
        clients = [{"cookie": c} for c in self.data["cookies"][:n]]
        specs = [self.spec("idle", part) for part in split(clients, self.args.workers)]
        procs = []
        for spec in specs:
            proc = subprocess.Popen([sys.executable, "-m", "bench.ws_load"], cwd=ROOT, stdin=subprocess.PIPE,
                                    stdout=subprocess.PIPE, text=True)
            proc.stdin.write(json.dumps(spec) + "\n")
            proc.stdin.flush()
            procs.append(proc)
        try:
            for proc in procs:
                if proc.stdout.readline().strip() != "ready":
                    raise RuntimeError("idle sockets could not be opened")
            time.sleep(2)
            after = rss_mb(self.daphne.pid)
        finally:
            for proc in procs:
                proc.stdin.write("stop\n")
                proc.stdin.flush()
            for proc in procs:
                proc.communicate(timeout=60)
        time.sleep(1)
        return {"sockets": n, "rss_before_mb": before, "rss_after_mb": after,
                "kib_per_socket": (after - before) * 1024 / n}

    def run(self) -> dict[str, Any]:
        a = self.args
        self.stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        RESULTS.mkdir(parents=True, exist_ok=True)
        self.start()
        print(f"dev upstream {self.upstream_v1} ({a.tokens} tokens a reply, {a.delay * 1000:g} ms apart); "
              f"chatweb {self.origin} (one Daphne process, DEBUG off, SQLite in {self.workdir}); "
              f"{a.workers} load-generator processes; {os.cpu_count()} cores")
        self.warm_up()
        out: dict[str, Any] = {"when": self.stamp, "args": vars(a), "cores": os.cpu_count(), "levels": []}
        if a.seq:
            out["sequential"] = seq = self.sequential()
            print(f"sequential, {a.seq} each way: TTFT direct {seq['direct']['ttft_p50_ms']:.1f} ms median / "
                  f"{seq['direct']['ttft_p99_ms']:.1f} p99, chatweb {seq['chatweb']['ttft_p50_ms']:.1f} / "
                  f"{seq['chatweb']['ttft_p99_ms']:.1f}; added {seq['added_ttft_p50_ms']:+.1f} ms median, "
                  f"{seq['added_ttft_p99_ms']:+.1f} ms p99")
        if a.idle:
            out["idle"] = idle = self.idle_memory()
            print(f"idle: {idle['sockets']} open websockets, RSS {idle['rss_before_mb']:.0f} -> "
                  f"{idle['rss_after_mb']:.0f} MB: {idle['kib_per_socket']:.1f} KiB per socket")
        for n in a.streams:
            row: dict[str, Any] = {"streams": n, "ideal_wall_s": a.ramp * (n - 1) / n + self.stream_seconds(),
                                   "ideal_total_ms": self.stream_seconds() * 1000}
            expected = [self.expected[c["prompt"]] for c in self.clients(n)]
            up_cpu = cpu_seconds(self.upstream.pid)
            _, results = self.level("sse", n)
            row["upstream_cpu_direct_s"] = cpu_seconds(self.upstream.pid) - up_cpu
            row["direct"] = summarize(results, expected)
            time.sleep(1)
            writes0, cpu0, up_cpu = read_writes(self.writes_file), cpu_seconds(self.daphne.pid), cpu_seconds(
                self.upstream.pid)
            _, results = self.level("ws", n, profile=a.profile and n == max(a.streams))
            time.sleep(0.5)  # the last counters reach the file
            writes1 = read_writes(self.writes_file)
            row["server_cpu_s"] = cpu_seconds(self.daphne.pid) - cpu0
            row["upstream_cpu_s"] = cpu_seconds(self.upstream.pid) - up_cpu
            row["server_rss_mb"] = rss_mb(self.daphne.pid)
            row["chatweb"] = via = summarize(results, expected)
            row["chatweb_failed"] = [{"request_id": c["request_id"], "offset": c["offset"], **r}
                                     for c, r, sha in zip(self.clients(n), results, expected, strict=True)
                                     if not (r["ok"] and r["sha"] == sha)][:200]
            delta = {k: writes1.get(k, 0) - writes0.get(k, 0) for k in set(writes0) | set(writes1)}
            done = max(via["complete"], 1)
            reply_seconds = sum(r["total"] for r in results if r["ok"]) or 1
            row["writes"] = {
                "other_per_reply": delta.get("other_statements", 0) / done,
                "checkpoint_statements_per_second": delta.get("checkpoint_statements", 0) / max(via["wall_s"], 1e-9),
                "checkpoint_rows_per_reply_second": delta.get("checkpoint_rows", 0) / reply_seconds,
                "raw": delta,
            }
            row["added_ttft_p50_ms"] = via["ttft_p50_ms"] - row["direct"]["ttft_p50_ms"]
            row["added_ttft_p99_ms"] = via["ttft_p99_ms"] - row["direct"]["ttft_p99_ms"]
            row["wall_ratio"] = via["wall_s"] / row["ideal_wall_s"]
            row["direct_wall_ratio"] = row["direct"]["wall_s"] / row["ideal_wall_s"]
            out["levels"].append(row)
            print(level_line(row))
            time.sleep(1)
        if a.profile and getattr(self, "profile_path", None) and self.profile_path.exists():
            out["profile"] = {"file": str(self.profile_path.relative_to(ROOT)), **profile_summary(self.profile_path)}
        return out


def level_line(row: dict[str, Any]) -> str:
    d, c = row["direct"], row["chatweb"]
    return (f"{row['streams']:>5} streams: complete+whole {c['whole']}/{row['streams']} (direct {d['whole']}); "
            f"TTFT p50 {d['ttft_p50_ms']:.0f} -> {c['ttft_p50_ms']:.0f} ms, p99 {d['ttft_p99_ms']:.0f} -> "
            f"{c['ttft_p99_ms']:.0f} ms; completion p50 {d['total_p50_ms'] / 1000:.2f} -> "
            f"{c['total_p50_ms'] / 1000:.2f} s; wall {c['wall_s']:.2f} s = {row['wall_ratio']:.2f}x ideal "
            f"(direct {row['direct_wall_ratio']:.2f}x); writes/reply {row['writes']['other_per_reply']:.1f} + "
            f"{row['writes']['checkpoint_statements_per_second']:.1f} checkpoint statements/s; server CPU "
            f"{row['server_cpu_s']:.1f} s{'; errors ' + json.dumps(c['errors']) if c['errors'] else ''}")


def profile_summary(path: Path, top: int = 25) -> dict[str, Any]:
    """py-spy's collapsed stacks -> the functions with the most samples on top of the stack (self) and anywhere
    in it (inclusive), as shares of all samples."""
    own: dict[str, int] = {}
    inclusive: dict[str, int] = {}
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = [f.split(" (")[0] + " (" + f.split(" (")[1].split(":")[0].split("/")[-1] + ")" if " (" in f else f
                  for f in stack.split(";")]
        own[frames[-1]] = own.get(frames[-1], 0) + n
        for frame in set(frames):
            inclusive[frame] = inclusive.get(frame, 0) + n

    def share(d: dict[str, int]) -> list[tuple[str, float]]:
        return [(k, v / total) for k, v in sorted(d.items(), key=lambda kv: -kv[1])[:top]]

    return {"samples": total, "self": share(own), "inclusive": share(inclusive)}


# --- output ---------------------------------------------------------------------------------------------------


def markdown(out: dict[str, Any], command: str) -> str:
    a = out["args"]
    lines = [
        f"Run {out['when']} on {out['cores']} cores: `{command}`. Dev upstream: {a['tokens']} tokens a reply, "
        f"{a['delay'] * 1000:g} ms apart ({(a['tokens'] - 1) * a['delay']:.2f} s of streaming); clients started "
        f"over {a['ramp']:g} s from {a['workers']} load-generator processes; one Daphne process, SQLite.",
        "",
    ]
    if "sequential" in out:
        s = out["sequential"]
        lines += [
            f"**Time to first token, one request at a time** ({a['seq']} each way, alternating):",
            "",
            "| | straight to upstream | through chatweb | added by chatweb | goal |",
            "| --- | ---: | ---: | ---: | --- |",
            f"| median | {s['direct']['ttft_p50_ms']:.1f} ms | {s['chatweb']['ttft_p50_ms']:.1f} ms | "
            f"{s['added_ttft_p50_ms']:+.1f} ms | <= 5 ms |",
            f"| p99 | {s['direct']['ttft_p99_ms']:.1f} ms | {s['chatweb']['ttft_p99_ms']:.1f} ms | "
            f"{s['added_ttft_p99_ms']:+.1f} ms | <= 20 ms |",
            "",
        ]
    lines += [
        "**Concurrent streams** (TTFT and completion time per reply; wall: first send to last `chat.done`):",
        "",
        "| streams | complete & whole | TTFT p50 direct → chatweb | TTFT p99 direct → chatweb | completion p50 "
        "direct → chatweb | completion p99 direct → chatweb | wall / ideal (direct) | writes per reply + "
        "checkpoint statements/s | server CPU | server RSS |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in out["levels"]:
        d, c = r["direct"], r["chatweb"]
        lines.append(
            f"| {r['streams']:,} | {c['whole']:,} / {r['streams']:,} | {d['ttft_p50_ms']:.0f} → "
            f"{c['ttft_p50_ms']:.0f} ms | {d['ttft_p99_ms']:.0f} → {c['ttft_p99_ms']:.0f} ms | "
            f"{d['total_p50_ms'] / 1000:.2f} → {c['total_p50_ms'] / 1000:.2f} s | {d['total_p99_ms'] / 1000:.2f} → "
            f"{c['total_p99_ms'] / 1000:.2f} s | {r['wall_ratio']:.2f}x ({r['direct_wall_ratio']:.2f}x) | "
            f"{r['writes']['other_per_reply']:.1f} + {r['writes']['checkpoint_statements_per_second']:.1f}/s | "
            f"{r['server_cpu_s']:.1f} s | {r['server_rss_mb']:.0f} MB |"
        )
    if "idle" in out:
        i = out["idle"]
        lines += ["", f"**Memory per open idle websocket**: {i['kib_per_socket']:.0f} KiB ({i['sockets']:,} sockets: "
                      f"server RSS {i['rss_before_mb']:.0f} → {i['rss_after_mb']:.0f} MB)."]
    if "profile" in out:
        p = out["profile"]
        lines += ["", f"**Profile of the server** at {max(a['streams']):,} streams (py-spy, {p['samples']:,} "
                      f"samples, `{p['file']}`), most samples on top of the stack:", "",
                  "| function | share |", "| --- | ---: |"]
        lines += [f"| `{name}` | {share:.1%} |" for name, share in p["self"][:12]]
    return "\n".join(lines) + "\n"


def plots(out: dict[str, Any]) -> dict[str, str]:
    levels = out["levels"]
    xs = [r["streams"] for r in levels]
    ttft = svgplot.line_chart(
        "Time to first token", xs, "concurrent streams", "ms",
        {"direct p50": [r["direct"]["ttft_p50_ms"] for r in levels],
         "direct p99": [r["direct"]["ttft_p99_ms"] for r in levels],
         "chatweb p50": [r["chatweb"]["ttft_p50_ms"] for r in levels],
         "chatweb p99": [r["chatweb"]["ttft_p99_ms"] for r in levels]})
    total = svgplot.line_chart(
        "Completion time of a reply", xs, "concurrent streams", "s",
        {"ideal": [r["ideal_total_ms"] / 1000 for r in levels],
         "direct p50": [r["direct"]["total_p50_ms"] / 1000 for r in levels],
         "direct p99": [r["direct"]["total_p99_ms"] / 1000 for r in levels],
         "chatweb p50": [r["chatweb"]["total_p50_ms"] / 1000 for r in levels],
         "chatweb p99": [r["chatweb"]["total_p99_ms"] / 1000 for r in levels]})
    return {"ws-ttft.svg": ttft, "ws-completion.svg": total}


def write_docs(table: str, images: dict[str, str]) -> None:
    DOC_IMAGES.mkdir(parents=True, exist_ok=True)
    for name, svg in images.items():
        (DOC_IMAGES / name).write_text(svg)
    block = (f"{BEGIN}\n{table}\n" + " ".join(f"![{n}](benchmarks/{n})" for n in images) + f"\n{END}")
    text = DOC.read_text() if DOC.exists() else f"# Benchmarks\n\n{BEGIN}\n{END}\n"
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        text = head + block + rest.split(END, 1)[1]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    DOC.write_text(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench ws", description=__doc__.splitlines()[0])
    parser.add_argument("--streams", default="100,250,500,1000", help="concurrency levels, comma-separated")
    parser.add_argument("--tokens", type=int, default=600, help="reply length in tokens (dev upstream pieces)")
    parser.add_argument("--delay", type=float, default=0.05, help="seconds between two tokens of a reply")
    parser.add_argument("--ramp", type=float, default=10.0, help="clients start evenly over this many seconds")
    parser.add_argument("--workers", type=int, default=3, help="load-generator processes")
    parser.add_argument("--seq", type=int, default=200, help="sequential requests each way (0: skip)")
    parser.add_argument("--idle", type=int, default=1000, help="idle websockets for the memory figure (0: skip)")
    parser.add_argument("--profile", action="store_true", help="py-spy the server at the largest level")
    parser.add_argument("--no-docs", action="store_true", help="leave docs/benchmarks.md and its plots alone")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (logs, database)")
    args = parser.parse_args(argv)
    args.streams = [int(s) for s in str(args.streams).split(",") if s.strip()]
    command = "python -m bench ws " + " ".join(argv if argv is not None else sys.argv[1:])
    bench = Bench(args)
    try:
        out = bench.run()
    finally:
        bench.stop()
        if not args.keep:
            shutil.rmtree(bench.workdir, ignore_errors=True)
        else:
            print(f"kept {bench.workdir}")
    out["command"] = command.strip()
    table = markdown(out, out["command"])
    (RESULTS / f"ws-{out['when']}.json").write_text(json.dumps(out, indent=1, default=str))
    (RESULTS / f"ws-{out['when']}.md").write_text(table)
    if out["levels"] and not args.no_docs:
        write_docs(table, plots(out))
        print(f"wrote {DOC.relative_to(ROOT)} and {DOC_IMAGES.relative_to(ROOT)}/ws-*.svg")
    print(f"wrote bench/results/ws-{out['when']}.json and .md")
    failed = [r["streams"] for r in out["levels"] if r["chatweb"]["whole"] < r["streams"]]
    if failed:
        print(f"NOT every reply complete and whole at {failed} streams")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
