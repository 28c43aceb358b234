"""Conversation titles. At once: the first user message's first line (set at admission). Then, when the setting
CHATWEB_TITLE_MODEL names a model, a short title written by that model after the first reply: one small
non-streaming call in a background task, after `chat.done`, so it never delays a reply. A title the user has
changed in the meantime is kept; the call is billed to the user like any other (ledger row, budget).
Its admission is the pair `check_title` / `do_title` in conversations/chat/admission.py."""

from __future__ import annotations

import asyncio
import logging
import re

from django.conf import settings
from django.db import transaction

from conversations import db
from conversations.chat.admission import TITLE_LENGTH, TitleCheck, TitleJob, admit, check_title, do_title
from conversations.chat.groups import channel_layer, conversation_group, frame_event
from conversations.errors import BudgetExceeded
from conversations.models import Conversation, Message
from conversations.upstream import client
from conversations.upstream.errors import ErrorCode
from conversations.upstream.events import ContentDelta, StreamError, Usage
from conversations.usage.ledger import usage_record

log = logging.getLogger(__name__)

_tasks: set[asyncio.Task] = set()


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
    """The title call admitted (check_title, then do_title), or None: no title wanted, or over budget."""
    try:
        return admit(check_title, _title_or_none, conversation_id=conversation_id, message_id=message_id)
    except BudgetExceeded:
        return None


def _title_or_none(*, check: TitleCheck | None) -> TitleJob | None:
    return None if check is None else do_title(check=check)


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
        upstream_request_id=usage.response_id if usage else None,  # what reconciliation matches it by
    )
    title = "" if failed else clean_title(text)
    if not title:
        return None
    updated = Conversation.objects.filter(pk=job.conversation_id, title=job.default_title).update(title=title)
    return title if updated else None


async def title_generate(*, conversation_id: int, message_id: int) -> str | None:
    """Ask the title model for a title and store it; tells every tab of the conversation (`chat.title`)."""
    job = await db.chat.run(title_job, conversation_id=conversation_id, message_id=message_id)
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
        title = await db.chat.run(title_store, job=job, text=text, usage=usage, failed=failed, sent=sent)
    if title:
        payload = {"type": "chat.title", "conversation_id": conversation_id, "title": title}
        await channel_layer().group_send(
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
