"""Conversation titles. At once: the first user message's first line (chat.py sets it). Then, when the setting
CHATWEB_TITLE_MODEL names a model, a short title written by that model after the first reply: one small
non-streaming call in a background task, after `chat.done`, so it never delays a reply. A title the user has
changed in the meantime is kept; the call is billed to the user like any other (ledger row, budget)."""

from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import dataclass
from typing import Any

from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import transaction

from conversations.catalog.access import usable_model
from conversations.chat.prompting import upstream_request
from conversations.chat.selectors import upstream_target
from conversations.models import Conversation, Message
from conversations.upstream import client
from conversations.upstream.client import UpstreamTarget
from conversations.upstream.errors import ErrorCode
from conversations.upstream.events import ContentDelta, StreamError, Usage
from conversations.upstream.tokens import count_prompt_tokens
from conversations.usage.budgets import BudgetExceeded, budget_reserve, worst_case_cost
from conversations.usage.ledger import Priced, usage_record

log = logging.getLogger(__name__)

TITLE_LENGTH = 60  # as chat.TITLE_LENGTH, the first-line title
TITLE_PARAMS = {"max_tokens": 24, "temperature": 0.2}
QUESTION_CHARS = 2000
ANSWER_CHARS = 1000
INSTRUCTION = (
    "Write a title for the conversation below: at most six words, in the language of the conversation, "
    "no quotes, no final full stop. Answer with the title only."
)

_tasks: set[asyncio.Task] = set()


@dataclass
class TitleJob:
    user_id: int
    conversation_id: int
    message_id: int
    default_title: str
    target: UpstreamTarget
    path: str
    body: dict[str, Any]
    prompt_messages: list[dict[str, str]]
    priced: Priced
    reservation_id: int | None


def default_title(content: str) -> str:
    """The title a conversation starts with: its first message's first line."""
    lines = content.strip().splitlines()
    return lines[0][:TITLE_LENGTH] if lines else ""


def clean_title(text: str) -> str:
    """A model's answer as a title: its first non-empty line without markup, quotes, label or final stop."""
    line = next((line for line in text.splitlines() if line.strip()), "")
    line = re.sub(r"^\s*(?:#+\s*|[-*]\s+)?(?:title\s*:\s*)?", "", line, flags=re.IGNORECASE)
    line = re.sub(r"[*_`]+", "", line)
    line = " ".join(line.split()).strip("\"'“”‘’«» ").rstrip(".:;,!")
    if len(line) > TITLE_LENGTH:
        line = line[:TITLE_LENGTH].rsplit(" ", 1)[0] if " " in line[:TITLE_LENGTH] else line[:TITLE_LENGTH]
    return line.strip()


def title_job(*, conversation_id: int, message_id: int) -> TitleJob | None:
    """What the title call needs, or None: no title model, not the first reply, renamed, or over budget."""
    model_name = settings.CHATWEB_TITLE_MODEL
    if not model_name:
        return None
    replies = list(
        Message.objects.filter(conversation_id=conversation_id, role=Message.Role.ASSISTANT).values_list(
            "pk", "status"
        )[:2]
    )
    if replies != [(message_id, Message.Status.COMPLETE)]:
        return None
    reply = Message.objects.select_related("parent", "conversation").filter(pk=message_id).first()
    if reply is None or reply.parent is None or not reply.content.strip():
        return None
    conversation = reply.conversation
    start = default_title(reply.parent.content)
    if conversation.title != start:
        return None  # the user named it already
    model = usable_model(model_name)
    if model is None:
        log.warning("CHATWEB_TITLE_MODEL %r is not an enabled model; titles stay first lines", model_name)
        return None
    messages = [
        {"role": "system", "content": INSTRUCTION},
        {
            "role": "user",
            "content": f"User: {reply.parent.content[:QUESTION_CHARS]}\n\nAssistant: {reply.content[:ANSWER_CHARS]}",
        },
    ]
    path, body = upstream_request(model, messages, dict(TITLE_PARAMS))
    reserve = worst_case_cost(
        prompt_tokens=count_prompt_tokens(messages),
        max_tokens=TITLE_PARAMS["max_tokens"],
        input_price=model.input_price,
        output_price=model.output_price,
    )
    try:
        reservation_id = budget_reserve(user_id=conversation.owner_id, amount=reserve)
    except BudgetExceeded:
        return None
    return TitleJob(
        user_id=conversation.owner_id,
        conversation_id=conversation.pk,
        message_id=message_id,
        default_title=start,
        target=upstream_target(model.provider),
        path=path,
        body=body,
        prompt_messages=messages,
        priced=Priced.of(model),
        reservation_id=reservation_id,
    )


@transaction.atomic
def title_store(
    *, job: TitleJob, text: str, usage: Usage | None, failed: bool, sent: bool = True
) -> str | None:
    """Bill the call (nothing when it never reached the provider), then set the title unless the user renamed
    the conversation meanwhile."""
    usage_record(
        sent=sent,
        user_id=job.user_id,
        source="chat",
        priced=job.priced,
        usage=usage,
        prompt_messages=job.prompt_messages,
        completion_text=text,
        finish_reason=("error" if sent else ErrorCode.UPSTREAM_UNREACHABLE.value) if failed else "stop",
        ttft_ms=None,
        duration_ms=None,
        conversation_id=job.conversation_id,
        reservation_id=job.reservation_id,
    )
    title = "" if failed else clean_title(text)
    if not title:
        return None
    updated = Conversation.objects.filter(pk=job.conversation_id, title=job.default_title).update(title=title)
    return title if updated else None


async def title_generate(*, conversation_id: int, message_id: int) -> str | None:
    """Ask the title model for a title and store it; tells every tab of the conversation (`chat.title`)."""
    job = await database_sync_to_async(title_job)(conversation_id=conversation_id, message_id=message_id)
    if job is None:
        return None
    text, usage, failed, sent = "", None, False, True
    try:
        for event in await client.complete(job.target, job.path, job.body):
            if isinstance(event, ContentDelta) and event.index == 0:
                text += event.text
            elif isinstance(event, Usage):
                usage = event
            elif isinstance(event, StreamError):
                failed, sent = True, event.sent
                if event.status and event.status >= 400 and not text:
                    usage = Usage(prompt_tokens=0, completion_tokens=0, total_tokens=0)
    finally:
        title = await database_sync_to_async(title_store)(job=job, text=text, usage=usage, failed=failed, sent=sent)
    if title:
        from conversations.chat.generation import conversation_group, frame_event  # generation imports this module

        payload = {"type": "chat.title", "conversation_id": conversation_id, "title": title}
        await get_channel_layer().group_send(
            conversation_group(conversation_id), frame_event(payload, message_id=message_id)
        )
    return title


async def _title_quietly(conversation_id: int, message_id: int) -> None:
    try:
        await title_generate(conversation_id=conversation_id, message_id=message_id)
    except Exception:
        log.exception("title for conversation %s failed", conversation_id)


def title_after_reply(*, conversation_id: int, message_id: int, status: str, first_message: bool) -> None:
    """Called by the generation after `chat.done`: starts the title task when it may be wanted; returns at once."""
    if not settings.CHATWEB_TITLE_MODEL or status != Message.Status.COMPLETE or not first_message:
        return
    task = asyncio.get_running_loop().create_task(_title_quietly(conversation_id, message_id))
    _tasks.add(task)
    task.add_done_callback(_tasks.discard)


async def wait_for_titles(seconds: float = 30) -> None:
    """Wait for the title tasks of this process (tests)."""
    if _tasks:
        await asyncio.wait_for(asyncio.gather(*_tasks, return_exceptions=True), seconds)
