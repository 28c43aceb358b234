"""Temporary chats over the websocket and the development upstream: made by `chat.send` with `temporary`, listed and
searched nowhere, never shared, deleted with their messages and files when the last socket showing them closes (after
the reply being written, which is stopped), kept while another socket shows them, reaped when their process died;
their usage stays in the ledger, the roll-ups and the month's spend."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from channels.db import database_sync_to_async
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.utils import timezone

from conversations.chat import consumers, generation
from conversations.chat.temporary import temporary_hold, temporary_reap
from conversations.models import (
    Attachment,
    Conversation,
    ConversationDay,
    Message,
    TemporaryHold,
    UsageDay,
    UsageRecord,
)
from conversations.usage.budgets import month_spend
from tests.chat.test_pages import ajax, chain, client_for
from tests.chat_helpers import chat_send, connect, make_model, send, until

db = database_sync_to_async


async def temporary_chat_replied(user, model):
    """A socket of `user` with a new temporary chat whose first reply has finished, and its `chat.started`."""
    ws = await connect(user)
    await send(ws, chat_send(model.public_name, temporary=True))
    started, _ = await until(ws, "chat.started")
    await until(ws, "chat.done")
    await generation.wait_for_replies()
    return ws, started


@pytest.fixture(autouse=True)
def no_grace(settings):
    """Deleted as the last socket closes (the grace for a reconnecting tab has its own test)."""
    settings.CHATWEB_TEMPORARY_GRACE_SECONDS = 0


def _upload(user, name: str, data: bytes) -> str:
    return client_for(user).post("/attachments/", {"file": SimpleUploadedFile(name, data)}).json()["id"]


def _state(conversation_id: int) -> dict:
    return {
        "conversation": Conversation.objects.filter(pk=conversation_id).exists(),
        "messages": Message.objects.filter(conversation_id=conversation_id).count(),
        "attachments": Attachment.objects.filter(conversation_id=conversation_id).count(),
        "holds": TemporaryHold.objects.filter(conversation_id=conversation_id).count(),
    }


def _ledger(user) -> tuple[list[UsageRecord], int, int, object]:
    return (
        list(UsageRecord.objects.filter(user=user)),
        UsageDay.objects.filter(user=user).count(),
        ConversationDay.objects.filter(user=user).count(),
        month_spend(user),
    )


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("upstream_http")
async def test_closing_the_tab_deletes_the_chat_and_its_files_and_keeps_its_usage(
    alice, dev_upstream, nonce, attachment_storage
):
    model = await db(make_model)(dev_upstream.v1(key=nonce, tokens=8))
    notes = await db(_upload)(alice, "notes.txt", b"Tides rise twice a day.")
    ws = await connect(alice)
    await send(ws, chat_send(model.public_name, "Secret plans", temporary=True, attachments=[notes]))
    started, _ = await until(ws, "chat.started")
    assert started["temporary"] is True
    done, _ = await until(ws, "chat.done")
    await generation.wait_for_replies()
    conversation_id = started["conversation_id"]
    conversation = await db(Conversation.objects.get)(pk=conversation_id)
    assert conversation.temporary
    assert await db(_state)(conversation_id) == {"conversation": True, "messages": 2, "attachments": 1, "holds": 1}
    stored = list(attachment_storage.rglob("*"))
    assert [p for p in stored if p.is_file()]
    # listed and searched nowhere, and never shared
    client = await db(client_for)(alice)
    sidebar = (await db(client.get)("/")).content.decode()
    assert "Secret plans" not in sidebar
    assert "Secret plans" not in (await db(client.get)("/search/?q=Secret")).content.decode()
    refused = await db(ajax)(client, f"/c/{conversation_id}/share/")
    assert refused.status_code == 400 and "temporary" in refused.json()["error"]
    # its own page says it is temporary
    page = (await db(client.get)(f"/c/{conversation_id}/")).content.decode()
    assert 'id="temporary-badge" role="status">' in page

    await ws.disconnect()
    assert await db(_state)(conversation_id) == {"conversation": False, "messages": 0, "attachments": 0, "holds": 0}
    assert not [p for p in attachment_storage.rglob("*") if p.is_file()]  # the file went with it
    records, days, conversation_days, spent = await db(_ledger)(alice)
    assert len(records) == 1 and records[0].conversation_id is None and records[0].message_id is None
    assert records[0].total_tokens == done["usage"]["total_tokens"] > 0
    assert records[0].estimated_cost > 0 and spent == records[0].estimated_cost
    assert days == 1 and conversation_days == 1  # the roll-ups keep it too


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("upstream_http")
async def test_a_chat_shown_in_two_tabs_is_kept_until_the_last_one_closes(alice, dev_upstream, nonce):
    model = await db(make_model)(dev_upstream.v1(key=nonce, tokens=4))
    first, started = await temporary_chat_replied(alice, model)
    second = await connect(alice)
    await send(second, {"type": "chat.subscribe", "conversation_id": started["conversation_id"]})
    await send(second, chat_send(model.public_name, "again", conversation_id=started["conversation_id"],
                                 request_id="r2"))
    await until(second, "chat.done")
    await generation.wait_for_replies()
    await first.disconnect()
    assert (await db(_state)(started["conversation_id"]))["conversation"] is True
    await second.disconnect()
    assert (await db(_state)(started["conversation_id"]))["conversation"] is False
    assert await db(UsageRecord.objects.filter(user=alice).count)() == 2


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("upstream_http")
async def test_closing_the_tab_while_a_reply_streams_stops_it_then_deletes_the_chat(alice, dev_upstream, nonce):
    model = await db(make_model)(dev_upstream.v1(key=nonce, tokens=400, delay=0.02))
    ws = await connect(alice)
    await send(ws, chat_send(model.public_name, temporary=True))
    started, _ = await until(ws, "chat.started")
    await until(ws, "chat.delta")
    await ws.disconnect()
    await generation.wait_for_replies()
    assert (await db(_state)(started["conversation_id"]))["conversation"] is False
    record = await db(UsageRecord.objects.get)(user=alice)
    assert record.finish_reason == "stopped" and record.completion_tokens < 400 and record.conversation_id is None


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("upstream_http")
async def test_ordinary_chats_stay_and_temporary_applies_to_new_chats_only(alice, dev_upstream, nonce):
    model = await db(make_model)(dev_upstream.v1(key=nonce, tokens=3))
    ws = await connect(alice)
    await send(ws, chat_send(model.public_name))
    started, _ = await until(ws, "chat.started")
    assert started["temporary"] is False
    await until(ws, "chat.done")
    await generation.wait_for_replies()
    await send(ws, chat_send(model.public_name, conversation_id=started["conversation_id"], temporary=True))
    error, _ = await until(ws, "chat.error")
    assert error["code"] == "bad_request" and "new conversation" in error["message"]
    await send(ws, chat_send(model.public_name, temporary="yes"))
    error, _ = await until(ws, "chat.error")
    assert error["code"] == "bad_request" and "`temporary`" in error["message"]
    await ws.disconnect()
    assert (await db(_state)(started["conversation_id"]))["conversation"] is True
    assert not await db(Conversation.objects.filter(temporary=True).exists)()


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("upstream_http")
async def test_bob_cannot_hold_or_see_alices_temporary_chat(alice, bob, dev_upstream, nonce):
    model = await db(make_model)(dev_upstream.v1(key=nonce, tokens=3))
    ws, started = await temporary_chat_replied(alice, model)
    intruder = await connect(bob)
    await send(intruder, {"type": "chat.subscribe", "conversation_id": started["conversation_id"]})
    error, _ = await until(intruder, "chat.error")
    assert error["code"] == "not_found"
    await send(intruder, {"type": "chat.regenerate", "message_id": started["message_id"], "request_id": "b1"})
    error, _ = await until(intruder, "chat.error")
    assert error["code"] == "not_found"
    assert (await db(_state)(started["conversation_id"]))["holds"] == 1  # alice's only
    await ws.disconnect()  # bob's socket holds nothing: the chat goes
    assert (await db(_state)(started["conversation_id"]))["conversation"] is False
    await intruder.disconnect()


async def closing(ws) -> asyncio.Future:
    """Close `ws` from the tab's side and return the closing (for the caller to await later) as soon as the server
    has handled the close, i.e. the grace of its temporary chats runs. `ws.disconnect()` alone also waits for the
    consumer to end, up to its 1 s timeout, which it then lets pass in silence: on Redis, the channel-layer
    receive that channels cancels as the consumer ends can lose that cancel (Python 3.11's `asyncio.wait_for`
    in redis-py's send swallows it) and wait on Redis instead, so it can return after a short grace is over."""
    releases = set(consumers._releasing)
    closed = asyncio.ensure_future(ws.disconnect())
    while not set(consumers._releasing) - releases:
        assert not closed.done(), "the socket closed without starting a grace"
        await asyncio.sleep(0.001)
    return closed


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("upstream_http")
async def test_a_tab_that_reconnects_within_the_grace_keeps_its_chat(alice, dev_upstream, nonce, settings):
    settings.CHATWEB_TEMPORARY_GRACE_SECONDS = 0.5
    model = await db(make_model)(dev_upstream.v1(key=nonce, tokens=3))
    ws, started = await temporary_chat_replied(alice, model)
    dropped = await closing(ws)  # a dropped connection: the page reconnects and subscribes again
    assert await db(_state)(started["conversation_id"]) == {
        "conversation": True, "messages": 2, "attachments": 0, "holds": 1  # the closed socket's, until its grace ends
    }
    again = await connect(alice)
    await send(again, {"type": "chat.subscribe", "conversation_id": started["conversation_id"]})
    await send(again, {"type": "chat.estimate", "request_id": "e1", "conversation_id": started["conversation_id"],
                       "model": model.public_name, "content": ""})
    await until(again, "chat.estimate")  # the subscribe before it has been handled
    await dropped
    await consumers.wait_for_releases()
    assert await db(_state)(started["conversation_id"]) == {
        "conversation": True, "messages": 2, "attachments": 0, "holds": 1
    }
    closed = await closing(again)  # the tab closes for good
    assert (await db(_state)(started["conversation_id"]))["conversation"] is True
    await closed
    await consumers.wait_for_releases()
    assert (await db(_state)(started["conversation_id"]))["conversation"] is False


@pytest.mark.django_db(transaction=True)
async def test_a_socket_showing_a_temporary_chat_is_not_closed_for_being_idle(alice, settings):
    settings.CHATWEB_WS_IDLE_SECONDS = 1
    conversation = await db(Conversation.objects.create)(owner=alice, temporary=True)
    idle = await connect(alice)
    holding = await connect(alice)
    await send(holding, {"type": "chat.subscribe", "conversation_id": conversation.pk})
    closed = await idle.receive_output(timeout=5)
    assert closed == {"type": "websocket.close", "code": 4408, "reason": "idle"}
    assert await holding.receive_nothing(timeout=2)
    await holding.disconnect()
    assert not await db(Conversation.objects.filter(pk=conversation.pk).exists)()


@pytest.mark.django_db
def test_a_temporary_chat_gets_no_title_call(alice, settings):
    from conversations.chat import titles

    title_model = make_model("http://127.0.0.1:9/v1", name="titler")
    settings.CHATWEB_TITLE_MODEL = title_model.public_name
    kept = Conversation.objects.create(owner=alice, title="what makes the tides")
    temporary = Conversation.objects.create(owner=alice, title="what makes the tides", temporary=True)
    _, kept_answer = chain(kept, "what makes the tides", "The moon.")
    _, temporary_answer = chain(temporary, "what makes the tides", "The moon.")
    assert titles.title_job(conversation_id=kept.pk, message_id=kept_answer.pk) is not None
    assert titles.title_job(conversation_id=temporary.pk, message_id=temporary_answer.pk) is None


@pytest.mark.django_db
def test_the_reaper_deletes_what_a_dead_process_left_and_nothing_else(alice):
    long_ago = timezone.now() - timedelta(minutes=10)
    stale = Conversation.objects.create(owner=alice, temporary=True)
    chain(stale, "q", "a")
    temporary_hold(conversation_id=stale.pk, channel_name="dead-process!1")
    fresh = Conversation.objects.create(owner=alice, temporary=True)
    temporary_hold(conversation_id=fresh.pk, channel_name="live-process!1")
    orphan = Conversation.objects.create(owner=alice, temporary=True)  # its socket never held it
    just_made = Conversation.objects.create(owner=alice, temporary=True)  # its socket is about to hold it
    streaming = Conversation.objects.create(owner=alice, temporary=True)
    Message.objects.create(conversation=streaming, role="assistant", status=Message.Status.STREAMING)
    kept = Conversation.objects.create(owner=alice)
    TemporaryHold.objects.all().update(seen_at=long_ago)
    Conversation.objects.exclude(pk=just_made.pk).update(updated_at=long_ago)

    deleted = temporary_reap(stale_after=timedelta(minutes=1), alive=["live-process!1"])
    assert deleted == 2
    left = set(Conversation.objects.values_list("pk", flat=True))
    assert left == {fresh.pk, just_made.pk, streaming.pk, kept.pk} and orphan.pk not in left
    assert list(TemporaryHold.objects.values_list("channel_name", flat=True)) == ["live-process!1"]
    assert not Message.objects.filter(conversation_id=stale.pk).exists()


@pytest.mark.django_db
def test_a_temporary_chat_is_not_shown_in_the_sidebar_but_opens_for_its_owner_only(alice, bob):
    temporary = Conversation.objects.create(owner=alice, title="EPHEMERAL", temporary=True)
    chain(temporary, "q", "a")
    Conversation.objects.create(owner=alice, title="KEPT")
    html = client_for(alice).get("/").content.decode()
    assert "KEPT" in html and "EPHEMERAL" not in html
    page = client_for(alice).get(f"/c/{temporary.pk}/").content.decode()
    assert "Temporary chat" in page and 'id="share-button" aria-controls="share-panel" hidden' in page
    assert client_for(bob).get(f"/c/{temporary.pk}/").status_code == 404
    assert Client().get(f"/c/{temporary.pk}/").status_code == 302
    new_chat = client_for(alice).get("/").content.decode()
    assert 'id="temporary-toggle"' in new_chat


@pytest.mark.django_db
def test_the_reaper_writes_nothing_when_there_is_nothing_to_reap(alice):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    Conversation.objects.create(owner=alice, title="kept")
    with CaptureQueriesContext(connection) as queries:
        assert temporary_reap(stale_after=timedelta(seconds=60)) == 0
    assert not [q for q in queries if q["sql"].lstrip().upper().startswith(("INSERT", "UPDATE", "DELETE"))]
