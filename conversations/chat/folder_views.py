"""The sidebar's folders and pins over HTTP: create, rename and delete a folder, move a conversation into or out of
one, pin and unpin. POST forms with Django's CSRF check, answered like the page's other actions
(conversations/chat/conversation_views.py); the check/do pairs are in conversations/chat/folders.py."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpResponseBase
from django.views.decorators.http import require_POST

from conversations.chat.conversation_views import _answer, _refused, refusals
from conversations.chat.folders import (
    check_conversation_move,
    check_conversation_pin,
    check_folder_create,
    check_folder_delete,
    check_folder_rename,
    do_conversation_move,
    do_conversation_pin,
    do_folder_create,
    do_folder_delete,
    do_folder_rename,
)
from conversations.models import Folder
from conversations.web import AuthenticatedHttpRequest

TRUE, FALSE = ("1", "true", "on"), ("0", "false", "")


def folder_payload(folder: Folder) -> dict[str, object]:
    return {"id": folder.pk, "name": folder.name}


@login_required
@require_POST
@refusals
def folder_create(request: AuthenticatedHttpRequest) -> HttpResponseBase:
    folder = do_folder_create(check=check_folder_create(user=request.user, name=request.POST.get("name", "")))
    return _answer(request, folder_payload(folder), "/")


@login_required
@require_POST
@refusals
def folder_rename(request: AuthenticatedHttpRequest, folder_id: int) -> HttpResponseBase:
    check = check_folder_rename(user=request.user, folder_id=folder_id, name=request.POST.get("name", ""))
    return _answer(request, folder_payload(do_folder_rename(check=check)), "/")


@login_required
@require_POST
@refusals
def folder_delete(request: AuthenticatedHttpRequest, folder_id: int) -> HttpResponseBase:
    moved = do_folder_delete(check=check_folder_delete(user=request.user, folder_id=folder_id))
    return _answer(request, {"deleted": folder_id, "moved_out": moved}, "/")


@login_required
@require_POST
@refusals
def move(request: AuthenticatedHttpRequest, conversation_id: int) -> HttpResponseBase:
    """`folder`: a folder id, or empty for out of any folder."""
    raw = request.POST.get("folder", "").strip()
    if raw and not raw.isdigit():
        return _refused(request, "folder must be a folder id, or empty for none.", 400)
    check = check_conversation_move(
        user=request.user, conversation_id=conversation_id, folder_id=int(raw) if raw else None
    )
    conversation = do_conversation_move(check=check)
    return _answer(request, {"id": conversation.pk, "folder": conversation.folder_id}, f"/c/{conversation.pk}/")


@login_required
@require_POST
@refusals
def pin(request: AuthenticatedHttpRequest, conversation_id: int) -> HttpResponseBase:
    """`pinned`: 1 to pin, 0 to unpin."""
    raw = request.POST.get("pinned", "1").strip().lower()
    if raw not in TRUE + FALSE:
        return _refused(request, "pinned must be 1 or 0.", 400)
    check = check_conversation_pin(user=request.user, conversation_id=conversation_id, pinned=raw in TRUE)
    conversation = do_conversation_pin(check=check)
    return _answer(
        request, {"id": conversation.pk, "pinned": conversation.pinned_at is not None}, f"/c/{conversation.pk}/"
    )
