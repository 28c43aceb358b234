"""What the chat page does besides chatting: rename, delete, search, export, switch branch, delete a message,
presets. Plain POST forms with Django's CSRF check; the page's script calls them with fetch and asks for JSON."""

from __future__ import annotations

import json
import logging
import re
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.contrib.auth.decorators import login_required
from django.db import transaction
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseBase,
    HttpResponseRedirect,
    JsonResponse,
)
from django.shortcuts import render
from django.utils import timezone
from django.utils.text import slugify
from django.views.decorators.http import require_GET, require_POST

from conversations.catalog.access import model_for_user
from conversations.chat.groups import frame_event, user_group
from conversations.chat.selectors import MessageTree, message_tree
from conversations.chat.views import conversation_for, decorate, search_results
from conversations.models import Conversation, Message, Preset, User
from conversations.upstream.params import ParamError, validate_params

TITLE_MAX = 200
PRESET_NAME_MAX = 100
BUSY = (Message.Status.STREAMING, Message.Status.PENDING)

log = logging.getLogger(__name__)


class Refused(Exception):
    """A request that cannot be done as asked (answered 400 or 409 with this message)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


def _wants_json(request: HttpRequest) -> bool:
    return "application/json" in request.headers.get("Accept", "")


def _answer(request: HttpRequest, payload: dict[str, Any], redirect_to: str) -> HttpResponseBase:
    """JSON for the page's script, a redirect for a plain form (the page works without script too)."""
    if _wants_json(request):
        return JsonResponse(payload)
    return HttpResponseRedirect(redirect_to)


def _refused(request: HttpRequest, exc: Refused) -> HttpResponse:
    if _wants_json(request):
        return JsonResponse({"error": exc.message}, status=exc.status)
    return HttpResponse(exc.message, status=exc.status, content_type="text/plain; charset=utf-8")


# --- services ------------------------------------------------------------------------------------------------
def conversation_rename(*, user: User, conversation_id: int, title: str) -> Conversation:
    title = " ".join(title.split())[:TITLE_MAX]
    if not title:
        raise Refused("A title cannot be empty.")
    conversation = conversation_for(user, conversation_id)
    conversation.title = title
    conversation.save(update_fields=["title", "updated_at"])
    return conversation


def conversation_delete(*, user: User, conversation_id: int) -> None:
    with transaction.atomic():
        conversation = conversation_for(user, conversation_id)
        if Message.objects.filter(conversation=conversation, status__in=BUSY).exists():
            raise Refused("A reply is still being written: stop it first.", 409)
        conversation.delete()


def _conversation_tree(user: User, conversation_id: int, message_id: int) -> tuple[Conversation, MessageTree]:
    """The user's conversation and its message tree; 404 unless `message_id` is one of its messages."""
    conversation = conversation_for(user, conversation_id)
    tree = message_tree(conversation.pk)
    if message_id not in tree.nodes:
        raise Http404("No such message.")
    return conversation, tree


def conversation_switch_branch(*, user: User, conversation_id: int, message_id: int) -> int:
    """Show the newest line below `message_id` (a version of a message); returns the new active leaf."""
    with transaction.atomic():
        conversation, tree = _conversation_tree(user, conversation_id, message_id)
        leaf = tree.newest_leaf(message_id)
        Conversation.objects.filter(pk=conversation.pk).update(active_leaf_id=leaf)
    return leaf


def message_delete(*, user: User, conversation_id: int, message_id: int) -> int | None:
    """Delete a message and every message below it; the branch shown becomes the newest line left beside it.
    Returns the new active leaf."""
    with transaction.atomic():
        conversation, tree = _conversation_tree(user, conversation_id, message_id)
        doomed = tree.subtree_ids(message_id)
        if any(tree.nodes[pk].status in BUSY for pk in doomed):
            raise Refused("A reply there is still being written: stop it first.", 409)
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


def preset_save(*, user: User, name: str, model: str, system_prompt: str, params: dict[str, Any]) -> Preset:
    """Create the user's preset of that name, or replace it."""
    name = " ".join(name.split())
    if not name or len(name) > PRESET_NAME_MAX:
        raise Refused(f"A preset needs a name of 1 to {PRESET_NAME_MAX} characters.")
    try:
        cleaned = validate_params(params)
    except ParamError as exc:
        raise Refused(str(exc)) from None
    found = model_for_user(user, model) if model else None
    if model and found is None:
        raise Refused(f"No model named {model!r} is available to you.")
    preset, _ = Preset.objects.update_or_create(
        owner=user, name=name, defaults={"model": found, "system_prompt": system_prompt, "params": cleaned}
    )
    return preset


def preset_payload(preset: Preset) -> dict[str, Any]:
    return {
        "id": preset.pk,
        "name": preset.name,
        "model": preset.model.public_name if preset.model else "",
        "system_prompt": preset.system_prompt,
        "params": preset.params,
    }


def tell_user_tabs(user_id: int, payload: dict[str, Any]) -> None:
    """Send a frame to every open tab of this user (their sidebars and, where it is open, the conversation).
    A channel layer that cannot be reached costs the other tabs this news, never the change itself."""
    try:
        async_to_sync(get_channel_layer().group_send)(user_group(user_id), frame_event(payload, message_id=0))
    except Exception:
        log.warning("could not tell the tabs of user %s about %s", user_id, payload["type"], exc_info=True)


# --- views -------------------------------------------------------------------------------------------------
@login_required
@require_POST
def rename(request: HttpRequest, conversation_id: int) -> HttpResponseBase:
    try:
        conversation = conversation_rename(
            user=request.user, conversation_id=conversation_id, title=request.POST.get("title", "")
        )
    except Refused as exc:
        return _refused(request, exc)
    tell_user_tabs(
        request.user.pk, {"type": "chat.title", "conversation_id": conversation.pk, "title": conversation.title}
    )
    return _answer(request, {"id": conversation.pk, "title": conversation.title}, f"/c/{conversation.pk}/")


@login_required
@require_POST
def delete(request: HttpRequest, conversation_id: int) -> HttpResponseBase:
    try:
        conversation_delete(user=request.user, conversation_id=conversation_id)
    except Refused as exc:
        return _refused(request, exc)
    tell_user_tabs(request.user.pk, {"type": "chat.deleted", "conversation_id": conversation_id})
    return _answer(request, {"deleted": conversation_id, "location": "/"}, "/")


@login_required
@require_POST
def switch_branch(request: HttpRequest, conversation_id: int) -> HttpResponseBase:
    try:
        message_id = int(request.POST.get("message_id", ""))
    except ValueError:
        return _refused(request, Refused("message_id must be a message id."))
    leaf = conversation_switch_branch(user=request.user, conversation_id=conversation_id, message_id=message_id)
    return _answer(request, {"active_leaf": leaf}, f"/c/{conversation_id}/")


@login_required
@require_POST
def delete_message(request: HttpRequest, conversation_id: int, message_id: int) -> HttpResponseBase:
    try:
        leaf = message_delete(user=request.user, conversation_id=conversation_id, message_id=message_id)
    except Refused as exc:
        return _refused(request, exc)
    return _answer(request, {"deleted": message_id, "active_leaf": leaf}, f"/c/{conversation_id}/")


@login_required
@require_GET
def messages(request: HttpRequest, conversation_id: int) -> HttpResponse:
    """Rendered messages, as on the page: `?ids=1,2` those (e.g. a reply that has just finished, with its
    versions), else the branch shown."""
    conversation = conversation_for(request.user, conversation_id)
    tree = message_tree(conversation.pk)
    wanted = [int(x) for x in re.findall(r"\d+", request.GET.get("ids", ""))[:50]]
    if wanted:
        found = Message.objects.filter(conversation=conversation, pk__in=wanted).in_bulk()
        chosen = [found[pk] for pk in wanted if pk in found]
    else:
        ids = tree.branch_ids(conversation.active_leaf_id)
        found = Message.objects.filter(conversation=conversation, pk__in=ids).in_bulk()
        chosen = [found[pk] for pk in ids if pk in found]
    return render(request, "partials/messages.html", {"chat_messages": decorate(chosen, tree)})


@login_required
@require_GET
def search(request: HttpRequest) -> HttpResponse:
    """The sidebar's list for a query (title or any message's text), as HTML items."""
    query = request.GET.get("q", "")[:200]
    current = request.GET.get("current", "")
    return render(
        request,
        "partials/conversation_list.html",
        {
            "conversations": search_results(request.user, query),
            "query": query,
            "current_id": int(current) if current.isdigit() else None,
        },
    )


def _export_name(conversation: Conversation, extension: str) -> str:
    slug = slugify(conversation.title)[:50] or "conversation"
    return f"chatweb-{conversation.pk}-{slug}.{extension}"


def _attachment(body: str, content_type: str, filename: str) -> HttpResponse:
    response = HttpResponse(body, content_type=content_type)
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


def export_markdown_text(conversation: Conversation, branch: list[Message]) -> str:
    lines = [f"# {conversation.title or 'Conversation'}", ""]
    if conversation.model:
        lines += [f"Model: {conversation.model.public_name}  "]
    lines += [f"Exported: {timezone.now():%Y-%m-%d %H:%M} UTC", ""]
    if conversation.system_prompt:
        lines += ["## System prompt", "", conversation.system_prompt, ""]
    for message in branch:
        if message.role == Message.Role.USER:
            lines += ["## You", ""]
        else:
            lines += [f"## Assistant ({message.model_name})" if message.model_name else "## Assistant", ""]
            if message.reasoning:
                quoted = [f"> {line}".rstrip() for line in message.reasoning.splitlines()]
                lines += ["> **Reasoning**", ">", *quoted, ""]
        lines += [message.content, ""]
        if message.status not in (Message.Status.COMPLETE,) and message.role == Message.Role.ASSISTANT:
            lines += [f"*({message.status})*", ""]
    return "\n".join(lines).rstrip() + "\n"


@login_required
@require_GET
def export_markdown(request: HttpRequest, conversation_id: int) -> HttpResponse:
    """The branch shown, as Markdown."""
    conversation = conversation_for(request.user, conversation_id)
    tree = message_tree(conversation.pk)
    ids = tree.branch_ids(conversation.active_leaf_id)
    found = Message.objects.filter(conversation=conversation, pk__in=ids).in_bulk()
    branch = [found[pk] for pk in ids if pk in found]
    return _attachment(
        export_markdown_text(conversation, branch), "text/markdown; charset=utf-8", _export_name(conversation, "md")
    )


def export_json_data(conversation: Conversation) -> dict[str, Any]:
    rows = Message.objects.filter(conversation=conversation).order_by("created_at", "pk")
    fields = ("id", "parent_id", "role", "content", "reasoning", "status", "finish_reason", "model_name", "created_at")
    messages_ = [{**row, "created_at": row["created_at"].isoformat()} for row in rows.values(*fields)]
    tree = message_tree(conversation.pk)
    return {
        "id": conversation.pk,
        "title": conversation.title,
        "model": conversation.model.public_name if conversation.model else None,
        "system_prompt": conversation.system_prompt,
        "params": conversation.params,
        "created_at": conversation.created_at.isoformat(),
        "updated_at": conversation.updated_at.isoformat(),
        "active_leaf_id": conversation.active_leaf_id,
        "branch": tree.branch_ids(conversation.active_leaf_id),
        "messages": messages_,
    }


@login_required
@require_GET
def export_json(request: HttpRequest, conversation_id: int) -> HttpResponse:
    """Every message (all branches, with parent ids) and the branch shown, as JSON."""
    conversation = conversation_for(request.user, conversation_id)
    body = json.dumps(export_json_data(conversation), ensure_ascii=False, indent=2)
    return _attachment(body, "application/json; charset=utf-8", _export_name(conversation, "json"))


@login_required
@require_POST
def preset_create(request: HttpRequest) -> HttpResponseBase:
    try:
        params = json.loads(request.POST.get("params") or "{}")
        if not isinstance(params, dict):
            raise ValueError
    except ValueError:
        return _refused(request, Refused("params must be a JSON object."))
    try:
        preset = preset_save(
            user=request.user,
            name=request.POST.get("name", ""),
            model=request.POST.get("model", ""),
            system_prompt=request.POST.get("system_prompt", ""),
            params=params,
        )
    except Refused as exc:
        return _refused(request, exc)
    return _answer(request, preset_payload(preset), "/")


@login_required
@require_POST
def preset_delete(request: HttpRequest, preset_id: int) -> HttpResponseBase:
    deleted, _ = Preset.objects.filter(owner=request.user, pk=preset_id).delete()
    if not deleted:
        raise Http404("No such preset.")
    return _answer(request, {"deleted": preset_id}, "/")
