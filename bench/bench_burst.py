"""Bursts: N new clients at the same moment, through chatweb and straight to the upstream, in the same run.

    python -m bench burst [--sizes 100,500,1000] [--paths ws,v1] [--tokens 100] [--delay 0.01] [--workers 3]
                          [--seq 100] [--profile 500] [--label NAME] [--server-root DIR] [--no-docs]

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

    def start(self) -> None:
        a = self.args
        port = free_port()
        self.upstream = Service(
            [sys.executable, "-m", "conversations.devupstream", "--port", str(port), "--log-level", "warning",
             "--options", f"delay={a.delay},tokens={a.tokens}"], self.env, self.workdir / "upstream.log", port)
        self.services.append(self.upstream)
        self.upstream_v1 = f"http://127.0.0.1:{port}/v1"
        self.seq_upstream_v1 = f"http://127.0.0.1:{port}/s/{SEQ_SWITCHES}/v1"
        site = throwaway.prepare_in_subprocess(
            self.env, root=self.root, users=max(a.sizes), api_key=True,
            providers={"bench": self.upstream_v1, "benchseq": self.seq_upstream_v1})
        self.model, self.seq_model = site["models"]["bench"], site["models"]["benchseq"]
        self.cookies, self.api_key = site["cookies"], site["api_key"]
        port = free_port()
        self.daphne = Service(daphne_argv(port, "bench.serve"), self.env, self.workdir / "daphne.log", port,
                              cwd=self.root)
        self.services.append(self.daphne)
        self.origin = f"http://127.0.0.1:{port}"

    def stop(self) -> None:
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
        return subprocess.Popen([py_spy, "record", "--pid", str(self.daphne.pid), "--format", "raw", "--rate", "250",
                                 "--nonblocking", "--output", str(path)],
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
        cpu0, up0 = cpu_seconds(self.daphne.pid), cpu_seconds(self.upstream.pid)
        profile = f"{mode}-{n}" if self.args.profile == n else None
        via = summarize(self.burst(mode, n, profile), expected)
        results = self.last_results
        for key in ("opened", "admitted"):  # the websocket's steps to the first token: handshake, chat.started
            values = [r[key] * 1000 for r in results if r.get(key) is not None]
            via[f"{key}_p50_ms"], via[f"{key}_p99_ms"] = pct(values, 0.5), pct(values, 0.99)
        server_cpu = cpu_seconds(self.daphne.pid) - cpu0
        up_via = cpu_seconds(self.upstream.pid) - up0
        time.sleep(1)
        return {"path": mode, "n": n, "direct": direct, "chatweb": via,
                "wall_ratio": via["wall_s"] / direct["wall_s"],
                "server_cpu_ms_per_request": server_cpu * 1000 / n,
                "upstream_cpu_ms_per_request": {"direct": up_direct * 1000 / n, "chatweb": up_via * 1000 / n}}

    def run(self) -> dict[str, Any]:
        a = self.args
        self.stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        self.profiles: dict[str, Path] = {}
        RESULTS.mkdir(parents=True, exist_ok=True)
        self.start()
        commit = subprocess.run(["git", "-C", str(self.root), "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, check=False).stdout.strip() or "?"
        print(f"chatweb {self.origin} from {self.root.name} ({commit}), one Daphne process, SQLite, in-memory "
              f"channel layer; dev upstream {a.tokens} tokens a reply, {a.delay * 1000:g} ms apart; "
              f"{a.workers} load-generator processes; {os.cpu_count()} cores", flush=True)
        self.warm_up()
        out: dict[str, Any] = {"when": self.stamp, "args": vars(a), "cores": os.cpu_count(), "rows": [],
                               "label": a.label}
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


def row_line(row: dict[str, Any]) -> str:
    d, c = row["direct"], row["chatweb"]
    return (f"{row['path']:>2} x {row['n']:>5}: whole {c['whole']}/{row['n']} (direct {d['whole']}); wall "
            f"{d['wall_s']:.2f} -> {c['wall_s']:.2f} s = {row['wall_ratio']:.2f}x; first token p50 "
            f"{d['ttft_p50_ms']:.0f} -> {c['ttft_p50_ms']:.0f} ms, p99 {d['ttft_p99_ms']:.0f} -> "
            f"{c['ttft_p99_ms']:.0f} ms{steps(c)}; server CPU {row['server_cpu_ms_per_request']:.1f} ms/request"
            f"{'; errors ' + json.dumps(c['errors']) if c['errors'] else ''}")


def steps(c: dict[str, Any]) -> str:
    """The websocket's handshake and admission times, when measured."""
    if math.isnan(c.get("opened_p50_ms", math.nan)):  # not a websocket burst
        return ""
    return (f" (socket open p50/p99 {c['opened_p50_ms']:.0f}/{c['opened_p99_ms']:.0f} ms, chat.started "
            f"{c['admitted_p50_ms']:.0f}/{c['admitted_p99_ms']:.0f} ms)")


def markdown(out: dict[str, Any], command: str) -> str:
    lines = [f"Run {out['when']} on {out['cores']} cores: `{command}`.", ""]
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
    args = parser.parse_args()
    if not set(args.paths) <= {"ws", "v1"}:
        parser.error("--paths: ws and/or v1")
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
