"""Throughput of the SSE decoder + stream normaliser against a bare json.loads loop over the same payloads."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # runnable as `python bench/bench_sse.py` from anywhere

from conversations.upstream.normalize import StreamNormalizer  # noqa: E402
from conversations.upstream.sse import SSEDecoder  # noqa: E402

STREAM = ROOT / "tests" / "upstream" / "fixtures" / "openai" / "d61558011839.sse"
TARGET_EVENTS = 20_000
READ_SIZE = 1024  # bytes per simulated network read
ROUNDS = 15  # best of N in CPU time, so that other processes on the machine skew the figure less


def build() -> tuple[bytes, list[str]]:
    raw = STREAM.read_bytes()
    # One long stream: the chunks of the recording repeated, [DONE] only at the very end.
    body, done = raw.split(b"data: [DONE]")[0], b"data: [DONE]\n\n"
    per_copy = body.count(b"\n\ndata: ") + 1
    data = body * (TARGET_EVENTS // per_copy + 1) + done
    payloads = [line[6:].decode() for line in data.split(b"\n") if line.startswith(b"data: {")]
    return data, payloads


def pipeline(data: bytes) -> int:
    decoder, normalizer = SSEDecoder(), StreamNormalizer()
    produced = 0
    for i in range(0, len(data), READ_SIZE):
        for event in decoder.feed(data[i : i + READ_SIZE]):
            produced += len(normalizer.feed(event))
    for event in decoder.close():
        produced += len(normalizer.feed(event))
    return produced + len(normalizer.finish())


def bare(payloads: list[str]) -> int:
    loads = json.loads
    for payload in payloads:
        loads(payload)
    return len(payloads)


def measure(data: bytes, payloads: list[str]) -> tuple[float, float]:
    """Best time of each over ROUNDS, the two interleaved so that a busy machine hurts both alike."""
    t_pipe = t_json = float("inf")
    for _ in range(ROUNDS):
        start = time.process_time()
        pipeline(data)
        t_pipe = min(t_pipe, time.process_time() - start)
        start = time.process_time()
        bare(payloads)
        t_json = min(t_json, time.process_time() - start)
    return t_pipe, t_json


def main() -> None:
    data, payloads = build()
    chunks = len(payloads)
    assert pipeline(data) > 0.9 * chunks  # sanity: nearly every chunk carries a piece of content
    t_pipe, t_json = measure(data, payloads)
    pipe_rate, json_rate = chunks / t_pipe, chunks / t_json
    size = len(data) / 1e6
    print(f"stream: {STREAM.name} repeated, {chunks} chunks, {size:.1f} MB in {READ_SIZE}-byte reads")
    print(f"decoder + normaliser: {pipe_rate:>10,.0f} chunks/s")
    print(f"bare json.loads:      {json_rate:>10,.0f} chunks/s")
    print(f"ratio: {pipe_rate / json_rate:.2f} (goal >= 0.5)")


if __name__ == "__main__":
    main()
