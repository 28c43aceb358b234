"""How a user keeps their conversations in the sidebar: folders (create, rename, delete), moving a conversation into
or out of one, pinning; `check_x` / `do_x` pairs like the page's other actions (conversations/chat/conversations.py).

Every lookup goes through the owner's querysets, so another user's folder or conversation is simply not found.
Moving and pinning are no activity: they leave `updated_at` (the sidebar's Today / Previous 7 days) as it was.
Each change tells the user's other tabs to fetch their sidebar again (`chat.sidebar`, docs/protocol.md).
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db import IntegrityError, transaction
from django.utils import timezone

from conversations.chat.conversations import tell_user_tabs
from conversations.chat.selectors import conversation_for
from conversations.errors import BadRequest, NotFound
from conversations.models import Conversation, Folder, User

FOLDER_NAME_MAX = 100
FOLDERS_MAX = 200  # a sidebar, not a filing system: past this many a folder more helps nobody


def folder_for(user: User, folder_id: int) -> Folder:
    """The user's folder of that id, or NotFound (another user's folder is not found either)."""
    found = Folder.objects.for_user(user).filter(pk=folder_id).first()
    if found is None:
        raise NotFound("No such folder.")
    return found


def _sidebar_changed(user_id: int) -> None:
    tell_user_tabs(user_id, {"type": "chat.sidebar"})


def _clean_name(user: User, name: str, *, exclude: int | None = None) -> str:
    """The name with spaces folded; BadRequest when empty, too long, or the name of another folder of the user's
    (names are compared without case, as the database's constraint does)."""
    name = " ".join(name.split())
    if not name or len(name) > FOLDER_NAME_MAX:
        raise BadRequest(f"A folder needs a name of 1 to {FOLDER_NAME_MAX} characters.", param="name")
    taken = Folder.objects.for_user(user).filter(name__iexact=name).exclude(pk=exclude)
    if taken.exists():
        raise BadRequest(f"You already have a folder named “{name}”.", param="name")
    return name


def _taken(name: str) -> BadRequest:
    # the same name saved by another request between the check and the write (the constraint catches it)
    return BadRequest(f"You already have a folder named “{name}”.", param="name")


# --- create -------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class FolderCreateCheck:
    user: User
    name: str


def check_folder_create(*, user: User, name: str) -> FolderCreateCheck:
    """A new folder may have that name (BadRequest otherwise, or when the user has FOLDERS_MAX already)."""
    cleaned = _clean_name(user, name)
    if Folder.objects.for_user(user).count() >= FOLDERS_MAX:
        raise BadRequest(f"You have {FOLDERS_MAX} folders already: delete one first.")
    return FolderCreateCheck(user=user, name=cleaned)


def do_folder_create(*, check: FolderCreateCheck) -> Folder:
    try:
        with transaction.atomic():
            folder = Folder.objects.create(owner=check.user, name=check.name)
    except IntegrityError:
        raise _taken(check.name) from None
    _sidebar_changed(check.user.pk)
    return folder


# --- rename -------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class FolderRenameCheck:
    folder: Folder
    name: str


def check_folder_rename(*, user: User, folder_id: int, name: str) -> FolderRenameCheck:
    """The user's folder and its new name (BadRequest when empty, too long or another folder's)."""
    folder = folder_for(user, folder_id)
    return FolderRenameCheck(folder=folder, name=_clean_name(user, name, exclude=folder.pk))


def do_folder_rename(*, check: FolderRenameCheck) -> Folder:
    folder = check.folder
    folder.name = check.name
    try:
        with transaction.atomic():
            folder.save(update_fields=["name"])
    except IntegrityError:
        raise _taken(check.name) from None
    _sidebar_changed(folder.owner_id)
    return folder


# --- delete -------------------------------------------------------------------------------------------------------
def check_folder_delete(*, user: User, folder_id: int) -> Folder:
    """The user's folder."""
    return folder_for(user, folder_id)


def do_folder_delete(*, check: Folder) -> int:
    """Delete the folder; its conversations stay, out of any folder. Returns how many were moved out."""
    with transaction.atomic():
        moved = Conversation.objects.filter(folder=check).update(folder=None)
        Folder.objects.filter(pk=check.pk).delete()
    _sidebar_changed(check.owner_id)
    return moved


# --- move a conversation ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class MoveCheck:
    conversation: Conversation
    folder: Folder | None


def check_conversation_move(*, user: User, conversation_id: int, folder_id: int | None) -> MoveCheck:
    """The user's conversation and the user's folder to put it in (None: out of any folder)."""
    conversation = conversation_for(user, conversation_id)
    folder = folder_for(user, folder_id) if folder_id is not None else None
    return MoveCheck(conversation=conversation, folder=folder)


def do_conversation_move(*, check: MoveCheck) -> Conversation:
    """Put the conversation in the folder (or out of any), unless the folder was deleted meanwhile (NotFound)."""
    conversation, folder = check.conversation, check.folder
    with transaction.atomic():
        if folder is not None and not Folder.objects.select_for_update().filter(pk=folder.pk).exists():
            raise NotFound("No such folder.")
        Conversation.objects.filter(pk=conversation.pk).update(folder=folder)
    conversation.folder = folder
    _sidebar_changed(conversation.owner_id)
    return conversation


# --- pin ----------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PinCheck:
    conversation: Conversation
    pinned: bool


def check_conversation_pin(*, user: User, conversation_id: int, pinned: bool) -> PinCheck:
    """The user's conversation, to be pinned or unpinned."""
    return PinCheck(conversation=conversation_for(user, conversation_id), pinned=pinned)


def do_conversation_pin(*, check: PinCheck) -> Conversation:
    """Pin it on top of the sidebar (again: it goes first among the pinned) or unpin it."""
    conversation = check.conversation
    conversation.pinned_at = timezone.now() if check.pinned else None
    Conversation.objects.filter(pk=conversation.pk).update(pinned_at=conversation.pinned_at)
    _sidebar_changed(conversation.owner_id)
    return conversation
