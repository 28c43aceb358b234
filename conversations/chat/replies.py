"""Chat services after admission (sync, one transaction each): checkpoint streaming replies, finish one, reap.
Admission (send, regenerate, edit) is conversations/chat/admission.py."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from conversations import rows
from conversations.chat.admission import ReplyPlan
from conversations.chat.attachments import attachments_by_message
from conversations.chat.prompting import chat_messages
from conversations.chat.selectors import conversation_branch
from conversations.models import Conversation, Message, UsageRecord
from conversations.upstream.events import Usage
from conversations.upstream.tokens import DEFAULT_IMAGE_RULE
from conversations.usage.ledger import Priced, usage_record


@dataclass
class ReplyOutcome:
    content: str
    reasoning: str
    status: str
    finish_reason: str
    seq: int
    usage: Usage | None = None
    error_code: str = ""
    error_message: str = ""
    ttft_ms: int | None = None
    duration_ms: int | None = None
    sent: bool = True  # False: the request never reached the provider (billed nothing)
    cut: bool = False  # the error cut the reply short (stream broken or silent mid-reply), not a provider failure
    response_id: str | None = None  # the upstream's id of the reply, known from its first chunk

def replies_checkpoint(*, partial: list[tuple[int, str, str, int]], alive: list[int]) -> None:
    """One write for all of a process's streaming replies: the text so far of those in `partial`
    (message id, content, reasoning, seq) and a heartbeat for the `alive` ids, in one transaction.

    The text goes in one `executemany` of a single prepared UPDATE, not one ORM query per reply: with 1,000
    replies streaming, per-reply writes were a thousand ORM calls a second on the one database thread. A reply
    that has finished meanwhile is left alone (`status = streaming` in the WHERE), whatever the order."""
    now = timezone.now()
    with transaction.atomic():
        if connection.features.has_select_for_update_skip_locked:
            # A row locked by now is a reply being finished (its finish holds it, maybe in a batch of finishes that
            # takes its rows in another order): skip it rather than wait for it, which could deadlock.
            free = set(
                Message.objects.select_for_update(skip_locked=True)
                .filter(pk__in={pk for pk, *_ in partial} | set(alive), status=Message.Status.STREAMING)
                .values_list("pk", flat=True)
            )
            partial = [row for row in partial if row[0] in free]
            alive = [pk for pk in alive if pk in free]
        if partial:
            ops, quote = connection.ops, connection.ops.quote_name
            stamp = ops.adapt_datetimefield_value(now)
            table = quote(Message._meta.db_table)
            columns = [quote(c) for c in ("content", "reasoning", "seq", "heartbeat_at")]
            sql = (  # names from the model, every value a parameter
                f"UPDATE {table} SET {' = %s, '.join(columns)} = %s "  # noqa: S608
                f"WHERE {quote('id')} = %s AND {quote('status')} = %s"
            )
            rows = [(content, reasoning, seq, stamp, pk, Message.Status.STREAMING.value)
                    for pk, content, reasoning, seq in partial]
            with connection.cursor() as cursor:
                cursor.executemany(sql, rows)
        if alive:
            Message.objects.filter(pk__in=alive, status=Message.Status.STREAMING).update(heartbeat_at=now)


FINISHED_FIELDS = ("content", "reasoning", "status", "finish_reason", "error_code", "error_message", "seq",
                   "heartbeat_at", "updated_at")


@transaction.atomic
def reply_finish(*, plan: ReplyPlan, outcome: ReplyOutcome) -> dict[str, Any]:
    """Write the final message and its ledger row in one transaction; returns the usage for `chat.done`."""
    # Both updates with their statements compiled once (conversations/rows.py): a class's replies all end together.
    rows.update(Message(
        pk=plan.message_id, content=outcome.content, reasoning=outcome.reasoning, status=outcome.status,
        finish_reason=outcome.finish_reason, error_code=outcome.error_code, error_message=outcome.error_message,
        seq=outcome.seq, heartbeat_at=None,
    ), FINISHED_FIELDS)
    record = usage_record(
        user_id=plan.user_id, source="chat", priced=plan.priced, usage=outcome.usage,
        prompt_messages=plan.prompt_messages, completion_text=outcome.reasoning + outcome.content,
        # A request that never reached the provider says why in the ledger, where "error" alone would not.
        finish_reason=outcome.finish_reason if outcome.sent else outcome.error_code,
        ttft_ms=outcome.ttft_ms, duration_ms=outcome.duration_ms,
        conversation_id=plan.conversation_id, message_id=plan.message_id, reservation_id=plan.reservation_id,
        sent=outcome.sent,
        upstream_request_id=(outcome.usage.response_id if outcome.usage else None) or outcome.response_id,
        tz=plan.owner_tz,
        outcome=reply_ledger_outcome(outcome),
    )
    rows.update(Conversation(pk=plan.conversation_id), ("updated_at",))
    return usage_payload(record)


def reply_ledger_outcome(outcome: ReplyOutcome) -> str:
    """How the reply ended, as its ledger row says it: complete, stopped, cut or failed."""
    if outcome.status == Message.Status.STOPPED:
        return UsageRecord.Outcome.STOPPED
    if outcome.status == Message.Status.ERROR:
        return UsageRecord.Outcome.CUT if outcome.cut else UsageRecord.Outcome.FAILED
    return UsageRecord.Outcome.COMPLETE


def usage_payload(record: Any) -> dict[str, Any]:
    """The `usage` object of `chat.done` (and of the chat page's per-reply line)."""
    return {
        "prompt_tokens": record.prompt_tokens,
        "completion_tokens": record.completion_tokens,
        "total_tokens": record.total_tokens,
        "estimated_cost": format(record.estimated_cost.normalize(), "f") if record.estimated_cost else "0",
        "estimated": record.usage_estimated,
        "cost_source": record.cost_source,
        "ttft_ms": record.ttft_ms,
        "duration_ms": record.duration_ms,
    }


def replies_reap(*, stale_after: timedelta = timedelta(seconds=30), alive: list[int] | tuple[int, ...] = ()) -> int:
    """Mark replies left `streaming` by a process that died as `interrupted`, text kept, usage estimated.
    `alive`: the replies the calling process is generating itself, never taken for dead, however late their
    heartbeat (a process under heavy load writes it late)."""
    cutoff = timezone.now() - stale_after
    reaped = 0
    for message in Message.objects.filter(
        status__in=[Message.Status.STREAMING, Message.Status.PENDING], heartbeat_at__lt=cutoff
    ).exclude(pk__in=alive).select_related("conversation", "model__provider"):
        with transaction.atomic():
            updated = Message.objects.filter(pk=message.pk, status=message.status, heartbeat_at__lt=cutoff).update(
                status=Message.Status.INTERRUPTED, finish_reason="error", error_code="interrupted",
                error_message="The server handling this reply stopped before it finished; the text so far is kept.",
                heartbeat_at=None,
            )
            if not updated:
                continue
            conversation = message.conversation
            branch = conversation_branch(conversation, message.parent_id) if message.parent_id else []
            model = message.model
            attached = attachments_by_message(m.pk for m in branch if m.role == Message.Role.USER)
            usage_record(
                user_id=conversation.owner_id, source="chat",
                priced=Priced(
                    model.provider.name if model else "", message.model_name,
                    model.input_price if model else None, model.output_price if model else None,
                    model.image_tokens if model else DEFAULT_IMAGE_RULE,
                ),
                usage=None, prompt_messages=chat_messages(conversation.system_prompt, branch, attached, model),
                completion_text=message.reasoning + message.content, finish_reason="error",
                ttft_ms=None, duration_ms=None, conversation_id=conversation.pk, message_id=message.pk,
                # The process died mid-reply: what it had produced is kept, cut short.
                outcome=UsageRecord.Outcome.CUT if message.content or message.reasoning else None,
            )
            reaped += 1
    return reaped
