"""Share links: a read-only snapshot of a conversation's branch, readable without signing in by whoever holds
the link, revocable by its owner. The snapshot keeps each message's role and text and nothing else (no costs,
usage, model settings, reasoning, other conversations or the owner's name), so the shared page cannot show more
than the messages even if the conversation changes later. The messages' files appear only when the owner asks
for them: then the link numbers them and serves them itself (`shared_file`), for as long as the link lives."""

from __future__ import annotations

from typing import Any

from django.db import IntegrityError, transaction

from conversations.chat.attachments import attachments_by_message
from conversations.chat.selectors import conversation_branch, conversation_for
from conversations.errors import BadRequest, NotFound
from conversations.models import Attachment, Message, SharedAttachment, SharedLink, User

SHOWN_ROLES = (Message.Role.USER, Message.Role.ASSISTANT)


def snapshot_messages(
    messages: list[Message], files: dict[int, list[Attachment]] | None = None
) -> tuple[list[dict[str, Any]], list[Attachment]]:
    """What a shared page shows of a branch: the user's and the assistant's messages, text only; with `files`
    (each message's attachments), the user's messages also name theirs by number. Returns the snapshot and the
    attachments in the order of their numbers (from 1)."""
    snapshot: list[dict[str, Any]] = []
    shown: list[Attachment] = []
    for m in messages:
        if m.role not in SHOWN_ROLES or not (m.content or m.role == Message.Role.USER):
            continue
        entry: dict[str, Any] = {"role": m.role, "content": m.content}
        if files is not None and m.role == Message.Role.USER and files.get(m.pk):
            entry["attachments"] = []
            for attachment in files[m.pk]:
                shown.append(attachment)
                entry["attachments"].append({
                    "number": len(shown), "name": attachment.name, "kind": attachment.kind,
                    "size": attachment.size,
                })
        snapshot.append(entry)
    return snapshot, shown


def share_create(*, user: User, conversation_id: int, include_attachments: bool = False) -> SharedLink:
    """A new link to a snapshot of the user's conversation's current branch (NotFound for another's), with the
    messages' files when `include_attachments`."""
    conversation = conversation_for(user, conversation_id)
    if conversation.temporary:
        raise BadRequest("A temporary chat cannot be shared: it is not kept.")
    branch = conversation_branch(conversation)
    files = None
    if include_attachments:
        files = attachments_by_message(
            m.pk for m in branch if m.role == Message.Role.USER and getattr(m, "has_attachments", False)
        )
    snapshot, shown = snapshot_messages(branch, files)
    if not snapshot:
        raise BadRequest("There is nothing to share yet: the conversation has no messages.")
    for _ in range(3):  # a clash of 128-bit tokens does not happen; retrying costs nothing if it does
        try:
            with transaction.atomic():
                link = SharedLink.objects.create(
                    owner=user,
                    conversation=conversation,
                    token=SharedLink.new_token(),
                    title=conversation.title,
                    messages=snapshot,
                    include_attachments=include_attachments,
                )
                SharedAttachment.objects.bulk_create(
                    SharedAttachment(link=link, attachment=a, number=n) for n, a in enumerate(shown, start=1)
                )
                return link
        except IntegrityError:
            continue
    raise RuntimeError("could not draw a unique share token")


def share_revoke_all(*, user: User, conversation_id: int) -> int:
    """Revoke every link of the user's conversation (NotFound for another's); returns how many there were."""
    conversation = conversation_for(user, conversation_id)
    _, deleted = SharedLink.objects.for_user(user).filter(conversation=conversation).delete()
    return deleted.get(SharedLink._meta.label, 0)  # the links alone, not the rows of their files


def share_revoke(*, user: User, link_id: int) -> None:
    """Revoke one of the user's links (NotFound when there is none of that id)."""
    deleted, _ = SharedLink.objects.for_user(user).filter(pk=link_id).delete()
    if not deleted:
        raise NotFound("No such link.")


def shared_snapshot(token: str) -> SharedLink:
    """The snapshot behind a link, for anyone (NotFound once revoked or when the token is wrong)."""
    found = (
        SharedLink.objects.filter(token=token)
        .only("token", "title", "messages", "include_attachments", "created_at").first()
    )
    if found is None:
        raise NotFound("No such link.")
    return found


def shared_file(token: str, number: int) -> Attachment:
    """File `number` of a link that shares its files, for anyone holding the link (NotFound otherwise, and once
    the link is revoked)."""
    found = (
        SharedAttachment.objects.filter(link__token=token, link__include_attachments=True, number=number)
        .select_related("attachment").first()
    )
    if found is None:
        raise NotFound("No such file.")
    return found.attachment
