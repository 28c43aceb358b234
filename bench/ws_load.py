"""One load-generator process for bench_ws: websocket clients speaking the chat protocol (docs/protocol.md), or
SSE clients straight to the upstream, started together at a wall-clock time the parent gives, each timing its own reply.

Driven over stdin/stdout by bench_ws (one JSON spec line in; "ready"; "go <epoch seconds>" in; one JSON result
line out). Run in a few separate processes, so the clients do not share one core's event loop with each other
(they still share the machine with the server: the benchmark says so).

Modes:
  ws    every client opens its socket before "ready", sends chat.send at t0 + its offset, reads to chat.done
  sse   every client POSTs /chat/completions (stream) to the upstream at t0 + offset, reads to [DONE]
  seq   one client, one request at a time, alternating straight-to-upstream and through chatweb
  idle  opens sockets and holds them until "stop" (memory per idle websocket)
  burst every client, at t0 + its offset, opens a new websocket, sends chat.send, reads to chat.done, closes
  v1    every client POSTs /v1/chat/completions (stream, a Bearer key) to chatweb on a fresh connection
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import sys
import time
from typing import Any
from urllib.parse import urlsplit

from websockets.asyncio.client import connect

OPEN_CONCURRENCY = 20  # sockets opened at once while preparing (a burst of 1,000 handshakes is not the point)


def _result(**fields: Any) -> dict[str, Any]:
    return {"ok": False, "error": "", "ttft": None, "admitted": None, "total": None, "started": None,
            "ended": None, "deltas": 0, "length": 0, "sha": "", "completion_tokens": None, **fields}


def _finish(result: dict[str, Any], text: str) -> dict[str, Any]:
    result["length"] = len(text)
    result["sha"] = hashlib.sha1(text.encode()).hexdigest()[:16]  # noqa: S324 (a fingerprint, not security)
    return result


async def _sleep_until(epoch: float) -> None:
    await asyncio.sleep(max(0.0, epoch - time.time()))


# --- websocket (through chatweb) --------------------------------------------------------------------------


async def ws_open(spec: dict[str, Any], cookie: str):
    return await connect(
        spec["ws_url"], origin=spec["origin"], additional_headers={"Cookie": cookie}, compression=None,
        open_timeout=60, ping_interval=None, max_queue=None,
    )


async def ws_reply(ws, model: str, prompt: str, request_id: str, timeout: float,  # noqa: ASYNC109
                   started: float | None = None) -> dict[str, Any]:
    """Send one chat.send, read this reply to chat.done; check seq runs 1..n with no gap and no repeat.
    `started`: the perf_counter the times count from (the socket's opening, in a burst), else now."""
    result = _result()
    parts: list[str] = []
    result["started"] = time.time() if started is None else time.time() - (time.perf_counter() - started)
    started = time.perf_counter() if started is None else started
    frame = {"type": "chat.send", "request_id": request_id, "conversation_id": None, "model": model,
             "content": prompt}
    message_id, seq = None, 0
    try:
        async with asyncio.timeout(timeout):
            await ws.send(json.dumps(frame))
            while True:
                event = json.loads(await ws.recv())
                kind = event.get("type")
                if kind == "chat.started" and event.get("request_id") == request_id:
                    message_id = event["message_id"]
                    result["admitted"] = time.perf_counter() - started
                elif message_id is None or event.get("message_id") != message_id:
                    if kind == "chat.error" and event.get("request_id") == request_id:
                        result["error"] = f"refused: {event.get('code')}"
                        return result
                    continue
                elif kind == "chat.delta":
                    if event["seq"] != seq + 1:
                        result["error"] = f"seq {event['seq']} after {seq}"
                    seq = event["seq"]
                    if result["ttft"] is None and event.get("content"):
                        result["ttft"] = time.perf_counter() - started
                    parts.append(event.get("content", ""))
                elif kind == "chat.error":
                    result["error"] = result["error"] or f"error: {event.get('code')}"
                elif kind == "chat.done":
                    result["total"] = time.perf_counter() - started
                    result["ended"] = time.time()
                    result["deltas"] = seq
                    result["completion_tokens"] = (event.get("usage") or {}).get("completion_tokens")
                    if event.get("seq") != seq:
                        result["error"] = result["error"] or f"done at seq {event.get('seq')}, saw {seq}"
                    if event.get("finish_reason") != "stop":
                        result["error"] = result["error"] or f"finish_reason {event.get('finish_reason')}"
                    result["ok"] = not result["error"]
                    return _finish(result, "".join(parts))
    except TimeoutError:
        result["error"] = f"timed out after {timeout:g} s ({seq} deltas)"
    except Exception as exc:  # a closed socket, a refused handshake: counted, never fatal to the run
        result["error"] = f"{type(exc).__name__}: {exc}"[:200]
    return _finish(result, "".join(parts))


# --- SSE straight to the upstream -----------------------------------------------------------------------


def sse_request(base_url: str, model: str, prompt: str, api_key: str = "") -> tuple[str, int, bytes]:
    """(host, port, raw HTTP/1.1 request): the same body chatweb sends for a one-message conversation (and the
    `openai` client sends for a streamed chat completion); with `api_key`, its Bearer header."""
    url = urlsplit(base_url)
    body = json.dumps({"model": model, "messages": [{"role": "user", "content": prompt}], "stream": True,
                       "stream_options": {"include_usage": True}}).encode()
    head = (f"POST {url.path.rstrip('/')}/chat/completions HTTP/1.1\r\nHost: {url.netloc}\r\n"
            f"Content-Type: application/json\r\nAccept: text/event-stream\r\nContent-Length: {len(body)}\r\n"
            + (f"Authorization: Bearer {api_key}\r\n" if api_key else "")
            + "Connection: close\r\n\r\n").encode()
    return url.hostname or "127.0.0.1", url.port or 80, head + body


async def sse_reply(host: str, port: int, request: bytes, timeout: float) -> dict[str, Any]:  # noqa: ASYNC109
    """One streamed completion over a fresh connection (as a plain client would), read to [DONE]."""
    result = _result()
    parts: list[str] = []
    started = time.perf_counter()
    result["started"] = time.time()
    writer = None
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(host, port)
            writer.write(request)
            status = await reader.readline()
            if b" 200 " not in status:
                result["error"] = status.decode(errors="replace").strip()
                return result
            chunked = False
            while (line := await reader.readline()) not in (b"\r\n", b""):
                if line.lower().startswith(b"transfer-encoding:") and b"chunked" in line.lower():
                    chunked = True
            buffer = b""
            done = False
            while not done:
                if chunked:
                    size = int((await reader.readline()).split(b";")[0], 16)
                    if size == 0:
                        break
                    data = (await reader.readexactly(size + 2))[:-2]
                else:
                    data = await reader.read(65536)
                    if not data:
                        break
                buffer += data
                while b"\n\n" in buffer:
                    event, buffer = buffer.split(b"\n\n", 1)
                    for line in event.split(b"\n"):
                        if not line.startswith(b"data: "):
                            continue
                        payload = line[6:]
                        if payload == b"[DONE]":
                            done = True
                            break
                        chunk = json.loads(payload)
                        if chunk.get("usage"):
                            result["completion_tokens"] = chunk["usage"].get("completion_tokens")
                        for choice in chunk.get("choices") or ():
                            text = (choice.get("delta") or {}).get("content")
                            if text:
                                if result["ttft"] is None:
                                    result["ttft"] = time.perf_counter() - started
                                parts.append(text)
                                result["deltas"] += 1
            result["total"] = time.perf_counter() - started
            result["ended"] = time.time()
            result["ok"] = done
            if not done:
                result["error"] = "no [DONE]"
    except TimeoutError:
        result["error"] = f"timed out after {timeout:g} s"
    except Exception as exc:
        result["error"] = f"{type(exc).__name__}: {exc}"[:200]
    finally:
        if writer is not None:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
    return _finish(result, "".join(parts))


# --- the modes ----------------------------------------------------------------------------------------------


async def _open_all(spec: dict[str, Any], cookies: list[str]) -> list[Any]:
    gate = asyncio.Semaphore(OPEN_CONCURRENCY)

    async def one(cookie: str):
        async with gate:
            for attempt in range(3):  # a busy server may drop a handshake (Daphne's connect timeout): try again
                try:
                    return await ws_open(spec, cookie)
                except Exception as exc:
                    print(f"opening a socket failed ({type(exc).__name__}: {exc}); attempt {attempt + 1}",
                          file=sys.stderr)
                    await asyncio.sleep(1)
            return await ws_open(spec, cookie)

    return await asyncio.gather(*(one(c) for c in cookies))


async def _close_all(sockets: list[Any]) -> None:
    async def one(ws) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(ws.close(), 5)

    await asyncio.gather(*(one(ws) for ws in sockets))


async def _read_line() -> str:
    return (await asyncio.to_thread(sys.stdin.readline)).strip()


def _say(obj: Any) -> None:
    sys.stdout.write((obj if isinstance(obj, str) else json.dumps(obj)) + "\n")
    sys.stdout.flush()


async def run_ws(spec: dict[str, Any]) -> list[dict[str, Any]]:
    clients = spec["clients"]
    sockets = await _open_all(spec, [c["cookie"] for c in clients])
    _say("ready")
    t0 = float((await _read_line()).split()[1])

    async def one(ws, client: dict[str, Any]) -> dict[str, Any]:
        await _sleep_until(t0 + client["offset"])
        return await ws_reply(ws, spec["model"], client["prompt"], client["request_id"], spec["timeout"])

    try:
        return await asyncio.gather(*(one(ws, c) for ws, c in zip(sockets, clients, strict=True)))
    finally:
        await _close_all(sockets)


async def run_sse(spec: dict[str, Any]) -> list[dict[str, Any]]:
    _say("ready")
    t0 = float((await _read_line()).split()[1])

    async def one(client: dict[str, Any]) -> dict[str, Any]:
        host, port, request = sse_request(spec["upstream_v1"], spec["upstream_model"], client["prompt"])
        await _sleep_until(t0 + client["offset"])
        return await sse_reply(host, port, request, spec["timeout"])

    return await asyncio.gather(*(one(c) for c in spec["clients"]))


async def run_burst(spec: dict[str, Any]) -> list[dict[str, Any]]:
    """New clients all at once: each opens its websocket at t0 + offset (the handshake and sign-in are part of
    what is timed), sends one chat.send, reads to chat.done and closes."""
    _say("ready")
    t0 = float((await _read_line()).split()[1])

    async def one(client: dict[str, Any]) -> dict[str, Any]:
        await _sleep_until(t0 + client["offset"])
        started = time.perf_counter()
        try:
            async with asyncio.timeout(spec["timeout"]):
                ws = await ws_open(spec, client["cookie"])
        except Exception as exc:
            result = _result(started=time.time(), error=f"open: {type(exc).__name__}: {exc}"[:200])
            return _finish(result, "")
        opened = time.perf_counter() - started
        try:
            result = await ws_reply(ws, spec["model"], client["prompt"], client["request_id"], spec["timeout"],
                                    started=started)
            result["opened"] = opened
            return result
        finally:
            await _close_all([ws])

    return await asyncio.gather(*(one(c) for c in spec["clients"]))


async def run_v1(spec: dict[str, Any]) -> list[dict[str, Any]]:
    """New /v1 clients all at once: each POSTs a streamed chat completion to chatweb on a fresh connection."""
    _say("ready")
    t0 = float((await _read_line()).split()[1])

    async def one(client: dict[str, Any]) -> dict[str, Any]:
        host, port, request = sse_request(spec["v1_url"], spec["model"], client["prompt"], spec["api_key"])
        await _sleep_until(t0 + client["offset"])
        return await sse_reply(host, port, request, spec["timeout"])

    return await asyncio.gather(*(one(c) for c in spec["clients"]))


async def run_seq(spec: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """Alternate one request straight to the upstream and one through chatweb, so a busy moment hurts both."""
    client = spec["clients"][0]
    ws = await ws_open(spec, client["cookie"])
    _say("ready")
    await _read_line()
    out: dict[str, list[dict[str, Any]]] = {"direct": [], "chatweb": []}
    try:
        for i in range(spec["count"]):
            prompt = spec["prompts"][i % len(spec["prompts"])]
            host, port, request = sse_request(spec["upstream_v1"], spec["upstream_model"], prompt)
            out["direct"].append(await sse_reply(host, port, request, spec["timeout"]))
            out["chatweb"].append(await ws_reply(ws, spec["model"], prompt, f"s{i}", spec["timeout"]))
            await asyncio.sleep(spec.get("pause", 0.01))
    finally:
        await _close_all([ws])
    return out


async def run_idle(spec: dict[str, Any]) -> dict[str, Any]:
    sockets = await _open_all(spec, [c["cookie"] for c in spec["clients"]])
    _say("ready")
    await _read_line()  # "stop"
    await _close_all(sockets)
    return {"opened": len(sockets)}


async def main() -> None:
    spec = json.loads(sys.stdin.readline())
    runners = {"ws": run_ws, "sse": run_sse, "seq": run_seq, "idle": run_idle, "burst": run_burst, "v1": run_v1}
    runner = runners[spec["mode"]]
    _say({"result": await runner(spec)})


if __name__ == "__main__":
    asyncio.run(main())
