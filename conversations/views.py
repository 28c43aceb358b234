"""The chat pages: `/` (a new chat) and `/c/<id>/` (a conversation rendered server-side)."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render

from conversations.chat import usage_payload
from conversations.models import Conversation, Model, UsageRecord
from conversations.selectors import conversation_branch
from conversations.upstream.params import PARAM_SPECS

SIDEBAR_SIZE = 100


def _chat_context(request: HttpRequest, conversation: Conversation | None) -> dict:
    models = list(Model.objects.for_user(request.user).only("public_name", "api", "provider__name"))
    branch = conversation_branch(conversation) if conversation else []
    usage = {
        r.message_id: usage_payload(r)
        for r in UsageRecord.objects.filter(message_id__in=[m.pk for m in branch if m.role == "assistant"])
    }
    for message in branch:
        message.usage_info = usage.get(message.pk)
    current_model = conversation.model.public_name if conversation and conversation.model else None
    return {
        "conversation": conversation,
        "conversations": Conversation.objects.for_user(request.user).order_by("-updated_at")[:SIDEBAR_SIZE],
        "messages": branch,
        "models": models,
        "current_model": current_model or (models[0].public_name if models else ""),
        "param_specs": PARAM_SPECS,
        "params": (conversation.params if conversation else {}) or {},
    }


@login_required
def index(request: HttpRequest) -> HttpResponse:
    return render(request, "chat.html", _chat_context(request, None))


@login_required
def conversation(request: HttpRequest, conversation_id: int) -> HttpResponse:
    found = Conversation.objects.for_user(request.user).select_related("model").filter(pk=conversation_id).first()
    if found is None:
        raise Http404("No such conversation.")
    return render(request, "chat.html", _chat_context(request, found))
