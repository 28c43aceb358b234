"""What the chat page does besides chatting: rename, delete, search, export, switch branch, delete a message,
presets. Plain POST forms with Django's CSRF check; the page's script calls them with fetch and asks for JSON.
The actions' check/do pairs are in conversations/chat/conversations.py; these views run them and answer."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from functools import wraps
from typing import Any

from django.contrib.auth.decorators import login_required
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseBase,
    HttpResponseRedirect,
    JsonResponse,
)
from django.shortcuts import render
from django.template.defaultfilters import filesizeformat
from django.utils import timezone
from django.utils.text import slugify
from django.views.decorators.http import require_GET, require_POST

from conversations.chat import conversations as conversation_services
from conversations.chat.attachments import attachment_payload, attachments_by_message
from conversations.chat.conversations import (
    check_conversation_delete,
    check_conversation_rename,
    check_conversation_switch_branch,
    check_message_delete,
    check_preset_save,
    do_conversation_delete,
    do_conversation_rename,
    do_conversation_switch_branch,
    do_message_delete,
    do_preset_save,
)
from conversations.chat.feedback import check_feedback_give, do_feedback_give, rating_word
from conversations.chat.selectors import conversation_for, message_tree
from conversations.chat.views import decorate, sidebar_context
from conversations.errors import AdmissionError, NotFound, ReplyInProgress
from conversations.models import Attachment, Conversation, Message, Preset
from conversations.web import AuthenticatedHttpRequest

Action = Callable[..., HttpResponseBase]


def refusals(view: Action) -> Action:
    """Domain errors as the page answers them: NotFound 404, ReplyInProgress 409, any other refusal 400."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        try:
            return view(request, *args, **kwargs)
        except NotFound as exc:
            raise Http404(exc.message) from None
        except ReplyInProgress as exc:
            return _refused(request, exc.message, 409)
        except AdmissionError as exc:
            return _refused(request, exc.message, 400)

    return wrapper


def _wants_json(request: HttpRequest) -> bool:
    return "application/json" in request.headers.get("Accept", "")


def _answer(request: HttpRequest, payload: dict[str, Any], redirect_to: str) -> HttpResponseBase:
    """JSON for the page's script, a redirect for a plain form (the page works without script too)."""
    if _wants_json(request):
        return JsonResponse(payload)
    return HttpResponseRedirect(redirect_to)


def _refused(request: HttpRequest, message: str, status: int) -> HttpResponse:
    if _wants_json(request):
        return JsonResponse({"error": message}, status=status)
    return HttpResponse(message, status=status, content_type="text/plain; charset=utf-8")


def preset_payload(preset: Preset) -> dict[str, Any]:
    return {
        "id": preset.pk,
        "name": preset.name,
        "model": preset.model.public_name if preset.model else "",
        "system_prompt": preset.system_prompt,
        "params": preset.params,
    }


# --- views -------------------------------------------------------------------------------------------------
@login_required
@require_POST
@refusals
def rename(request: AuthenticatedHttpRequest, conversation_id: int) -> HttpResponseBase:
    check = check_conversation_rename(
        user=request.user, conversation_id=conversation_id, title=request.POST.get("title", "")
    )
    conversation = do_conversation_rename(check=check)
    return _answer(request, {"id": conversation.pk, "title": conversation.title}, f"/c/{conversation.pk}/")


@login_required
@require_POST
@refusals
def delete(request: AuthenticatedHttpRequest, conversation_id: int) -> HttpResponseBase:
    do_conversation_delete(check=check_conversation_delete(user=request.user, conversation_id=conversation_id))
    return _answer(request, {"deleted": conversation_id, "location": "/"}, "/")


@login_required
@require_POST
@refusals
def switch_branch(request: AuthenticatedHttpRequest, conversation_id: int) -> HttpResponseBase:
    try:
        message_id = int(request.POST.get("message_id", ""))
    except ValueError:
        return _refused(request, "message_id must be a message id.", 400)
    check = check_conversation_switch_branch(
        user=request.user, conversation_id=conversation_id, message_id=message_id
    )
    leaf = do_conversation_switch_branch(check=check)
    return _answer(request, {"active_leaf": leaf}, f"/c/{conversation_id}/")


@login_required
@require_POST
@refusals
def delete_message(request: AuthenticatedHttpRequest, conversation_id: int, message_id: int) -> HttpResponseBase:
    check = check_message_delete(user=request.user, conversation_id=conversation_id, message_id=message_id)
    leaf = do_message_delete(check=check)
    return _answer(request, {"deleted": message_id, "active_leaf": leaf}, f"/c/{conversation_id}/")


@login_required
@require_POST
@refusals
def feedback(request: AuthenticatedHttpRequest, conversation_id: int, message_id: int) -> HttpResponseBase:
    """Thumbs up or down on a reply, with an optional comment; an empty rating removes it."""
    check = check_feedback_give(
        user=request.user, conversation_id=conversation_id, message_id=message_id,
        rating=request.POST.get("rating", ""), comment=request.POST.get("comment", ""),
    )
    given = do_feedback_give(check=check)
    payload = {"message_id": message_id, "rating": rating_word(given.rating) if given else None,
               "comment": given.comment if given else ""}
    return _answer(request, payload, f"/c/{conversation_id}/")


@login_required
@require_GET
@refusals
def messages(request: AuthenticatedHttpRequest, conversation_id: int) -> HttpResponse:
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
def search(request: AuthenticatedHttpRequest) -> HttpResponse:
    """The sidebar's list for a query (title, folder name or any message's text), as HTML items; without a query,
    the whole sidebar (pinned, folders, recent by day)."""
    current = request.GET.get("current", "")
    return render(
        request,
        "partials/conversation_list.html",
        {
            **sidebar_context(request, request.GET.get("q", "")[:200]),
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


def _attachment_line(attachment: Attachment) -> str:
    size = filesizeformat(attachment.size).replace("\xa0", " ")
    return f"- Attached: {attachment.name} ({attachment.content_type}, {size})"


def export_markdown_text(conversation: Conversation, branch: list[Message]) -> str:
    attached = attachments_by_message(m.pk for m in branch if m.role == Message.Role.USER)
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
        if attached.get(message.pk):
            lines += [*(_attachment_line(a) for a in attached[message.pk]), ""]
        if message.status not in (Message.Status.COMPLETE,) and message.role == Message.Role.ASSISTANT:
            lines += [f"*({message.status})*", ""]
    return "\n".join(lines).rstrip() + "\n"


@login_required
@require_GET
@refusals
def export_markdown(request: AuthenticatedHttpRequest, conversation_id: int) -> HttpResponse:
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
    attached = attachments_by_message(m["id"] for m in messages_ if m["role"] == Message.Role.USER)
    for message in messages_:  # each file's id, name, kind, content type and size; its bytes stay on the server
        message["attachments"] = [attachment_payload(a) for a in attached.get(message["id"], [])]
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
@refusals
def export_json(request: AuthenticatedHttpRequest, conversation_id: int) -> HttpResponse:
    """Every message (all branches, with parent ids) and the branch shown, as JSON."""
    conversation = conversation_for(request.user, conversation_id)
    body = json.dumps(export_json_data(conversation), ensure_ascii=False, indent=2)
    return _attachment(body, "application/json; charset=utf-8", _export_name(conversation, "json"))


@login_required
@require_POST
@refusals
def preset_create(request: AuthenticatedHttpRequest) -> HttpResponseBase:
    try:
        params = json.loads(request.POST.get("params") or "{}")
        if not isinstance(params, dict):
            raise ValueError
    except ValueError:
        return _refused(request, "params must be a JSON object.", 400)
    check = check_preset_save(
        user=request.user,
        name=request.POST.get("name", ""),
        model=request.POST.get("model", ""),
        system_prompt=request.POST.get("system_prompt", ""),
        params=params,
    )
    return _answer(request, preset_payload(do_preset_save(check=check)), "/")


@login_required
@require_POST
@refusals
def preset_delete(request: AuthenticatedHttpRequest, preset_id: int) -> HttpResponseBase:
    conversation_services.preset_delete(user=request.user, preset_id=preset_id)
    return _answer(request, {"deleted": preset_id}, "/")
