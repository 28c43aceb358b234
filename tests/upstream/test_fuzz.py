"""Property-based fuzzing of the chat websocket: random and malformed frames never crash it, each one is
answered with exactly one `chat.error`, and the same socket then still resumes a streaming reply.

(Random bytes into the SSE decoder are fuzzed in tests/upstream/test_sse.py; random /v1/ bodies in
tests/api/test_api.py.)
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Coroutine, Iterator
from datetime import timedelta
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
from django.contrib.sessions.backends.db import SessionStore
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chatweb.asgi import application
from conversations.chat import consumers
from conversations.chat.commands import MAX_CONTENT_CHARS, MAX_FRAME_BYTES
from conversations.models import Conversation, Message

ERROR_CODES = {"bad_request", "frame_too_large", "message_too_long", "not_found"}
TYPES = [
    "chat.send",
    "chat.stop",
    "chat.regenerate",
    "chat.subscribe",
    "chat.edit",
    "chat.nope",
    "",
    "CHAT.SEND",
]

# Ids that are never one of this test's rows: wrong types, zero and negatives, and positive ids far past them
# (up to beyond a 64-bit column).
ids = st.one_of(
    st.none(),
    st.booleans(),
    st.floats(),
    st.text(max_size=8),
    st.lists(st.integers(), max_size=2),
    st.integers(max_value=0),
    st.integers(min_value=10**9, max_value=2**70),
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=10,
)
commands = st.fixed_dictionaries(
    {"type": st.sampled_from(TYPES)},
    optional={
        "request_id": st.one_of(st.text(max_size=120), st.integers(), json_values),
        "conversation_id": ids,
        "message_id": ids,
        "parent_id": ids,
        "model": st.one_of(st.text(max_size=40), json_values),  # no model exists in this test
        "content": st.one_of(st.text(max_size=40), json_values, st.just("a" * (MAX_CONTENT_CHARS + 1))),
        "system": st.one_of(st.text(max_size=40), json_values),
        "params": json_values,
    },
)
frames = st.one_of(
    commands.map(lambda c: ("text", json.dumps(c))),
    st.text(max_size=200).map(lambda t: ("text", t)),
    st.binary(max_size=200).map(lambda b: ("bytes", b)),
    json_values.map(lambda v: ("text", json.dumps(v))),
    st.integers(min_value=1, max_value=50_000).map(lambda n: ("text", "[" * n + "]" * n)),  # deep nesting
    st.integers(min_value=1, max_value=4096).map(lambda n: ("text", "x" * (MAX_FRAME_BYTES + n))),
)


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    """One event loop in a thread for the whole property: the same socket lives across every example."""
    event_loop = asyncio.new_event_loop()
    thread = threading.Thread(target=event_loop.run_forever, name="fuzz-loop", daemon=True)
    thread.start()
    yield event_loop
    event_loop.call_soon_threadsafe(event_loop.stop)
    thread.join(10)
    event_loop.close()


def run(loop: asyncio.AbstractEventLoop, coroutine: Coroutine[Any, Any, Any], timeout: float = 30) -> Any:
    return asyncio.run_coroutine_threadsafe(coroutine, loop).result(timeout)


def session_cookie(user: Any) -> str:
    session = SessionStore()
    session[SESSION_KEY] = str(user.pk)
    session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
    session[HASH_SESSION_KEY] = user.get_session_auth_hash()
    session.save()
    return session.session_key


@pytest.fixture
def streaming_reply(alice) -> Message:
    """A conversation of alice's with a reply still streaming and no process owning it: subscribing to it
    answers with a snapshot from the stored checkpoint. Its heartbeat is in the future (no reaping)."""
    conversation = Conversation.objects.create(owner=alice, title="fuzz")
    question = Message.objects.create(conversation=conversation, role=Message.Role.USER, content="hi")
    return Message.objects.create(
        conversation=conversation,
        parent=question,
        role=Message.Role.ASSISTANT,
        status=Message.Status.STREAMING,
        content="partial answer",
        seq=3,
        heartbeat_at=timezone.now() + timedelta(days=1),
    )


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_malformed_frames_never_break_the_socket(alice, streaming_reply, loop, monkeypatch):
    monkeypatch.setattr(consumers, "SNAPSHOT_WAIT_SECONDS", 0.01)  # no owner will answer: use the checkpoint
    cookie = session_cookie(alice)
    headers = [(b"origin", b"http://127.0.0.1:8000"), (b"cookie", f"sessionid={cookie}".encode())]
    ws = WebsocketCommunicator(application, "/ws/chat/", headers=headers)

    async def connect() -> None:
        connected, _ = await ws.connect()
        assert connected

    async def exchange(batch: list[tuple[str, Any]]) -> None:
        for kind, data in batch:
            await ws.send_input({"type": "websocket.receive", kind: data})  # also empty frames
            output = await ws.receive_output(timeout=10)
            assert output["type"] == "websocket.send", (data[:200], output)
            frame = json.loads(output["text"])
            assert frame["type"] == "chat.error" and frame["code"] in ERROR_CODES, (data[:200], frame)
            assert isinstance(frame["message"], str) and frame["message"]
        # Still usable: a resume of the streaming reply answers with its snapshot.
        await ws.send_to(
            text_data=json.dumps(
                {"type": "chat.subscribe", "conversation_id": streaming_reply.conversation_id}
            )
        )
        snapshot = json.loads(await ws.receive_from(timeout=10))
        assert snapshot["type"] == "chat.snapshot" and snapshot["message_id"] == streaming_reply.pk
        assert snapshot["content"] == "partial answer" and snapshot["seq"] == 3

    run(loop, connect())

    @settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(st.lists(frames, min_size=1, max_size=5))
    def property(batch: list[tuple[str, Any]]) -> None:
        run(loop, exchange(batch))

    try:
        property()
        assert run(loop, ws.receive_nothing(timeout=0.2))
    finally:
        run(loop, ws.disconnect())


@pytest.mark.django_db(transaction=True)
async def test_an_id_past_a_64_bit_column_is_a_clean_not_found(alice):
    """Such ids never reach the database as an out-of-range error (Django 5 turns the lookup into no rows)."""
    cookie = await sync_to_async(session_cookie)(alice)
    headers = [(b"origin", b"http://127.0.0.1:8000"), (b"cookie", f"sessionid={cookie}".encode())]
    ws = WebsocketCommunicator(application, "/ws/chat/", headers=headers)
    assert (await ws.connect())[0]
    for frame in (
        {"type": "chat.subscribe", "conversation_id": 2**64},
        {"type": "chat.stop", "message_id": 2**63},
    ):
        await ws.send_to(text_data=json.dumps(frame))
        answer = json.loads(await ws.receive_from(timeout=10))
        assert answer["type"] == "chat.error" and answer["code"] in ("not_found", "bad_request")
    await ws.disconnect()
