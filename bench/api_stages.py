"""Where `/v1`'s time to the first token goes inside the server, stage by stage, for this tree and another.

Run: `.venv/bin/python bench/api_stages.py [--requests 300] [--server-root DIR]`

It serves chatweb under Daphne (and, with `--server-root`, a second chatweb from another source tree) against one
dev upstream, as `bench/bench_api.py` does, with `bench/stage_probe/` on the servers' path: that probe timestamps
the API view's steps, the upstream socket's reads and writes, and the body handed to Daphne, from inside the
process. The same `openai` client streams one request at a time to each server in turn. Printed: the median of
each stage, per server:

- the view's first step: Django's request → the admission handed to its database thread;
- the admission: until the view runs again (the thread's work and both hops);
- the view again → the upstream request written (the upstream client, the HTTP transport);
- written → the upstream's first bytes read (the upstream's own time, and the loop getting to it);
- the first bytes → the first chunk handed to Daphne (parsing, the SSE relay, Django's response).

The probe's own cost (a clock read and a name check per loop callback) is in every figure, alike for both trees.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from bisect import bisect_left
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # runnable as `python bench/api_stages.py` from anywhere

from bench.bench_api import Server, dev_upstream, environment, one  # noqa: E402

PROBE = ROOT / "bench" / "stage_probe"
STAGES = (
    "view's first step",
    "admission (database thread)",
    "view again → upstream request written",
    "written → upstream's first bytes",
    "first bytes → first chunk to Daphne",
    "whole: view → first chunk",
)
WARM_UP = 30


def stages(events: list[list]) -> dict[str, list[float]]:
    """Per request (a view task with at least two steps), the stages in milliseconds."""
    steps: dict[int, list[tuple[float, float]]] = {}
    writes, reads, bodies = [], [], []
    for kind, start, end, extra in events:
        if kind == "view":
            steps.setdefault(extra, []).append((start, end))
        elif kind == "write":
            writes.append(start)
        elif kind == "read":
            reads.append(start)
        elif kind == "body":
            bodies.append(start)
    writes.sort(), reads.sort(), bodies.sort()
    out: dict[str, list[float]] = {name: [] for name in STAGES}
    requests = sorted((sorted(s) for s in steps.values() if len(s) >= 2), key=lambda s: s[0][0])
    for first, second, *_ in requests[WARM_UP:]:
        found = []
        for times, after in ((writes, second[0]), (reads, None), (bodies, None)):
            i = bisect_left(times, after if after is not None else found[-1])
            if i == len(times):
                break
            found.append(times[i])
        if len(found) < 3:
            continue
        written, read, body = found
        figures = (first[1] - first[0], second[0] - first[1], written - second[0], read - written, body - read,
                   body - first[0])
        for name, seconds in zip(STAGES, figures, strict=True):
            out[name].append(seconds * 1000)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=300, help="requests to each server, one at a time")
    parser.add_argument("--tokens", type=int, default=64, help="reply length in tokens")
    parser.add_argument("--server-root", default="", help="also serve chatweb from this source tree, in turn")
    args = parser.parse_args()

    import openai

    workdir = Path(tempfile.mkdtemp(prefix="chatweb-bench-stages-"))
    env = environment(workdir)
    upstream = dev_upstream(env, workdir, delay=0, tokens=args.tokens)
    roots = [("chatweb", ROOT)] + ([("other", Path(args.server_root).resolve())] if args.server_root else [])
    servers: list[Server] = []
    try:
        for name, root in roots:
            servers.append(Server(name, root, f"{upstream.url}/v1", workdir, extra_path=(PROBE,),
                                  extra_env={"CHATWEB_STAGE_PROBE": str(workdir / f"{name}.json")}))
        clients = [(openai.OpenAI(base_url=s.v1, api_key=s.key, max_retries=0), s.model) for s in servers]
        for i in range(WARM_UP + args.requests):
            for client, model in clients if i % 2 else reversed(clients):  # neither always right after the other
                one(client, model, args.tokens)
    finally:
        for s in servers:
            s.stop()
        upstream.stop()
    print(f"{args.requests} requests to each server, one at a time; medians in ms (the first {WARM_UP} left out)\n")
    results = {s.name: stages(json.loads((workdir / f"{s.name}.json").read_text())) for s in servers}
    names = [s.name for s in servers]
    print(f"{'stage':42}" + "".join(f"{n:>10}" for n in names) + ("  difference" if len(names) == 2 else ""))
    for stage in STAGES:
        medians = [statistics.median(results[n][stage]) if results[n][stage] else float("nan") for n in names]
        row = f"{stage:42}" + "".join(f"{m:10.3f}" for m in medians)
        if len(medians) == 2:
            row += f"  {medians[0] - medians[1]:+.3f}"
        print(row)
    print("\nrequests measured: " + ", ".join(f"{n} {len(results[n][STAGES[0]])}" for n in names))
    return 0


if __name__ == "__main__":
    sys.exit(main())
