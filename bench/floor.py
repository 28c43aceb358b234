"""The floor of a websocket burst: `python -m bench burst --floor` serves this ASGI application instead of chatweb.

It speaks the happy path of the chat protocol as bench/ws_load.py reads it (`chat.send` -> `chat.started`,
numbered `chat.delta` frames, `chat.done`) with nothing of chatweb's but its upstream client
(conversations/upstream/client.py) and the same coalescing of deltas: no sign-in, no database, no channel layer,
no ledger. Whatever a burst costs through it is what Daphne, the event loop and the upstream client cost; chatweb
can only add to it. Never served by chatweb itself.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
from typing import Any

from conversations.upstream import client
from conversations.upstream.client import UpstreamTarget
from conversations.upstream.events import ContentDelta

COALESCE_SECONDS = 0.06  # chatweb's batching of deltas with 100 replies streaming (coalesce_seconds())

_message_ids = itertools.count(1)
_replies: set[asyncio.Task] = set()


async def application(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "websocket":
        raise ValueError("the floor serves the websocket only")
    target = UpstreamTarget(base_url=os.environ["BENCH_FLOOR_UPSTREAM"])
    while True:
        message = await receive()
        if message["type"] == "websocket.connect":
            await send({"type": "websocket.accept"})
        elif message["type"] == "websocket.disconnect":
            return
        elif message["type"] == "websocket.receive":
            command = json.loads(message["text"])
            task = asyncio.create_task(_reply(send, target, command))
            _replies.add(task)
            task.add_done_callback(_replies.discard)


async def _reply(send: Any, target: UpstreamTarget, command: dict[str, Any]) -> None:
    message_id = next(_message_ids)

    async def frame(**fields: Any) -> None:
        await send({"type": "websocket.send", "text": json.dumps({**fields, "message_id": message_id})})

    await frame(type="chat.started", request_id=command["request_id"])
    pending: list[str] = []
    arrived = asyncio.Event()
    seq = 0

    async def flush() -> None:
        nonlocal seq
        if pending:
            seq += 1
            text = "".join(pending)
            pending.clear()
            await frame(type="chat.delta", seq=seq, content=text)

    async def publish() -> None:
        while True:
            await arrived.wait()
            arrived.clear()
            await flush()
            await asyncio.sleep(COALESCE_SECONDS)

    publisher = asyncio.create_task(publish())
    body = {"model": "dev-chat", "messages": [{"role": "user", "content": command["content"]}]}
    try:
        async for batch in client.stream_batches(target, "/chat/completions", body):
            for event in batch:
                if isinstance(event, ContentDelta) and event.index == 0 and event.text:
                    pending.append(event.text)
                    arrived.set()
    finally:
        publisher.cancel()
        await asyncio.gather(publisher, return_exceptions=True)
    await flush()
    await frame(type="chat.done", seq=seq, finish_reason="stop", usage={})
