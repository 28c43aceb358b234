"""The checkpoint never waits for a reply being finished: a row a finish holds locked is skipped (PostgreSQL's
row locks; SQLite locks the whole database and has no such wait)."""

from __future__ import annotations

import threading

import pytest
from django.db import connection, connections, transaction

from conversations.chat.replies import replies_checkpoint
from conversations.models import Conversation, Message, User

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_checkpoint_skips_the_row_a_finish_holds_and_writes_the_others() -> None:
    if not connection.features.has_select_for_update_skip_locked:
        pytest.skip("row locks that a checkpoint could wait on are PostgreSQL's")
    owner = User.objects.create(username="alice")
    conversation = Conversation.objects.create(owner=owner)
    finishing, streaming = (
        Message.objects.create(conversation=conversation, role="assistant", status=Message.Status.STREAMING)
        for _ in range(2)
    )
    locked, release, done = threading.Event(), threading.Event(), threading.Event()

    def finish_holding_its_row() -> None:
        try:
            with transaction.atomic():
                Message.objects.select_for_update().filter(pk=finishing.pk).update(content="final")
                locked.set()
                release.wait(10)
        finally:
            connections.close_all()

    def checkpoint() -> None:
        try:
            replies_checkpoint(
                partial=[(finishing.pk, "so far", "", 3), (streaming.pk, "so far", "", 3)],
                alive=[finishing.pk, streaming.pk],
            )
            done.set()
        finally:
            connections.close_all()

    holder = threading.Thread(target=finish_holding_its_row)
    holder.start()
    assert locked.wait(10)
    writer = threading.Thread(target=checkpoint)
    writer.start()
    finished_while_held = done.wait(5)
    release.set()
    holder.join(10)
    writer.join(10)
    assert finished_while_held, "the checkpoint waited for the finishing reply's row"
    streaming.refresh_from_db()
    finishing.refresh_from_db()
    assert (streaming.content, streaming.seq) == ("so far", 3) and streaming.heartbeat_at is not None
    assert finishing.content == "final"  # the finish's text, never overwritten by the checkpoint's older one
