"""The chat websocket against the development upstream over real HTTP: every command and every fault."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from channels.db import database_sync_to_async
from django.conf import settings
from django.db import connection
from django.utils import timezone

from conversations import db as dblanes
from conversations.chat import generation
from conversations.chat.replies import replies_reap
from conversations.models import Conversation, Message, UsageRecord
from tests.chat_helpers import ORIGIN, chat_send, connect, make_model, receive, send, until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("upstream_http")]

db = database_sync_to_async


async def model_for(dev_upstream, **switches):
    provider_fields = switches.pop("provider_fields", {})
    return await db(make_model)(dev_upstream.v1(**switches), **provider_fields)


async def finish(communicator) -> None:
    await generation.wait_for_replies()
    await communicator.disconnect()


def reply_of(message_id: int) -> Message:
    return Message.objects.get(pk=message_id)


async def test_a_reply_streams_in_order_and_is_stored_with_its_usage(alice, dev_upstream, nonce):
    model = await model_for(dev_upstream, key=nonce, tokens=40, delay=0.002)
    ws = await connect(alice)
    await send(ws, chat_send(model.public_name, "Tell me about tides"))
    started, _ = await until(ws, "chat.started")
    assert started["request_id"] == "r1" and started["conversation_id"] and started["user_message_id"]
    done, frames = await until(ws, "chat.done")
    deltas = [f for f in frames if f["type"] == "chat.delta"]
    assert [d["seq"] for d in deltas] == list(range(1, len(deltas) + 1))
    assert done["finish_reason"] == "stop" and done["seq"] == len(deltas)
    text = "".join(d["content"] for d in deltas)
    reply = await db(reply_of)(started["message_id"])
    assert (
        reply.content == text and reply.status == "complete" and reply.parent_id == started["user_message_id"]
    )
    record = await db(UsageRecord.objects.get)(message_id=reply.pk)
    assert not record.usage_estimated and record.cost_source == "price"
    assert done["usage"]["completion_tokens"] == record.completion_tokens > 0
    assert done["usage"]["prompt_tokens"] == record.prompt_tokens > 0
    assert done["usage"]["estimated_cost"] == format(record.estimated_cost.normalize(), "f")
    assert record.ttft_ms is not None and record.duration_ms >= record.ttft_ms
    conversation = await db(Conversation.objects.get)(pk=started["conversation_id"])
    assert conversation.title == "Tell me about tides" and conversation.active_leaf_id == reply.pk
    await finish(ws)


async def test_second_message_carries_the_history(alice, dev_upstream, nonce):
    model = await model_for(dev_upstream, key=nonce, tokens=5, echo=1)
    ws = await connect(alice)
    await send(ws, chat_send(model.public_name, "first"))
    started, _ = await until(ws, "chat.started")
    await until(ws, "chat.done")
    await send(ws, {**chat_send(model.public_name, "second"), "conversation_id": started["conversation_id"]})
    second, _ = await until(ws, "chat.started")
    done, _ = await until(ws, "chat.done")
    first_usage = await db(UsageRecord.objects.get)(message_id=started["message_id"])
    assert done["usage"]["prompt_tokens"] > first_usage.prompt_tokens  # the whole branch was sent
    assert second["conversation_id"] == started["conversation_id"]
    await finish(ws)


@pytest.mark.parametrize(
    ("switches", "code"),
    [
        ({"error_after": 3}, "upstream_stream_broken"),
        ({"drop_after": 4}, "upstream_stream_broken"),
        ({"malformed_after": 2}, "upstream_stream_broken"),
    ],
)
async def test_mid_stream_failures_keep_the_partial_reply_and_estimate_usage(
    alice, dev_upstream, nonce, switches, code
):
    model = await model_for(dev_upstream, key=nonce, tokens=30, **switches)
    ws = await connect(alice)
    await send(ws, chat_send(model.public_name))
    started, _ = await until(ws, "chat.started")
    error, frames = await until(ws, "chat.error")
    done, _ = await until(ws, "chat.done")
    partial = "".join(f["content"] for f in frames if f["type"] == "chat.delta")
    assert error["code"] == code and error["message"] and error["message_id"] == started["message_id"]
    assert done["finish_reason"] == "error" and done["usage"]["estimated"] is True
    reply = await db(reply_of)(started["message_id"])
    assert reply.status == "error" and reply.error_code == code and reply.content == partial and partial
    user_message = await db(Message.objects.get)(pk=started["user_message_id"])
    assert user_message.content == "Hello there"
    record = await db(UsageRecord.objects.get)(message_id=reply.pk)
    assert record.usage_estimated and record.completion_tokens > 0 and record.finish_reason == "error"
    await finish(ws)


async def test_429_then_success_retries_before_the_first_token(alice, dev_upstream, nonce):
    model = await model_for(dev_upstream, key=nonce, fail=429, times=1, retry_after=0.2, tokens=5)
    ws = await connect(alice)
    await send(ws, chat_send(model.public_name))
    done, frames = await until(ws, "chat.done")
    assert done["finish_reason"] == "stop" and not [f for f in frames if f["type"] == "chat.error"]
    assert dev_upstream.stats(nonce)["requests"] == 2
    await finish(ws)


@pytest.mark.parametrize(
    ("switches", "code"),
    [
        ({"fail": 429}, "upstream_rate_limited"),
        ({"fail": 500}, "upstream_unavailable"),
        ({"fail": 401}, "upstream_auth"),
        ({"fail": 402}, "insufficient_credits"),
        ({"fail": 400}, "upstream_bad_request"),
    ],
)
async def test_http_failures_end_with_a_clear_error_and_keep_the_question(
    alice, dev_upstream, nonce, fast_backoff, switches, code
):
    model = await model_for(dev_upstream, key=nonce, **switches, provider_fields={"max_retries": 1})
    ws = await connect(alice)
    await send(ws, chat_send(model.public_name, "Will this work?"))
    started, _ = await until(ws, "chat.started")
    error, _ = await until(ws, "chat.error")
    done, _ = await until(ws, "chat.done")
    assert error["code"] == code and len(error["message"]) > 10
    assert done["finish_reason"] == "error"
    reply = await db(reply_of)(started["message_id"])
    assert reply.status == "error" and reply.content == ""
    assert (await db(Message.objects.get)(pk=started["user_message_id"])).content == "Will this work?"
    record = await db(UsageRecord.objects.get)(message_id=reply.pk)
    assert record.total_tokens == 0 and record.estimated_cost == 0  # refused upstream: nothing billed
    await finish(ws)


async def test_slow_first_token_times_out(alice, dev_upstream, nonce):
    model = await model_for(
        dev_upstream, key=nonce, first_delay=5, provider_fields={"first_token_timeout": 0.5, "max_retries": 0}
    )
    ws = await connect(alice)
    await send(ws, chat_send(model.public_name))
    error, _ = await until(ws, "chat.error")
    assert error["code"] == "upstream_timeout"
    await until(ws, "chat.done")
    await finish(ws)


async def test_stop_ends_the_reply_within_a_second_and_closes_the_upstream_request(
    alice, dev_upstream, nonce
):
    model = await model_for(dev_upstream, key=nonce, tokens=400, delay=0.02)
    ws = await connect(alice)
    await send(ws, chat_send(model.public_name))
    started, _ = await until(ws, "chat.started")
    await until(ws, "chat.delta")
    await asyncio.sleep(0.2)
    stopped_at = asyncio.get_running_loop().time()
    await send(ws, {"type": "chat.stop", "message_id": started["message_id"]})
    done, _ = await until(ws, "chat.done")
    assert asyncio.get_running_loop().time() - stopped_at < 1.0
    assert done["finish_reason"] == "stopped"
    reply = await db(reply_of)(started["message_id"])
    assert reply.status == "stopped" and reply.content
    assert (await asyncio.to_thread(dev_upstream.wait_for, nonce, disconnected=1))["disconnected"] == 1
    assert await db(UsageRecord.objects.filter(message_id=reply.pk, finish_reason="stopped").exists)()
    await finish(ws)


async def test_a_closed_tab_does_not_stop_the_reply(alice, dev_upstream, nonce):
    model = await model_for(dev_upstream, key=nonce, tokens=60, delay=0.01)
    ws = await connect(alice)
    await send(ws, chat_send(model.public_name))
    started, _ = await until(ws, "chat.started")
    await until(ws, "chat.delta")
    await ws.disconnect()
    await generation.wait_for_replies()
    reply = await db(reply_of)(started["message_id"])
    assert reply.status == "complete" and reply.finish_reason == "stop"
    assert dev_upstream.stats(nonce)["completed"] == 1
    assert await db(UsageRecord.objects.filter(message_id=reply.pk, usage_estimated=False).exists)()


async def test_reconnect_resumes_with_an_exact_snapshot_then_later_deltas(alice, dev_upstream, nonce):
    model = await model_for(dev_upstream, key=nonce, tokens=120, delay=0.01)
    first = await connect(alice)
    await send(first, chat_send(model.public_name))
    started, _ = await until(first, "chat.started")
    for _ in range(3):
        await until(first, "chat.delta")
    await first.disconnect()
    second = await connect(alice)
    await send(second, {"type": "chat.subscribe", "conversation_id": started["conversation_id"]})
    snapshot = await receive(second)
    assert snapshot["type"] == "chat.snapshot" and snapshot["status"] == "streaming" and snapshot["seq"] >= 3
    done, frames = await until(second, "chat.done")
    later = [f for f in frames if f["type"] == "chat.delta"]
    assert [f["seq"] for f in later] == list(range(snapshot["seq"] + 1, done["seq"] + 1))
    reply = await db(reply_of)(started["message_id"])
    assert snapshot["content"] + "".join(f["content"] for f in later) == reply.content
    await finish(second)


async def test_every_tab_of_the_user_receives_the_reply(alice, dev_upstream, nonce):
    model = await model_for(dev_upstream, key=nonce, tokens=150, delay=0.01)
    tab1 = await connect(alice)
    await send(tab1, chat_send(model.public_name))
    started, _ = await until(tab1, "chat.started")
    tab2 = await connect(alice)
    await send(tab2, {"type": "chat.subscribe", "conversation_id": started["conversation_id"]})
    done1, _ = await until(tab1, "chat.done")
    done2, _ = await until(tab2, "chat.done")
    assert done1["seq"] == done2["seq"]
    await tab2.disconnect()
    await finish(tab1)


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ("not json", "bad_request"),
        ("[1, 2]", "bad_request"),
        ('{"type": "chat.nonsense"}', "bad_request"),
        ('{"type": "chat.send", "model": "x"}', "bad_request"),
        ('{"type": "chat.stop", "message_id": "42"}', "bad_request"),
        ('{"type": "chat.subscribe", "conversation_id": -1}', "bad_request"),
        ('{"type": "chat.send", "content": "hi", "model": "nope/none"}', "not_found"),
    ],
)
async def test_malformed_frames_get_chat_error_and_the_socket_stays_open(alice, frame, code):
    ws = await connect(alice)
    await send(ws, frame)
    error = await receive(ws)
    assert error["type"] == "chat.error" and error["code"] == code and error["message"]
    await send(ws, "{}")
    assert (await receive(ws))["type"] == "chat.error"  # still answering
    await ws.disconnect()


async def test_bad_params_are_refused_before_anything_is_stored(alice, dev_upstream, nonce):
    model = await model_for(dev_upstream, key=nonce)
    ws = await connect(alice)
    await send(ws, chat_send(model.public_name, params={"temperature": 5}))
    error = await receive(ws)
    assert (
        error["code"] == "bad_request" and "temperature" in error["message"] and error["request_id"] == "r1"
    )
    assert not await db(Message.objects.exists)()
    assert dev_upstream.stats(nonce)["requests"] == 0
    await ws.disconnect()


async def test_another_users_ids_are_not_found_for_every_command(alice, bob, dev_upstream, nonce):
    model = await model_for(dev_upstream, key=nonce, tokens=200, delay=0.01)
    bob_ws = await connect(bob)
    await send(bob_ws, chat_send(model.public_name, "bob's secret"))
    bobs, _ = await until(bob_ws, "chat.started")
    alice_ws = await connect(alice)
    frames = [
        {**chat_send(model.public_name), "conversation_id": bobs["conversation_id"]},
        {"type": "chat.stop", "message_id": bobs["message_id"]},
        {"type": "chat.regenerate", "message_id": bobs["message_id"], "request_id": "x"},
        {"type": "chat.subscribe", "conversation_id": bobs["conversation_id"]},
        {"type": "chat.edit", "message_id": bobs["user_message_id"], "content": "mine now"},
        {**chat_send(model.public_name), "parent_id": bobs["user_message_id"], "conversation_id": None},
    ]
    for frame in frames:
        await send(alice_ws, frame)
        answer = await receive(alice_ws)
        assert answer["type"] == "chat.error" and answer["code"] == "not_found", (frame, answer)
    done, _ = await until(bob_ws, "chat.done")
    assert done["finish_reason"] == "stop"  # alice's stop did nothing
    assert await alice_ws.receive_nothing(timeout=0.2)  # and she saw none of bob's reply
    await alice_ws.disconnect()
    await finish(bob_ws)


async def test_anonymous_and_foreign_origin_sockets_are_refused(alice):
    from channels.testing import WebsocketCommunicator

    from chatweb.asgi import application

    anonymous = WebsocketCommunicator(application, "/ws/chat/", headers=[ORIGIN])
    connected, _ = await anonymous.connect()
    assert not connected
    await anonymous.disconnect()  # let the refused application end in this test's event loop
    foreign = WebsocketCommunicator(application, "/ws/chat/", headers=[(b"origin", b"http://evil.example")])
    connected, _ = await foreign.connect()
    assert not connected
    await foreign.disconnect()


async def test_a_session_ended_by_a_password_change_or_a_disabled_account_cannot_open_a_socket(alice):
    """The session's user is read afresh for every socket (chatweb/wsauth.py), with Django's session hash check."""
    from asgiref.sync import sync_to_async
    from channels.testing import WebsocketCommunicator

    from chatweb.asgi import application
    from tests.chat_helpers import _session_cookie

    async def opens(cookie: str) -> bool:
        socket = WebsocketCommunicator(application, "/ws/chat/", headers=[ORIGIN, (b"cookie", cookie.encode())])
        connected, _ = await socket.connect()
        await socket.disconnect()
        return connected

    cookie = f"{settings.SESSION_COOKIE_NAME}={await sync_to_async(_session_cookie)(alice)}"
    assert await opens(cookie)
    alice.set_password("a new password, not the old one")
    await alice.asave()
    assert not await opens(cookie)  # the session's hash no longer matches
    cookie = f"{settings.SESSION_COOKIE_NAME}={await sync_to_async(_session_cookie)(alice)}"
    assert await opens(cookie)
    alice.is_active = False
    await alice.asave()
    assert not await opens(cookie)


async def test_regenerate_keeps_the_old_reply_as_a_sibling(alice, dev_upstream, nonce):
    model = await model_for(dev_upstream, key=nonce, tokens=10)
    ws = await connect(alice)
    await send(ws, chat_send(model.public_name))
    first, _ = await until(ws, "chat.started")
    await until(ws, "chat.done")
    await send(ws, {"type": "chat.regenerate", "message_id": first["message_id"], "request_id": "r2"})
    second, _ = await until(ws, "chat.started")
    await until(ws, "chat.done", message_id=second["message_id"])
    old, new = await db(reply_of)(first["message_id"]), await db(reply_of)(second["message_id"])
    assert (
        old.parent_id == new.parent_id == first["user_message_id"] and old.status == new.status == "complete"
    )
    assert second["request_id"] == "r2"
    assert (await db(Conversation.objects.get)(pk=first["conversation_id"])).active_leaf_id == new.pk
    await finish(ws)


async def test_edit_and_resend_branches_the_conversation(alice, dev_upstream, nonce):
    model = await model_for(dev_upstream, key=nonce, tokens=5)
    ws = await connect(alice)
    await send(ws, chat_send(model.public_name, "original"))
    first, _ = await until(ws, "chat.started")
    await until(ws, "chat.done")
    await send(
        ws,
        {"type": "chat.edit", "message_id": first["user_message_id"], "content": "edited", "request_id": "e"},
    )
    edited, _ = await until(ws, "chat.started")
    await until(ws, "chat.done", message_id=edited["message_id"])
    original = await db(Message.objects.get)(pk=first["user_message_id"])
    new = await db(Message.objects.get)(pk=edited["user_message_id"])
    assert new.content == "edited" and new.parent_id == original.parent_id is None
    assert edited["conversation_id"] == first["conversation_id"] and edited["user_content"] == "edited"
    assert await db(Message.objects.filter(pk=first["message_id"]).exists)()  # the old branch stays
    await finish(ws)


def write_counter():
    counts = {"writes": 0}

    def wrapper(execute, sql, params, many, context):
        if sql.lstrip().upper().startswith(("INSERT", "UPDATE", "DELETE")):
            counts["writes"] += 1
        return execute(sql, params, many, context)

    return counts, wrapper


async def test_no_per_token_writes_and_coalesced_deltas(alice, dev_upstream, nonce):
    model = await model_for(dev_upstream, key=nonce, tokens=600, delay=0.002)
    counts, wrapper = write_counter()
    # Every thread a reply writes from: the chat's lane (admission, the consumer's reads, the finish) and the
    # checkpointer's.
    lanes = (dblanes.chat, dblanes.checkpoints)
    for lane in lanes:  # `connection` looked up on each of those threads (each has its own)
        await lane.run(lambda: connection.execute_wrappers.append(wrapper))
    try:
        ws = await connect(alice)
        counts["writes"] = 0
        await send(ws, chat_send(model.public_name))
        done, frames = await until(ws, "chat.done")
    finally:
        for lane in lanes:
            await lane.run(lambda: connection.execute_wrappers.remove(wrapper))
    deltas = [f for f in frames if f["type"] == "chat.delta"]
    seconds = done["usage"]["duration_ms"] / 1000
    assert done["usage"]["completion_tokens"] > 500
    assert len(deltas) < 600 / 3, "deltas are coalesced, not one per token"
    # conversation (new, then its leaf and time), user message, reply, the reply's final text, ledger row and its
    # three roll-up rows: 10; plus at most about one checkpoint a second
    assert 10 <= counts["writes"] <= 10 + seconds + 1, counts
    await finish(ws)


def test_reaper_marks_a_dead_processes_reply_interrupted_and_keeps_its_text(alice, db):
    conversation = Conversation.objects.create(owner=alice, title="t")
    question = Message.objects.create(conversation=conversation, role="user", content="question")
    stale = Message.objects.create(
        conversation=conversation,
        parent=question,
        role="assistant",
        status="streaming",
        content="half an ans",
        heartbeat_at=timezone.now() - timedelta(minutes=5),
        model_name="gone/model",
    )
    fresh = Message.objects.create(
        conversation=conversation,
        parent=question,
        role="assistant",
        status="streaming",
        heartbeat_at=timezone.now(),
    )
    assert replies_reap(stale_after=timedelta(seconds=30)) == 1
    stale.refresh_from_db()
    fresh.refresh_from_db()
    assert stale.status == "interrupted" and stale.content == "half an ans" and fresh.status == "streaming"
    record = UsageRecord.objects.get(message=stale)
    assert record.usage_estimated and record.completion_tokens > 0 and record.prompt_tokens > 0
    assert replies_reap(stale_after=timedelta(seconds=30)) == 0


async def test_a_send_after_a_reply_still_being_written_is_refused_and_the_upstream_sees_what_is_stored(
    alice, dev_upstream, nonce
):
    """The history a model receives is the one the page shows: no prompt with a reply's empty text in it."""
    model = await model_for(dev_upstream, key=nonce, tokens=40, delay=0.02)
    ws = await connect(alice)
    await send(ws, chat_send(model.public_name, "first question"))
    started, _ = await until(ws, "chat.started")
    conversation_id, first_reply = started["conversation_id"], started["message_id"]
    await until(ws, "chat.delta")

    # without a parent (the active leaf is the streaming reply), and with that reply as the parent
    for extra in ({}, {"parent_id": first_reply}):
        await send(ws, chat_send(model.public_name, "too early", conversation_id=conversation_id,
                                 request_id="r2", **extra))
        error, _ = await until(ws, "chat.error")
        assert error["code"] == "reply_in_progress" and error["request_id"] == "r2"
        assert "still being written" in error["message"]
    assert not await db(Message.objects.filter(content="too early").exists)()

    # another tab: a second socket of the same user is refused the same way
    other = await connect(alice)
    await send(other, chat_send(model.public_name, "from another tab", conversation_id=conversation_id))
    error, _ = await until(other, "chat.error")
    assert error["code"] == "reply_in_progress"
    await other.disconnect()

    await until(ws, "chat.done", message_id=first_reply)
    await send(ws, chat_send(model.public_name, "second question", conversation_id=conversation_id, request_id="r3"))
    second, _ = await until(ws, "chat.started")
    assert second["request_id"] == "r3"
    await until(ws, "chat.done", message_id=second["message_id"])

    def stored_history() -> list[dict[str, str]]:
        leaf = Message.objects.get(pk=second["message_id"])
        assert leaf.parent.parent_id == first_reply
        chain = []
        node = leaf.parent
        while node is not None:
            chain.append({"role": node.role, "content": node.content})
            node = node.parent
        return chain[::-1]

    history = await db(stored_history)()
    assert [m["role"] for m in history] == ["user", "assistant", "user"]
    assert history[1]["content"]  # the first reply, whole
    received = await asyncio.to_thread(dev_upstream.received, nonce)
    assert len(received) == 2  # the refused sends never reached the upstream
    assert received[-1] == history
    await finish(ws)


async def test_a_send_while_the_last_reply_streams_is_refused_with_reply_in_progress(alice, dev_upstream, nonce):
    model = await model_for(dev_upstream, key=nonce, tokens=400, delay=0.01)
    ws = await connect(alice)
    await send(ws, chat_send(model.public_name, "Tell me a long story"))
    started, _ = await until(ws, "chat.started")
    await send(ws, chat_send(model.public_name, "And then?", request_id="r2",
                             conversation_id=started["conversation_id"]))
    error, _ = await until(ws, "chat.error")
    assert error == {"type": "chat.error", "code": "reply_in_progress", "request_id": "r2",
                     "message": "A reply is still being written; wait for it to finish or stop it."}
    assert await db(Message.objects.filter(conversation_id=started["conversation_id"]).count)() == 2
    await send(ws, {"type": "chat.stop", "message_id": started["message_id"]})
    await until(ws, "chat.done")
    await finish(ws)


def _closed_port() -> int:
    import socket

    with socket.socket() as s:  # bound, never listening: a connection there is refused
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("base_url", ["refused", "http://nonexistent.invalid/v1"])
async def test_a_reply_that_never_reached_the_provider_costs_nothing(alice, base_url, fast_backoff):
    if base_url == "refused":
        base_url = f"http://127.0.0.1:{_closed_port()}/v1"
    model = await db(make_model)(base_url, max_retries=1)
    ws = await connect(alice)
    await send(ws, chat_send(model.public_name, "Is anyone there?"))
    started, _ = await until(ws, "chat.started")
    error, _ = await until(ws, "chat.error")
    done, _ = await until(ws, "chat.done")
    assert error["code"] == "upstream_unreachable" and "could not connect" in error["message"]
    assert done["usage"]["total_tokens"] == 0 and done["usage"]["estimated_cost"] == "0"
    assert not done["usage"]["estimated"]
    record = await db(UsageRecord.objects.get)(message_id=started["message_id"])
    assert (record.prompt_tokens, record.completion_tokens, record.estimated_cost) == (0, 0, 0)
    assert not record.usage_estimated and record.finish_reason == "upstream_unreachable"
    reply = await db(reply_of)(started["message_id"])
    assert reply.status == "error" and reply.error_code == "upstream_unreachable"
    await finish(ws)
