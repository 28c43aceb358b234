"""What the chat page does to a conversation besides chatting, as `check_x` / `do_x` pairs like the admission's
(conversations/chat/admission.py): rename, delete, switch branch, delete a message, save a preset.

A check only reads and raises domain errors (conversations/errors.py); its do writes in one transaction,
re-verifying under the conversation's lock what a reply starting meanwhile could change. The page views
(conversations/chat/conversation_views.py) run both and answer the errors as 400, 404 or 409.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction
from django.utils import timezone

from conversations.catalog.access import model_for_user
from conversations.chat.groups import frame_event, user_group
from conversations.chat.selectors import MessageTree, conversation_for, message_tree
from conversations.errors import BadRequest, NotFound, ReplyInProgress
from conversations.models import Conversation, Message, Model, Preset, User
from conversations.upstream.params import ParamError, validate_params

TITLE_MAX = 200
PRESET_NAME_MAX = 100
BUSY = (Message.Status.STREAMING, Message.Status.PENDING)

log = logging.getLogger(__name__)


def tell_user_tabs(user_id: int, payload: dict[str, Any]) -> None:
    """Send a frame to every open tab of this user (their sidebars and, where it is open, the conversation).
    A channel layer that cannot be reached costs the other tabs this news, never the change itself."""
    layer = get_channel_layer()
    if layer is None:  # no channel layer configured: no other tab can be listening
        return
    try:
        async_to_sync(layer.group_send)(user_group(user_id), frame_event(payload, message_id=0))
    except Exception:
        log.warning("could not tell the tabs of user %s about %s", user_id, payload["type"], exc_info=True)


# --- rename -------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RenameCheck:
    conversation: Conversation
    title: str


def check_conversation_rename(*, user: User, conversation_id: int, title: str) -> RenameCheck:
    """The user's conversation and its new title, spaces folded (BadRequest when empty)."""
    title = " ".join(title.split())[:TITLE_MAX]
    if not title:
        raise BadRequest("A title cannot be empty.", param="title")
    return RenameCheck(conversation=conversation_for(user, conversation_id), title=title)


def do_conversation_rename(*, check: RenameCheck) -> Conversation:
    """Store the new title."""
    conversation = check.conversation
    conversation.title = check.title
    conversation.save(update_fields=["title", "updated_at"])
    tell_user_tabs(
        conversation.owner_id, {"type": "chat.title", "conversation_id": conversation.pk, "title": conversation.title}
    )
    return conversation


# --- delete -------------------------------------------------------------------------------------------------
def _idle(conversation_id: int) -> None:
    if Message.objects.filter(conversation_id=conversation_id, status__in=BUSY).exists():
        raise ReplyInProgress("A reply is still being written: stop it first.")


def check_conversation_delete(*, user: User, conversation_id: int) -> Conversation:
    """The user's conversation, with no reply being written (ReplyInProgress)."""
    conversation = conversation_for(user, conversation_id)
    _idle(conversation.pk)
    return conversation


def do_conversation_delete(*, check: Conversation) -> None:
    """Delete the conversation and its messages, unless a reply started meanwhile; tell the user's other tabs."""
    conversation_id = check.pk
    with transaction.atomic():
        if not Conversation.objects.select_for_update().filter(pk=check.pk).exists():
            return  # deleted meanwhile: nothing left to do
        _idle(check.pk)
        check.delete()
    tell_user_tabs(check.owner_id, {"type": "chat.deleted", "conversation_id": conversation_id})


# --- switch branch --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class BranchCheck:
    conversation: Conversation
    tree: MessageTree
    message_id: int


def _conversation_tree(user: User, conversation_id: int, message_id: int) -> BranchCheck:
    """The user's conversation and its message tree; NotFound unless `message_id` is one of its messages."""
    conversation = conversation_for(user, conversation_id)
    tree = message_tree(conversation.pk)
    if message_id not in tree.nodes:
        raise NotFound("No such message.")
    return BranchCheck(conversation=conversation, tree=tree, message_id=message_id)


def check_conversation_switch_branch(*, user: User, conversation_id: int, message_id: int) -> BranchCheck:
    """The user's conversation, holding that message."""
    return _conversation_tree(user, conversation_id, message_id)


def do_conversation_switch_branch(*, check: BranchCheck) -> int:
    """Show the newest line below the message (a version of a message); returns the new active leaf."""
    leaf = check.tree.newest_leaf(check.message_id)
    Conversation.objects.filter(pk=check.conversation.pk).update(active_leaf_id=leaf)
    return leaf


# --- delete a message ---------------------------------------------------------------------------------------
def _no_busy_below(tree: MessageTree, message_id: int) -> list[int]:
    doomed = tree.subtree_ids(message_id)
    if any(tree.nodes[pk].status in BUSY for pk in doomed):
        raise ReplyInProgress("A reply there is still being written: stop it first.")
    return doomed


def check_message_delete(*, user: User, conversation_id: int, message_id: int) -> BranchCheck:
    """The user's conversation holds the message, and no reply below it is being written."""
    check = _conversation_tree(user, conversation_id, message_id)
    _no_busy_below(check.tree, message_id)
    return check


def do_message_delete(*, check: BranchCheck) -> int | None:
    """Delete the message and every message below it; the branch shown becomes the newest line left beside it.
    Returns the new active leaf."""
    conversation, message_id = check.conversation, check.message_id
    with transaction.atomic():
        Conversation.objects.select_for_update().filter(pk=conversation.pk).exists()
        tree = message_tree(conversation.pk)  # again, under the lock: a reply may have started meanwhile
        if message_id not in tree.nodes:
            raise NotFound("No such message.")
        doomed = _no_busy_below(tree, message_id)
        parent_id = tree.nodes[message_id].parent_id
        Message.objects.filter(conversation=conversation, pk__in=doomed).delete()
        tree = message_tree(conversation.pk)
        if parent_id is not None:
            leaf: int | None = tree.newest_leaf(parent_id)
        else:
            roots = tree.children.get(None, [])
            leaf = tree.newest_leaf(roots[-1]) if roots else None
        Conversation.objects.filter(pk=conversation.pk).update(active_leaf_id=leaf, updated_at=timezone.now())
    return leaf


# --- presets ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PresetCheck:
    user: User
    name: str
    model: Model | None
    system_prompt: str
    params: dict[str, Any]


def check_preset_save(*, user: User, name: str, model: str, system_prompt: str, params: dict[str, Any]) -> PresetCheck:
    """A preset may be saved: a name, valid parameters, a model usable by the user (or none)."""
    name = " ".join(name.split())
    if not name or len(name) > PRESET_NAME_MAX:
        raise BadRequest(f"A preset needs a name of 1 to {PRESET_NAME_MAX} characters.", param="name")
    try:
        cleaned = validate_params(params)
    except ParamError as exc:
        raise BadRequest(str(exc), param="params") from None
    found = model_for_user(user, model) if model else None
    if model and found is None:
        raise BadRequest(f"No model named {model!r} is available to you.", param="model")
    return PresetCheck(user=user, name=name, model=found, system_prompt=system_prompt, params=cleaned)


def do_preset_save(*, check: PresetCheck) -> Preset:
    """Create the user's preset of that name, or replace it."""
    preset, _ = Preset.objects.update_or_create(
        owner=check.user, name=check.name,
        defaults={"model": check.model, "system_prompt": check.system_prompt, "params": check.params},
    )
    return preset


def preset_delete(*, user: User, preset_id: int) -> None:
    """Delete the user's preset (NotFound when there is none of that id)."""
    deleted, _ = Preset.objects.for_user(user).filter(pk=preset_id).delete()
    if not deleted:
        raise NotFound("No such preset.")
