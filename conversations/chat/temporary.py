"""Temporary chats: a conversation kept only while a tab shows it. Each open websocket showing one holds it (a
TemporaryHold row); when the last socket lets go, the conversation is deleted with its messages and attachments,
or, when a reply is still being written, once that reply ends. The periodic reaper refreshes the holds of this
process's sockets and deletes what a process that died left behind. The ledger keeps the conversation's usage:
its rows point at the conversation with SET_NULL, so money spent is never forgotten."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from conversations.models import Conversation, Message, TemporaryHold

log = logging.getLogger(__name__)

BUSY = (Message.Status.STREAMING, Message.Status.PENDING)

# The sockets of this process holding temporary conversations: channel name -> conversation ids. The reaper
# refreshes their holds; a hold nobody refreshes belongs to a process that died. Written on the database lanes'
# threads, read by the reaper on the event loop: under a lock.
_held_here: dict[str, set[int]] = {}
_held_lock = threading.Lock()


def held_here() -> list[str]:
    """Channel names of this process's sockets that hold a temporary conversation."""
    with _held_lock:
        return [name for name, ids in _held_here.items() if ids]


def temporary_hold(*, conversation_id: int, channel_name: str) -> None:
    """The socket `channel_name` shows this temporary conversation: keep it while the socket is open."""
    TemporaryHold.objects.update_or_create(
        conversation_id=conversation_id, channel_name=channel_name, defaults={"seen_at": timezone.now()}
    )
    with _held_lock:
        _held_here.setdefault(channel_name, set()).add(conversation_id)


@dataclass(frozen=True)
class Released:
    deleted: list[int]  # conversations deleted now
    streaming: list[int]  # replies still being written in conversations nobody holds: stop them; their end deletes


def _delete_unheld(conversation_id: int) -> list[int] | None:
    """In one transaction: delete the temporary conversation unless a socket holds it. Returns None when it was
    deleted (or is gone), else the ids of its replies still being written (it is deleted once they end)."""
    with transaction.atomic():
        locked = Conversation.objects.select_for_update().filter(pk=conversation_id, temporary=True)
        if not locked.exists():
            return None
        if TemporaryHold.objects.filter(conversation_id=conversation_id).exists():
            return []
        busy = list(
            Message.objects.filter(conversation_id=conversation_id, status__in=BUSY).values_list("pk", flat=True)
        )
        if busy:
            return busy
        # Deleting through the ORM: the attachments' rows go by cascade and their files once this commits.
        Conversation.objects.filter(pk=conversation_id).delete()
    return None


def temporary_release(*, channel_name: str, conversation_ids: Iterable[int]) -> Released:
    """The socket closed: drop its holds and delete each of those conversations no other socket holds."""
    ids = sorted(set(conversation_ids))
    with _held_lock:
        _held_here.pop(channel_name, None)
    TemporaryHold.objects.filter(channel_name=channel_name, conversation_id__in=ids).delete()
    deleted, streaming = [], []
    for conversation_id in ids:
        busy = _delete_unheld(conversation_id)
        if busy is None:
            deleted.append(conversation_id)
        else:
            streaming.extend(busy)
    return Released(deleted=deleted, streaming=streaming)


def temporary_reply_ended(*, conversation_id: int) -> bool:
    """A reply of a temporary conversation ended: delete the conversation if no socket holds it any more.
    Returns whether it is gone."""
    return _delete_unheld(conversation_id) is None


def temporary_reap(*, stale_after: timedelta, alive: Iterable[str] = ()) -> int:
    """Refresh the holds of this process's live sockets (`alive`), drop holds nobody refreshed for `stale_after`
    (their process died), and delete the temporary conversations left unheld and untouched that long.
    Returns how many conversations were deleted."""
    now = timezone.now()
    alive = list(alive)
    # Reads only, unless there is something to refresh or reap: the reaper runs every few seconds in every process.
    if alive:
        TemporaryHold.objects.filter(channel_name__in=alive).update(seen_at=now)
    stale = list(TemporaryHold.objects.filter(seen_at__lt=now - stale_after).values_list("pk", flat=True)[:1000])
    if stale:
        TemporaryHold.objects.filter(pk__in=stale).delete()
    orphans = list(
        Conversation.objects.filter(temporary=True, updated_at__lt=now - stale_after, holds__isnull=True)
        .values_list("pk", flat=True)[:500]
    )
    deleted = sum(1 for conversation_id in orphans if _delete_unheld(conversation_id) is None)
    if deleted:
        log.info("deleted %d temporary conversations no tab held", deleted)
    return deleted
