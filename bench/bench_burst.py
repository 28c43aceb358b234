"""Bursts: N new clients at the same moment, through chatweb and straight to the upstream, in the same run.

    python -m bench burst [--sizes 100,500,1000] [--paths ws,v1] [--tokens 100] [--delay 0.01] [--workers 3]
                          [--seq 100] [--profile 500] [--label NAME] [--server-root DIR] [--no-docs]
                          [--processes 1,2,4 [--database-url postgres://...]] [--floor]

Starts the dev upstream (its own process; every reply --tokens tokens, --delay seconds apart) and one Daphne
process (chatweb, DEBUG off, the embedded default: SQLite, in-memory channel layer) on a throwaway database with
one user and session per client and a /v1 key, then, for each N and each path, fires N clients at once from
separate load-generator processes (bench/ws_load.py):

- `ws`: each client opens a new websocket (the handshake and the session's sign-in are timed), sends one
  `chat.send` and reads to `chat.done`;
- `v1`: each client POSTs a streamed `/v1/chat/completions` (the body and headers of the `openai` client's
  streaming request, `Authorization: Bearer`) on a fresh connection and reads to `[DONE]`;

and, right before each, the same N clients straight to the upstream over HTTP/SSE (fresh connections), so each
ratio compares two bursts a few seconds apart. Every reply is checked whole: its text identical (SHA-1) to the
upstream's own answer to the same prompt (and, on the websocket, deltas numbered 1..n with no gap).

Figures: wall time (first start to last end) through chatweb / straight, first token p50/p99 (from the client's
start, connection included), server CPU per request, replies whole. `--seq`: the first token one request at a
time (websocket, alternating with straight requests). `--profile N`: py-spy samples the server through the
bursts of size N (collapsed stacks in bench/results/). `--server-root`: serve chatweb from another source tree
(an older commit, to compare before and after in the same minutes). Writes bench/results/burst-<time>.json and,
unless --no-docs, the block named --label in docs/benchmarks.md.

`--floor`: the websocket bursts through bench/floor.py instead of chatweb (Daphne, the event loop and the upstream
client alone, the same protocol's happy path): the least any server of this stack could take for the same burst.

`--processes 1,2,4`: scale-out instead of the embedded default. The same bursts against 1, then 2, then 4 Daphne
processes behind nginx (a configuration generated from docs/deploy/nginx-chatweb.conf, bench/nginx.py) on
PostgreSQL (--database-url, dropped and created afresh) and a Redis server of the benchmark's own
(bench/cluster.py). Per burst, besides the figures above: requests a second (N / wall) in all and per process,
the CPU of every part (Daphne processes, nginx, Redis, PostgreSQL's backends) per request, Redis commands per
request and per websocket delta (`INFO commandstats`), and the database's commits per request and per second
(`pg_stat_database`, read after the backends have reported them, 11 s after each burst).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import throwaway  # noqa: E402
from bench.bench_ws import (  # noqa: E402
    PROMPTS,
    SEQ_SWITCHES,
    cpu_seconds,
    environment,
    pct,
    profile_summary,
    run_workers,
    split,
    summarize,
)
from bench.cluster import Cluster, difference, settle_database_statistics  # noqa: E402
from bench.process import Service, daphne_argv, free_port  # noqa: E402

RESULTS = ROOT / "bench" / "results"
MODES = {"direct": "sse", "ws": "burst", "v1": "v1"}  # path -> bench/ws_load.py's mode
DOC = ROOT / "docs" / "benchmarks.md"



# One request's lifecycle, by the frames its samples go through (the first phase whose marker a stack holds).
PHASES = [
    ("admission", ("admit (conversations/chat/admission.py", "api_call_admit (", "admit (conversations/api/relay.py")),
    ("finish and ledger", ("reply_finish (", "api_call_record (", "usage_record (")),
    ("sign-in", ("resolve_scope (", "_get_user (", "SessionStore")),
    ("websocket handshake and consumer start", ("WebSocketServerProtocol", "processHandshake", "_connectionMade",
                                                "ChatConsumer.connect", "websocket_connect", "onConnect")),
    ("relaying tokens", ("ReplyRun._stream", "_publish_loop", "ReplyRun._flush", "chat_frame", "_sse (",
                         "stream_batches", "send_response", "doWrite", "writeSomeData")),
    ("checkpoints", ("replies_checkpoint",)),
]


def profile_phases(path: Path) -> list[tuple[str, float]]:
    """Shares of the samples by phase of a request's lifecycle (PHASES), the rest as `other`."""
    counts: dict[str, int] = {}
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        total += int(count)
        phase = next((name for name, markers in PHASES if any(m in stack for m in markers)), "other")
        counts[phase] = counts.get(phase, 0) + int(count)
    return [(name, n / max(total, 1)) for name, n in sorted(counts.items(), key=lambda kv: -kv[1])]


class Burst:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.root = Path(args.server_root).resolve() if args.server_root else ROOT
        self.workdir = Path(tempfile.mkdtemp(prefix="chatweb-bench-burst-"))
        self.env = environment(self.workdir)
        if self.root != ROOT:
            self.env["PYTHONPATH"] = str(self.root)
        self.expected: dict[str, str] = {}
        self.services: list[Service] = []
        self.cluster: Cluster | None = None
        self.processes = 1

    def start(self) -> None:
        a = self.args
        port = free_port()
        self.upstream = Service(
            [sys.executable, "-m", "conversations.devupstream", "--port", str(port), "--log-level", "warning",
             "--options", f"delay={a.delay},tokens={a.tokens}"], self.env, self.workdir / "upstream.log", port)
        self.services.append(self.upstream)
        self.upstream_v1 = f"http://127.0.0.1:{port}/v1"
        self.seq_upstream_v1 = f"http://127.0.0.1:{port}/s/{SEQ_SWITCHES}/v1"
        if a.processes:
            self.cluster = Cluster(self.workdir, self.env, a.database_url, self.root)
        site = throwaway.prepare_in_subprocess(
            self.cluster.env if self.cluster else self.env, root=self.root, users=max(a.sizes), api_key=True,
            providers={"bench": self.upstream_v1, "benchseq": self.seq_upstream_v1})
        self.model, self.seq_model = site["models"]["bench"], site["models"]["benchseq"]
        self.cookies, self.api_key = site["cookies"], site["api_key"]
        if self.cluster:
            return  # the servers start per process count (start_servers)
        port = free_port()
        application = "chatweb.asgi:application"
        if a.floor:  # the same Daphne with the floor's application (bench/floor.py)
            application, self.env["BENCH_FLOOR_UPSTREAM"] = "bench.floor:application", self.upstream_v1
        self.daphne = Service(daphne_argv(port, "bench.serve", application), self.env, self.workdir / "daphne.log",
                              port, cwd=self.root)
        self.services.append(self.daphne)
        self.origin = f"http://127.0.0.1:{port}"

    def start_servers(self, processes: int) -> None:
        """Scale-out: `processes` Daphne processes behind nginx (those of the previous count stopped first)."""
        assert self.cluster is not None
        self.processes = processes
        self.origin = self.cluster.start(processes)

    def server_pids(self) -> list[int]:
        return self.cluster.daphne_pids if self.cluster else [self.daphne.pid]

    def stop(self) -> None:
        if self.cluster:
            self.cluster.stop()
        for service in reversed(self.services):
            service.stop()

    def spec(self, mode: str, clients: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
        return {"mode": mode, "clients": clients, "ws_url": self.origin.replace("http", "ws") + "/ws/chat/",
                "origin": self.origin, "v1_url": f"{self.origin}/v1", "api_key": self.api_key, "model": self.model,
                "upstream_v1": self.upstream_v1, "upstream_model": "dev-chat",
                "timeout": self.args.tokens * self.args.delay * 20 + 120, **extra}

    def clients(self, n: int) -> list[dict[str, Any]]:
        return [{"cookie": self.cookies[i], "prompt": PROMPTS[i % len(PROMPTS)], "request_id": f"b{i}",
                 "offset": 0.0} for i in range(n)]

    def burst(self, path: str, n: int, profile: str | None = None) -> list[dict[str, Any]]:
        mode = MODES[path]
        clients = self.clients(n)
        specs = [self.spec(mode, part) for part in split(clients, min(self.args.workers, n))]
        profiler = self.start_profiler(profile) if profile else None
        try:
            parts = run_workers(specs, self.workdir, self.args.tokens * self.args.delay * 40 + 300)
        finally:
            if profiler is not None:
                profiler.send_signal(signal.SIGINT)  # py-spy writes its output on Ctrl-C
                profiler.wait(30)
        by_id = {c["request_id"]: r for spec, part in zip(specs, parts, strict=True)
                 for c, r in zip(spec["clients"], part, strict=True)}
        self.last_results = [by_id[c["request_id"]] for c in clients]
        return self.last_results

    def start_profiler(self, name: str) -> subprocess.Popen | None:
        py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
        if not Path(py_spy).exists():
            print("  (py-spy not installed: no profile; `uv sync --group bench` installs it)")
            return None
        path = RESULTS / f"burst-profile-{self.stamp}-{name}.txt"
        self.profiles[name] = path
        return subprocess.Popen([py_spy, "record", "--pid", str(self.server_pids()[0]), "--format", "raw",
                                 "--rate", "250", "--nonblocking", "--output", str(path)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def warm_up(self) -> None:
        """Every prompt straight to the upstream (its answers are the reference), then a few of each path."""
        clients = [{"prompt": p, "request_id": f"w{i}", "offset": 0.005 * i} for i, p in enumerate(PROMPTS)]
        (results,) = run_workers([self.spec(MODES["direct"], clients)], self.workdir, 120)
        for client, result in zip(clients, results, strict=True):
            if not result["ok"]:
                raise RuntimeError(f"the upstream failed during warm-up: {result['error']}")
            self.expected[client["prompt"]] = result["sha"]
        for mode in self.args.paths:
            self.burst(mode, 10)

    def sequential(self) -> dict[str, Any]:
        spec = self.spec("seq", self.clients(1), count=self.args.seq, prompts=PROMPTS, model=self.seq_model,
                         upstream_v1=self.seq_upstream_v1, timeout=30)
        (out,) = run_workers([spec], self.workdir, self.args.seq * 2 + 60)
        pairs = [(c["ttft"], d["ttft"]) for c, d in zip(out["chatweb"], out["direct"], strict=True)
                 if c["ttft"] is not None and d["ttft"] is not None]
        return {"requests": len(pairs),
                "direct_p50_ms": pct([d * 1000 for _, d in pairs], 0.5),
                "chatweb_p50_ms": pct([c * 1000 for c, _ in pairs], 0.5),
                "added_p50_ms": pct([(c - d) * 1000 for c, d in pairs], 0.5),
                "added_p99_ms": pct([(c - d) * 1000 for c, d in pairs], 0.99)}

    def row(self, mode: str, n: int) -> dict[str, Any]:
        expected = [self.expected[c["prompt"]] for c in self.clients(n)]
        up0 = cpu_seconds(self.upstream.pid)
        direct = summarize(self.burst("direct", n), expected)
        up_direct = cpu_seconds(self.upstream.pid) - up0
        time.sleep(1)
        counters0 = self.cluster.counters() if self.cluster else None
        cpu0, up0 = sum(map(cpu_seconds, self.server_pids())), cpu_seconds(self.upstream.pid)
        profile = f"{mode}-{n}" if self.args.profile == n else None
        via = summarize(self.burst(mode, n, profile), expected)
        results = self.last_results
        for key in ("opened", "admitted"):  # the websocket's steps to the first token: handshake, chat.started
            values = [r[key] * 1000 for r in results if r.get(key) is not None]
            via[f"{key}_p50_ms"], via[f"{key}_p99_ms"] = pct(values, 0.5), pct(values, 0.99)
        server_cpu = sum(map(cpu_seconds, self.server_pids())) - cpu0
        up_via = cpu_seconds(self.upstream.pid) - up0
        out = {"path": mode, "n": n, "processes": self.processes, "direct": direct, "chatweb": via,
               "wall_ratio": via["wall_s"] / direct["wall_s"],
               "server_cpu_ms_per_request": server_cpu * 1000 / n,
               "upstream_cpu_ms_per_request": {"direct": up_direct * 1000 / n, "chatweb": up_via * 1000 / n}}
        if self.cluster and counters0 is not None:
            settle_database_statistics()
            out["scaleout"] = scaleout_figures(difference(counters0, self.cluster.counters()), results, via, n,
                                               self.processes)
        else:
            time.sleep(1)
        return out

    def run(self) -> dict[str, Any]:
        a = self.args
        self.stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        self.profiles: dict[str, Path] = {}
        RESULTS.mkdir(parents=True, exist_ok=True)
        self.start()
        commit = subprocess.run(["git", "-C", str(self.root), "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, check=False).stdout.strip() or "?"
        served = (f"{'/'.join(map(str, a.processes))} Daphne processes behind nginx, PostgreSQL, Redis"
                  if self.cluster else f"chatweb {self.origin}, one Daphne process, SQLite, in-memory channel layer")
        if a.floor:
            served = f"the floor (bench/floor.py: no sign-in, database, channel layer) {self.origin}, one Daphne"
        print(f"{served} from {self.root.name} ({commit}); dev upstream {a.tokens} tokens a reply, "
              f"{a.delay * 1000:g} ms apart; {a.workers} load-generator processes; {os.cpu_count()} cores",
              flush=True)
        out: dict[str, Any] = {"when": self.stamp, "args": vars(a), "cores": os.cpu_count(), "rows": [],
                               "label": a.label}
        if self.cluster:
            for processes in a.processes:
                self.start_servers(processes)
                print(f"{processes} Daphne process(es) behind nginx {self.origin}", flush=True)
                self.warm_up()
                for n in a.sizes:
                    for mode in a.paths:
                        out["rows"].append(row := self.row(mode, n))
                        print(row_line(row), flush=True)
            return out
        self.warm_up()
        if a.seq:
            out["sequential"] = seq = self.sequential()
            print(f"sequential (websocket), {seq['requests']} each way: first token {seq['direct_p50_ms']:.1f} -> "
                  f"{seq['chatweb_p50_ms']:.1f} ms median, added {seq['added_p50_ms']:+.1f} ms median "
                  f"({seq['added_p99_ms']:+.1f} p99)", flush=True)
        for n in a.sizes:
            for mode in a.paths:
                out["rows"].append(row := self.row(mode, n))
                print(row_line(row), flush=True)
        out["profiles"] = {name: {"file": str(p.relative_to(ROOT)), "phases": profile_phases(p),
                                  **profile_summary(p)}
                           for name, p in self.profiles.items() if p.exists()}
        for name, summary in out["profiles"].items():
            phases = ", ".join(f"{phase} {share * 100:.0f}%" for phase, share in summary["phases"])
            print(f"profile {name} ({summary['samples']} samples, {summary['file']}): {phases}; "
                  "most on top of the stack:")
            for fn, share in summary["self"][:12]:
                print(f"  {share * 100:5.1f}%  {fn}")
        return out


def scaleout_figures(counted: dict[str, Any], results: list[dict[str, Any]], via: dict[str, Any], n: int,
                     processes: int) -> dict[str, Any]:
    """Throughput, and what it cost each part, of one burst through several processes."""
    deltas = sum(r["deltas"] for r in results if r["ok"])
    cpu = counted["cpu"]
    return {**counted,
            "requests_per_second": n / via["wall_s"],
            "requests_per_second_per_process": n / via["wall_s"] / processes,
            "cpu_ms_per_request": {part: seconds * 1000 / n for part, seconds in cpu.items()},
            "all_cpu_ms_per_request": sum(cpu.values()) * 1000 / n,
            "deltas": deltas,
            "redis_calls_per_request": counted["redis_calls"] / n,
            "redis_calls_per_delta": counted["redis_calls"] / deltas if deltas else math.nan,
            "pg_commits_per_request": counted["pg_commits"] / n,
            "pg_commits_per_second": counted["pg_commits"] / via["wall_s"]}


def row_line(row: dict[str, Any]) -> str:
    d, c = row["direct"], row["chatweb"]
    processes = f"{row['processes']} processes, " if "scaleout" in row else ""
    return (f"{processes}{row['path']:>2} x {row['n']:>5}: whole {c['whole']}/{row['n']} (direct {d['whole']}); wall "
            f"{d['wall_s']:.2f} -> {c['wall_s']:.2f} s = {row['wall_ratio']:.2f}x; first token p50 "
            f"{d['ttft_p50_ms']:.0f} -> {c['ttft_p50_ms']:.0f} ms, p99 {d['ttft_p99_ms']:.0f} -> "
            f"{c['ttft_p99_ms']:.0f} ms{steps(c)}; server CPU {row['server_cpu_ms_per_request']:.1f} ms/request"
            f"{'; errors ' + json.dumps(c['errors']) if c['errors'] else ''}{scaleout_line(row)}")


def scaleout_line(row: dict[str, Any]) -> str:
    if "scaleout" not in row:
        return ""
    s = row["scaleout"]
    cpu = ", ".join(f"{part} {ms:.1f}" for part, ms in s["cpu_ms_per_request"].items())
    top = ", ".join(f"{name} {calls}" for name, calls in list(s["redis_commands"].items())[:6])
    return (f"\n      {s['requests_per_second']:.0f} requests/s = {s['requests_per_second_per_process']:.0f} per "
            f"process; CPU ms/request {cpu} (all {s['all_cpu_ms_per_request']:.1f}); Redis "
            f"{s['redis_calls_per_request']:.1f} commands/request, {s['redis_calls_per_delta']:.2f}/delta "
            f"({s['deltas']} deltas; {top}); PostgreSQL {s['pg_commits_per_request']:.2f} commits/request, "
            f"{s['pg_commits_per_second']:.0f}/s")


def steps(c: dict[str, Any]) -> str:
    """The websocket's handshake and admission times, when measured."""
    if math.isnan(c.get("opened_p50_ms", math.nan)):  # not a websocket burst
        return ""
    return (f" (socket open p50/p99 {c['opened_p50_ms']:.0f}/{c['opened_p99_ms']:.0f} ms, chat.started "
            f"{c['admitted_p50_ms']:.0f}/{c['admitted_p99_ms']:.0f} ms)")


def markdown(out: dict[str, Any], command: str) -> str:
    lines = [f"Run {out['when']} on {out['cores']} cores: `{command}`.", ""]
    if any("scaleout" in r for r in out["rows"]):
        return "\n".join(lines + scaleout_markdown(out["rows"]))
    if "sequential" in out:
        s = out["sequential"]
        lines += [f"Sequential first token (websocket, {s['requests']} each way, alternating): "
                  f"{s['direct_p50_ms']:.1f} → {s['chatweb_p50_ms']:.1f} ms median, added "
                  f"**{s['added_p50_ms']:+.1f} ms median** ({s['added_p99_ms']:+.1f} ms p99).", ""]
    lines += ["| path | N | whole | wall direct → chatweb | ratio | first token p50 direct → chatweb | "
              "first token p99 direct → chatweb | server CPU per request |",
              "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in out["rows"]:
        d, c = r["direct"], r["chatweb"]
        lines.append(f"| {r['path']} | {r['n']:,} | {c['whole']:,} / {r['n']:,} | {d['wall_s']:.2f} → "
                     f"{c['wall_s']:.2f} s | **{r['wall_ratio']:.2f}x** | {d['ttft_p50_ms']:.0f} → "
                     f"{c['ttft_p50_ms']:.0f} ms | {d['ttft_p99_ms']:.0f} → {c['ttft_p99_ms']:.0f} ms | "
                     f"{r['server_cpu_ms_per_request']:.1f} ms |")
    for name, p in out.get("profiles", {}).items():
        top = ", ".join(f"`{fn}` {share * 100:.1f}%" for fn, share in p["self"][:6])
        phases = ", ".join(f"{phase} {share * 100:.0f}%" for phase, share in p["phases"])
        lines += ["", f"Profile of the {name} burst ({p['samples']:,} samples): by phase {phases}; on top of the "
                  f"stack {top}."]
    return "\n".join(lines)


def scaleout_markdown(rows: list[dict[str, Any]]) -> list[str]:
    lines = ["| processes | path | N | whole | wall direct → chatweb | ratio | first token p50 / p99 | requests/s "
             "(per process) | CPU ms per request: Daphne, nginx, Redis, PostgreSQL (all) | Redis commands per "
             "request (per delta) | commits per request (per second) |",
             "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        d, c, s = r["direct"], r["chatweb"], r["scaleout"]
        cpu = s["cpu_ms_per_request"]
        per_delta = f" ({s['redis_calls_per_delta']:.2f})" if s["deltas"] and r["path"] == "ws" else ""
        lines.append(
            f"| {r['processes']} | {r['path']} | {r['n']:,} | {c['whole']:,} / {r['n']:,} | {d['wall_s']:.2f} → "
            f"{c['wall_s']:.2f} s | **{r['wall_ratio']:.2f}x** | {c['ttft_p50_ms']:.0f} / {c['ttft_p99_ms']:.0f} ms "
            f"| {s['requests_per_second']:.0f} ({s['requests_per_second_per_process']:.0f}) | "
            f"{cpu['daphne']:.1f}, {cpu['nginx']:.1f}, {cpu['redis']:.1f}, {cpu['postgres']:.1f} "
            f"({s['all_cpu_ms_per_request']:.1f}) | {s['redis_calls_per_request']:.1f}{per_delta} | "
            f"{s['pg_commits_per_request']:.2f} ({s['pg_commits_per_second']:.0f}) |")
    return lines


def write_docs(out: dict[str, Any], command: str) -> None:
    begin, end = f"<!-- bench-burst:{out['label']}:begin -->", f"<!-- bench-burst:{out['label']}:end -->"
    text = DOC.read_text()
    block = f"{begin}\n{markdown(out, command)}\n{end}"
    if begin in text and end in text:
        text = text[: text.index(begin)] + block + text[text.index(end) + len(end):]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    DOC.write_text(text)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=lambda s: [int(x) for x in s.split(",")], default=[100, 500, 1000])
    parser.add_argument("--paths", type=lambda s: s.split(","), default=["ws", "v1"])
    parser.add_argument("--tokens", type=int, default=100)
    parser.add_argument("--delay", type=float, default=0.01)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--seq", type=int, default=100, help="sequential requests each way (0: none)")
    parser.add_argument("--profile", type=int, default=0, help="py-spy the server through the bursts of this N")
    parser.add_argument("--label", default="latest", help="the block of docs/benchmarks.md to write")
    parser.add_argument("--server-root", default="", help="serve chatweb from this source tree")
    parser.add_argument("--no-docs", action="store_true")
    parser.add_argument("--floor", action="store_true",
                        help="websocket bursts through bench/floor.py (Daphne, the upstream client), not chatweb")
    parser.add_argument("--processes", type=lambda s: [int(x) for x in s.split(",")], default=[],
                        help="scale-out: this many Daphne processes behind nginx on PostgreSQL + Redis, in turn")
    parser.add_argument("--database-url", default="postgres://postgres@127.0.0.1:5432/scaleout_db",
                        help="with --processes: the PostgreSQL database to drop, create and use")
    args = parser.parse_args()
    if not set(args.paths) <= {"ws", "v1"}:
        parser.error("--paths: ws and/or v1")
    if args.floor and (args.processes or args.server_root or args.paths != ["ws"]):
        parser.error("--floor: websocket bursts of one process only (--paths ws)")
    if args.floor:
        args.seq, args.no_docs = 0, True  # the floor has no sequential figure of its own, nor a block in the docs
    if args.processes:
        args.seq = 0  # the sequential first token is a figure of the embedded default
    bench = Burst(args)
    try:
        out = bench.run()
    finally:
        bench.stop()
    command = "python -m bench burst " + " ".join(sys.argv[1:])
    path = RESULTS / f"burst-{out['when']}.json"
    path.write_text(json.dumps(out, indent=1, default=str))
    print(f"results: {path.relative_to(ROOT)}")
    if not args.no_docs:
        write_docs(out, command.strip())
    whole = all(r["chatweb"]["whole"] == r["n"] for r in out["rows"])
    return 0 if whole else 1


if __name__ == "__main__":
    sys.exit(main())
