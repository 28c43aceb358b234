"""SQLite, the embedded default, under 100 replies at once: every reply complete and whole, no
"database is locked". Runs everywhere, CI included: the live server gets a fresh SQLite file of its own (migrated
here), whatever database the rest of the suite uses, and the in-memory channel layer of a single process."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3

import pytest
from django.conf import settings
from websockets.asyncio.client import connect

from bench.throwaway import prepare_in_subprocess
from tests.live import LiveServer

pytestmark = pytest.mark.slow

REPLIES = 100
WORDS = ["tide", "moon", "harbour", "salt", "current", "shore", "basin", "chart", "swell", "keel"]


def prompt(i: int) -> str:
    """A distinct message per client; the upstream echoes it back word by word (about 60 pieces)."""
    return f"Reply {i}: " + " ".join(WORDS[(i + k) % len(WORDS)] for k in range(55))


async def one_reply(url: str, origin: str, cookie: str, model: str, i: int) -> dict:
    async with connect(url, origin=origin, additional_headers={"Cookie": cookie}, compression=None,
                       open_timeout=30) as ws:
        await ws.send(json.dumps({"type": "chat.send", "request_id": f"r{i}", "conversation_id": None,
                                  "model": model, "content": prompt(i)}))
        frames, message_id = [], None
        while True:
            frame = json.loads(await ws.recv())
            if frame["type"] == "chat.started":
                message_id = frame["message_id"]
            elif frame["type"] == "chat.error" and message_id is None:
                return {"error": frame, "frames": frames}
            frames.append(frame)
            if frame["type"] == "chat.done" and frame.get("message_id") == message_id:
                return {"message_id": message_id, "done": frame, "frames": frames}


@pytest.fixture
def sqlite_server(tmp_path, dev_upstream, nonce):
    """A live Daphne on a fresh SQLite file, with REPLIES users (a session each) and an echoing upstream."""
    url = f"sqlite:///{tmp_path / 'concurrency.sqlite3'}"
    env = {**os.environ, "DATABASE_URL": url, "REDIS_URL": "", "SECRET_KEY": settings.SECRET_KEY,
           "CHATWEB_ENCRYPTION_KEYS": ",".join(settings.CHATWEB_ENCRYPTION_KEYS), "DEBUG": "false",
           "SECURE_SSL_REDIRECT": "false"}
    env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    # 20 ms a piece: each reply streams for over a second, so checkpoints, admissions and finishes overlap.
    base_url = dev_upstream.v1(key=nonce, echo=1, delay=0.02)
    site = prepare_in_subprocess(env, users=REPLIES, providers={"echo": base_url})
    server = LiveServer(extra_env={k: env[k] for k in ("DATABASE_URL", "REDIS_URL", "DEBUG", "SECURE_SSL_REDIRECT")})
    try:
        yield server, site, tmp_path / "concurrency.sqlite3"
    finally:
        server.stop()


def whole_log(server: LiveServer) -> str:
    server.log.flush()
    return server.log_path.read_text(errors="replace")


def test_100_concurrent_replies_on_sqlite_are_complete_whole_and_never_locked(sqlite_server, dev_upstream, nonce):
    server, site, path = sqlite_server
    model, cookies = site["models"]["echo"], site["cookies"]
    ws_url, origin = f"ws://127.0.0.1:{server.port}/ws/chat/", server.url

    async def everyone() -> list[dict]:
        async with asyncio.timeout(90):
            return await asyncio.gather(*(one_reply(ws_url, origin, cookies[i], model, i) for i in range(REPLIES)))

    results = asyncio.run(everyone())
    assert "database is locked" not in whole_log(server), server.output()
    refused = [r["error"] for r in results if "error" in r]
    assert not refused, refused[:3]
    for i, result in enumerate(results):
        deltas = [f for f in result["frames"] if f["type"] == "chat.delta"]
        assert [d["seq"] for d in deltas] == list(range(1, len(deltas) + 1)), i
        assert result["done"]["finish_reason"] == "stop" and result["done"]["seq"] == len(deltas), result["done"]
        assert "".join(d["content"] for d in deltas) == prompt(i)  # whole: the echo, nothing lost or repeated
        assert result["done"]["usage"]["completion_tokens"] > 50 and not result["done"]["usage"]["estimated"]
    assert dev_upstream.stats(nonce)["completed"] == REPLIES

    with sqlite3.connect(path) as db:
        rows = db.execute(
            "SELECT m.id, m.status, m.content, u.completion_tokens FROM conversations_message m "
            "JOIN conversations_usagerecord u ON u.message_id = m.id WHERE m.role = 'assistant'"
        ).fetchall()
    assert len(rows) == REPLIES
    stored = {message_id: (status, content, tokens) for message_id, status, content, tokens in rows}
    for i, result in enumerate(results):
        status, content, tokens = stored[result["message_id"]]
        assert status == "complete" and content == prompt(i)
        assert tokens == result["done"]["usage"]["completion_tokens"]
    assert "database is locked" not in whole_log(server) and "Traceback" not in whole_log(server), server.output()
