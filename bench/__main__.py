"""`python -m bench [NAME [ARGS...]]` (`make bench`): run every benchmark in turn, or only the one named.

    python -m bench                     # all of them, each with its defaults
    python -m bench ws --streams 100,250,500,1000
    python -m bench --list

Each benchmark runs in its own process (several set Django up on their own throwaway database), one after
another; the exit status is the worst of theirs.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

BENCHES = {  # name -> (module, what it measures)
    "sse": ("bench.bench_sse", "SSE decoder + normaliser throughput vs bare json.loads"),
    "api": ("bench.bench_api", "/v1/chat/completions overhead vs straight to the upstream"),
    "stages": ("bench.api_stages", "/v1's first token in stages inside the server (--server-root: and another tree)"),
    "dashboard": ("bench.bench_dashboard", "usage dashboard over a million ledger rows vs COUNT(*)"),
    "ws": ("bench.bench_ws", "chat websocket: TTFT, completion and wall time at 100-1,000 streams vs the upstream"),
    "burst": ("bench.bench_burst", "N new websocket and /v1 clients at once (100-1,000) vs the same burst upstream"),
    "estimate": ("bench.bench_estimate", "chat.estimate of a 100-message conversation, in-process and over the socket"),
    "reconcile": ("bench.bench_reconcile", "manage.py reconcile importing 1,000,000 rows on PostgreSQL (DATABASE_URL)"),
}


def main(argv: list[str]) -> int:
    if argv and argv[0] in ("-h", "--help", "--list"):
        print(__doc__)
        for name, (_, what) in BENCHES.items():
            print(f"  {name:10} {what}")
        return 0
    if argv and not argv[0].startswith("-"):
        name, args = argv[0], argv[1:]
        if name not in BENCHES:
            print(f"no benchmark named {name!r}; one of: {', '.join(BENCHES)}", file=sys.stderr)
            return 2
        selected = [(name, args)]
    else:
        selected = [(name, []) for name in BENCHES]
    worst = 0
    for name, args in selected:
        module = BENCHES[name][0]
        print(f"\n=== {name}: {BENCHES[name][1]} ===", flush=True)
        started = time.monotonic()
        code = subprocess.call([sys.executable, "-m", module, *args], cwd=ROOT)
        print(f"=== {name}: exit {code} after {time.monotonic() - started:.0f} s ===", flush=True)
        worst = max(worst, code)
    return worst


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
