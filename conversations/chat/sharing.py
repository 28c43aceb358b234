"""Share links: a read-only snapshot of a conversation's branch, readable without signing in by whoever holds
the link, revocable by its owner. The snapshot keeps each message's role and text and nothing else (no costs,
usage, model settings, reasoning, other conversations or the owner's name), so the shared page cannot show more
than the messages even if the conversation changes later."""

from __future__ import annotations

from typing import Any

from django.db import IntegrityError, transaction

from conversations.chat.selectors import conversation_branch, conversation_for
from conversations.errors import BadRequest, NotFound
from conversations.models import Message, SharedLink, User

SHOWN_ROLES = (Message.Role.USER, Message.Role.ASSISTANT)


def snapshot_messages(messages: list[Message]) -> list[dict[str, Any]]:
    """What a shared page shows of a branch: the user's and the assistant's messages, text only."""
    return [
        {"role": m.role, "content": m.content}
        for m in messages
        if m.role in SHOWN_ROLES and (m.content or m.role == Message.Role.USER)
    ]


def share_create(*, user: User, conversation_id: int) -> SharedLink:
    """A new link to a snapshot of the user's conversation's current branch (NotFound for another's)."""
    conversation = conversation_for(user, conversation_id)
    snapshot = snapshot_messages(conversation_branch(conversation))
    if not snapshot:
        raise BadRequest("There is nothing to share yet: the conversation has no messages.")
    for _ in range(3):  # a clash of 128-bit tokens does not happen; retrying costs nothing if it does
        try:
            with transaction.atomic():
                return SharedLink.objects.create(
                    owner=user,
                    conversation=conversation,
                    token=SharedLink.new_token(),
                    title=conversation.title,
                    messages=snapshot,
                )
        except IntegrityError:
            continue
    raise RuntimeError("could not draw a unique share token")


def share_revoke_all(*, user: User, conversation_id: int) -> int:
    """Revoke every link of the user's conversation (NotFound for another's); returns how many there were."""
    conversation = conversation_for(user, conversation_id)
    deleted, _ = SharedLink.objects.for_user(user).filter(conversation=conversation).delete()
    return deleted


def share_revoke(*, user: User, link_id: int) -> None:
    """Revoke one of the user's links (NotFound when there is none of that id)."""
    deleted, _ = SharedLink.objects.for_user(user).filter(pk=link_id).delete()
    if not deleted:
        raise NotFound("No such link.")


def shared_snapshot(token: str) -> SharedLink:
    """The snapshot behind a link, for anyone (NotFound once revoked or when the token is wrong)."""
    found = SharedLink.objects.filter(token=token).only("token", "title", "messages", "created_at").first()
    if found is None:
        raise NotFound("No such link.")
    return found
