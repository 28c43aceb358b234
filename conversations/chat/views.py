"""The chat pages: `/` (a new chat) and `/c/<id>/` (a conversation rendered server-side), and what they share
with the fragments the page fetches (conversations/chat/conversation_views.py)."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpResponse
from django.shortcuts import render

from conversations.catalog.access import models_for_user
from conversations.catalog.defaults import chat_default_model, picker_groups
from conversations.chat.attachments import attachments_by_message
from conversations.chat.commands import MAX_CONTENT_CHARS
from conversations.chat.feedback import feedback_by_message, rating_word
from conversations.chat.rendering import messages_render, policy
from conversations.chat.replies import usage_payload
from conversations.chat.selectors import (
    MessageTree,
    branch_messages,
    conversation_for,
    message_tree,
    search_results,
    sidebar,
)
from conversations.errors import NotFound
from conversations.models import Conversation, Folder, Message, Preset, UsageRecord
from conversations.upstream.params import PARAM_SPECS, range_text
from conversations.usage.alerts import budget_alert_notices
from conversations.usage.budgets import budget_display, user_team_budgets
from conversations.usage.rollup import money_text
from conversations.usage.selectors import conversation_spend
from conversations.web import AuthenticatedHttpRequest


def decorate(messages: list[Message], tree: MessageTree) -> list[Message]:
    """What the message partial shows beside the text: rendered HTML, usage, feedback, versions (one query each
    for usage, attachments and feedback)."""
    messages_render(messages)
    replies = [m.pk for m in messages if m.role == Message.Role.ASSISTANT]
    records = UsageRecord.objects.filter(message_id__in=replies) if replies else []  # ids of the user's messages
    usage = {r.message_id: usage_payload(r) for r in records}
    attached = attachments_by_message(m.pk for m in messages if m.role == Message.Role.USER)
    given = feedback_by_message(replies)
    for message in messages:
        message.usage_info = usage.get(message.pk)
        rated = given.get(message.pk)
        message.feedback_rating = rating_word(rated.rating) if rated else None
        message.feedback_comment = rated.comment if rated else ""
        message.attachment_list = attached.get(message.pk, [])
        siblings = getattr(message, "sibling_ids", None) or tree.siblings(message.pk)
        index = siblings.index(message.pk) if message.pk in siblings else 0
        message.version_index = index + 1
        message.version_count = len(siblings)
        message.version_prev = siblings[index - 1] if index > 0 else None
        message.version_next = siblings[index + 1] if index + 1 < len(siblings) else None
    return messages


def param_fields(values: dict[str, Any]) -> list[dict[str, Any]]:
    """The parameters panel: every parameter with its range, help, input kind and this conversation's value."""
    fields = []
    for spec in PARAM_SPECS.values():
        value = values.get(spec.name)
        numeric = spec.type in ("number", "integer")
        small = numeric and all(b is None or abs(b) < 2**53 for b in (spec.min, spec.max))
        fields.append(
            {
                "spec": spec,
                "range": range_text(spec),
                "numeric": numeric,
                # min/max attributes only where they are exact and inclusive; the script checks the rest
                "min": spec.min if small and spec.min is not None and spec.min_inclusive else None,
                "max": spec.max if small and spec.max is not None and spec.max_inclusive else None,
                "step": "1" if spec.type == "integer" else "any",
                "value": value,
            }
        )
    return fields


def chat_context(
    request: AuthenticatedHttpRequest, conversation: Conversation | None, *, query: str = ""
) -> dict[str, Any]:
    models = models_for_user(request.user)
    if conversation is not None:
        tree = message_tree(conversation.pk)
        branch = decorate(branch_messages(conversation, tree), tree)
    else:
        branch = []
    current_model = conversation.model.public_name if conversation and conversation.model else None
    presets = [
        {
            "id": p.pk,
            "name": p.name,
            "model": p.model.public_name if p.model else "",
            "system_prompt": p.system_prompt,
            "params": p.params,
        }
        for p in Preset.objects.for_user(request.user).select_related("model")
    ]
    params = (conversation.params if conversation else {}) or {}
    return {
        "conversation": conversation,
        **sidebar_context(request, query),
        # not "messages": that name belongs to django.contrib.messages (base.html shows them as notices)
        "chat_messages": branch,
        "streaming": any(m.status == Message.Status.STREAMING for m in branch),
        "models": models,
        "model_groups": picker_groups(models),
        "current_model": current_model or getattr(chat_default_model(request.user, models), "public_name", ""),
        "param_fields": param_fields(params),
        "params": params,
        "presets": presets,
        "render_policy": policy(),
        "budget": budget_display(request.user),
        "group_budgets": user_team_budgets(request.user),  # each shared budget of the user's groups, by name
        "max_content_chars": MAX_CONTENT_CHARS,  # checked in the page before sending, with a counter near it
        **cost_context(request, conversation),
    }


def sidebar_context(request: AuthenticatedHttpRequest, query: str) -> dict[str, Any]:
    """The conversation list: the results for a query, else the grouped sidebar (partials/conversation_list.html)."""
    query = query.strip()
    if query:
        # the folders too: a result's ⋯ menu offers to move it into one
        folders = Folder.objects.for_user(request.user).only("pk", "name")
        return {"query": query, "conversations": search_results(request.user, query), "folders": folders}
    return {"query": "", "sidebar": sidebar(request.user)}


def cost_context(request: AuthenticatedHttpRequest, conversation: Conversation | None) -> dict[str, Any]:
    """The chat page's cost figures: the conversation's running total and this month's budget alert, if any."""
    context: dict[str, Any] = {"budget_alerts": budget_alert_notices(user=request.user)}
    if conversation is not None:
        cost, requests = conversation_spend(user=request.user, conversation_id=conversation.pk)
        context["conversation_cost"] = {"cost": money_text(cost), "requests": requests}
    return context


@login_required
def index(request: AuthenticatedHttpRequest) -> HttpResponse:
    return render(request, "chat.html", chat_context(request, None, query=request.GET.get("q", "")))


@login_required
def conversation(request: AuthenticatedHttpRequest, conversation_id: int) -> HttpResponse:
    try:
        found = conversation_for(request.user, conversation_id)
    except NotFound as exc:
        raise Http404(exc.message) from None
    return render(request, "chat.html", chat_context(request, found, query=request.GET.get("q", "")))
