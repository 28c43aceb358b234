"""Chat services (sync, one transaction each): admit a send or a regenerate, checkpoint a reply, finish it, reap."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from conversations import rows
from conversations.catalog.access import model_for_user
from conversations.chat.commands import ChatEdit, ChatRegenerate, ChatSend
from conversations.chat.prompting import chat_messages, upstream_request
from conversations.chat.selectors import conversation_branch, upstream_target
from conversations.models import Conversation, Message, Model, User
from conversations.upstream.client import UpstreamTarget
from conversations.upstream.events import Usage
from conversations.upstream.params import ParamError, drop_unsupported, validate_params
from conversations.upstream.tokens import count_prompt_tokens
from conversations.usage.budgets import BudgetExceeded, budget_reserve, worst_case_cost
from conversations.usage.ledger import Priced, usage_record

TITLE_LENGTH = 60


class ChatError(Exception):
    """A request refused before anything is sent upstream (code as in CONTRACTS §5 / §7)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass
class ReplyPlan:
    """Everything a generation needs, resolved from the database once, at admission."""

    user_id: int
    conversation_id: int
    message_id: int
    user_message_id: int | None
    user_content: str
    request_id: str | None
    target: UpstreamTarget
    path: str
    body: dict[str, Any]
    prompt_messages: list[dict[str, str]]
    priced: Priced
    reservation_id: int | None = None
    parent_id: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)


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


def _clean_params(model: Model, params: dict[str, Any]) -> dict[str, Any]:
    try:
        cleaned = validate_params(params)
    except ParamError as exc:
        raise ChatError("bad_request", str(exc)) from None
    return drop_unsupported(cleaned, model.provider.dropped_params or [])


@functools.cache
def _admission_lock_sql() -> str:
    # Raw SQL: one statement where the ORM needed two and spent more compiling them than the database answering.
    quote = connection.ops.quote_name
    user, conversation, message = (quote(m._meta.db_table) for m in (User, Conversation, Message))
    lock = " FOR UPDATE" if connection.features.has_select_for_update else ""  # SQLite: BEGIN IMMEDIATE locks
    return (  # table names from the models' own metadata, quoted: nothing here comes from a request
        f"SELECT u.monthly_budget, (SELECT COUNT(*) FROM {message} m "  # noqa: S608
        f"JOIN {conversation} c ON m.conversation_id = c.id WHERE c.owner_id = u.id "
        f"AND m.role = %s AND m.status IN (%s, %s)) FROM {user} u WHERE u.id = %s{lock}"
    )


def _check_concurrent_replies(user: User) -> Decimal | None:
    """Refuse a reply beyond CHATWEB_MAX_CONCURRENT_REPLIES streaming at once for this user (issue #10).
    Called in the admission transaction; locks the user's row so that concurrent admissions count in turn, and
    returns the user's monthly budget read under that lock (None: no budget, nothing to reserve)."""
    streaming = (Message.Role.ASSISTANT, Message.Status.STREAMING, Message.Status.PENDING)
    with connection.cursor() as cursor:
        cursor.execute(_admission_lock_sql(), [*streaming, user.pk])
        budget, running = cursor.fetchone()
    limit = settings.CHATWEB_MAX_CONCURRENT_REPLIES
    if running >= limit:
        raise ChatError(
            "too_many_replies",
            f"You already have {running} replies being written (at most {limit} at once); "
            "wait for one to finish or stop it.",
        )
    return None if budget is None else User._meta.get_field("monthly_budget").to_python(budget)


def _admit(
    *, user: User, conversation: Conversation, model: Model, parent: Message | None, params: dict,
    request_id: str | None, user_message: Message | None, branch: list[Message] | None = None,
) -> ReplyPlan:
    """Create the assistant message, reserve the budget and resolve the upstream request. `branch`: the history
    when the caller knows it already (a new conversation: its first message), saving a query."""
    budget = _check_concurrent_replies(user)
    if branch is None:
        branch = conversation_branch(conversation, parent.pk if parent else None)
    messages = chat_messages(conversation.system_prompt, branch)
    path, body = upstream_request(model, messages, params)
    reservation_id = None
    if budget is not None:
        reserve = worst_case_cost(
            prompt_tokens=count_prompt_tokens(messages),
            max_tokens=params.get("max_tokens") or model.max_output_tokens,
            input_price=model.input_price,
            output_price=model.output_price,
        )
        try:
            reservation_id = budget_reserve(user_id=user.pk, amount=reserve)
        except BudgetExceeded as exc:
            raise ChatError("budget_exceeded", str(exc)) from None
    now = timezone.now()
    reply = rows.insert(Message(
        conversation=conversation, parent=parent, role=Message.Role.ASSISTANT, status=Message.Status.STREAMING,
        model=model, model_name=model.public_name, heartbeat_at=now,
    ))
    conversation.active_leaf = reply
    rows.update(conversation, ("active_leaf", "updated_at"))
    return ReplyPlan(
        user_id=user.pk,
        conversation_id=conversation.pk,
        message_id=reply.pk,
        user_message_id=user_message.pk if user_message else None,
        user_content=user_message.content if user_message else "",
        request_id=request_id,
        target=upstream_target(model.provider),
        path=path,
        body=body,
        prompt_messages=messages,
        priced=Priced(model.provider.name, model.public_name, model.input_price, model.output_price),
        reservation_id=reservation_id,
        parent_id=parent.pk if parent else None,
    )


def reply_start_send(*, user: User, command: ChatSend) -> ReplyPlan:
    """Store the user's message (before any upstream call) and admit its reply."""
    model = model_for_user(user, command.model)
    if model is None:
        raise ChatError("not_found", f"no model named {command.model!r} is available to you")
    params = _clean_params(model, command.params)
    conversation_id = command.conversation_id
    if conversation_id is None and command.parent_id is not None:
        # Branching from a message names its conversation.
        parent_conversation = Message.objects.for_user(user).filter(pk=command.parent_id).values_list(
            "conversation_id", flat=True
        ).first()
        if parent_conversation is None:
            raise ChatError("not_found", "no such message")
        conversation_id = parent_conversation
    with transaction.atomic():
        if conversation_id is None:
            conversation = rows.insert(Conversation(
                owner=user, model=model, system_prompt=command.system or "", params=command.params,
                title=command.content.strip().splitlines()[0][:TITLE_LENGTH],
            ))
            parent = None
        else:
            conversation = Conversation.objects.for_user(user).select_for_update().filter(pk=conversation_id).first()
            if conversation is None:
                raise ChatError("not_found", "no such conversation")
            if command.parent_id is not None:
                parent = Message.objects.filter(conversation=conversation, pk=command.parent_id).first()
                if parent is None:
                    raise ChatError("not_found", "no such message in this conversation")
            else:
                parent = conversation.active_leaf
            conversation.model = model
            conversation.params = command.params
            if command.system is not None:
                conversation.system_prompt = command.system
            rows.update(conversation, ("model", "params", "system_prompt", "updated_at"))
        user_message = rows.insert(Message(
            conversation=conversation, parent=parent, role=Message.Role.USER, content=command.content,
        ))
        return _admit(
            user=user, conversation=conversation, model=model, parent=user_message, params=params,
            request_id=command.request_id, user_message=user_message,
            branch=[user_message] if parent is None else None,
        )


def reply_start_regenerate(*, user: User, command: ChatRegenerate) -> ReplyPlan:
    """A new reply beside an existing one: same history, the old reply kept as a sibling."""
    with transaction.atomic():
        old = (
            Message.objects.for_user(user).select_related("conversation", "model__provider")
            .filter(pk=command.message_id, role=Message.Role.ASSISTANT).first()
        )
        if old is None:
            raise ChatError("not_found", "no such reply")
        conversation = old.conversation
        model = (model_for_user(user, conversation.model.public_name) if conversation.model else None) or (
            model_for_user(user, old.model_name)
        )
        if model is None:
            raise ChatError("not_found", "the model of this conversation is no longer available")
        params = _clean_params(model, conversation.params or {})
        parent = old.parent
        return _admit(
            user=user, conversation=conversation, model=model, parent=parent, params=params,
            request_id=command.request_id, user_message=None,
        )


def reply_start_edit(*, user: User, command: ChatEdit) -> ReplyPlan:
    """An edited user message, stored beside the original (same parent), and its reply: a new branch."""
    with transaction.atomic():
        original = (
            Message.objects.for_user(user).select_related("conversation")
            .filter(pk=command.message_id, role=Message.Role.USER).first()
        )
        if original is None:
            raise ChatError("not_found", "no such message")
        conversation = original.conversation
        model = model_for_user(user, conversation.model.public_name) if conversation.model else None
        if model is None:
            raise ChatError("not_found", "the model of this conversation is no longer available")
        params = _clean_params(model, conversation.params or {})
        edited = rows.insert(Message(
            conversation=conversation, parent=original.parent, role=Message.Role.USER, content=command.content
        ))
        return _admit(
            user=user, conversation=conversation, model=model, parent=edited, params=params,
            request_id=command.request_id, user_message=edited,
        )


def reply_heartbeat(*, message_ids: list[int]) -> None:
    Message.objects.filter(pk__in=message_ids, status=Message.Status.STREAMING).update(heartbeat_at=timezone.now())


def replies_checkpoint(*, partial: list[tuple[int, str, str, int]], alive: list[int]) -> None:
    """One write for all of a process's streaming replies (issue #9): the text so far of those in `partial`
    (message id, content, reasoning, seq) and a heartbeat for the `alive` ids, in one transaction.

    The text goes in one `executemany` of a single prepared UPDATE, not one ORM query per reply: with 1,000
    replies streaming, per-reply writes were a thousand ORM calls a second on the one database thread. A reply
    that has finished meanwhile is left alone (`status = streaming` in the WHERE), whatever the order."""
    now = timezone.now()
    with transaction.atomic():
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


@transaction.atomic
def reply_finish(*, plan: ReplyPlan, outcome: ReplyOutcome) -> dict[str, Any]:
    """Write the final message and its ledger row in one transaction; returns the usage for `chat.done`."""
    Message.objects.filter(pk=plan.message_id).update(
        content=outcome.content, reasoning=outcome.reasoning, status=outcome.status,
        finish_reason=outcome.finish_reason, error_code=outcome.error_code, error_message=outcome.error_message,
        seq=outcome.seq, heartbeat_at=None, updated_at=timezone.now(),
    )
    record = usage_record(
        user_id=plan.user_id, source="chat", priced=plan.priced, usage=outcome.usage,
        prompt_messages=plan.prompt_messages, completion_text=outcome.reasoning + outcome.content,
        # A request that never reached the provider says why in the ledger, where "error" alone would not.
        finish_reason=outcome.finish_reason if outcome.sent else outcome.error_code,
        ttft_ms=outcome.ttft_ms, duration_ms=outcome.duration_ms,
        conversation_id=plan.conversation_id, message_id=plan.message_id, reservation_id=plan.reservation_id,
        sent=outcome.sent,
    )
    Conversation.objects.filter(pk=plan.conversation_id).update(updated_at=timezone.now())
    return usage_payload(record)


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
            usage_record(
                user_id=conversation.owner_id, source="chat",
                priced=Priced(
                    model.provider.name if model else "", message.model_name,
                    model.input_price if model else None, model.output_price if model else None,
                ),
                usage=None, prompt_messages=chat_messages(conversation.system_prompt, branch),
                completion_text=message.reasoning + message.content, finish_reason="error",
                ttft_ms=None, duration_ms=None, conversation_id=conversation.pk, message_id=message.pk,
            )
            reaped += 1
    return reaped
