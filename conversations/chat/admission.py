"""The chat's admission: every action that starts a model call, as a `check_x` / `do_x` pair.

- `check_x(...)` only reads: the user's conversation or message, the model usable by the user, the parameters,
  whether the reply it builds on is still being written. It raises domain errors (conversations/errors.py).
- `do_x(check=...)` writes in one transaction and returns the plan of the call: the user's row is locked first,
  and what concurrent requests change is decided there, under that lock (replies streaming at once, the budget
  reservation), along with anything the check read that another process may have changed meanwhile.

The pairs: `check_reply_send` / `do_reply_send` (`chat.send`), `check_reply_regenerate` / `do_reply_regenerate`
(`chat.regenerate`), `check_reply_edit` / `do_reply_edit` (`chat.edit`), `check_title` / `do_title` (the title
written after a first reply). The /v1 API's pair is in conversations/api/admission.py. An edge runs a check and
its do in one call on the database lane (`admit`), so an admission costs one thread hop.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, TypeVar

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Exists, OuterRef
from django.utils import timezone

from conversations import rows
from conversations.catalog.access import model_for_user, usable_model
from conversations.catalog.targets import upstream_target
from conversations.chat.attachments import (
    attachment_image_sizes,
    attachment_payload,
    attachment_reference,
    attachments_by_message,
    attachments_for_send,
    images_refused,
    message_attachments_link,
)
from conversations.chat.commands import ChatEdit, ChatEstimate, ChatRegenerate, ChatSend
from conversations.chat.prompting import chat_messages, upstream_request
from conversations.chat.selectors import BranchLine, branch_lines, conversation_branch
from conversations.errors import BadRequest, ModelUnavailable, NotFound, ReplyInProgress, TooManyReplies
from conversations.models import Attachment, Conversation, Message, Model, User
from conversations.upstream.client import UpstreamTarget
from conversations.upstream.params import ParamError, drop_unsupported, validate_params
from conversations.upstream.tokens import count_prompt_tokens
from conversations.usage.budgets import budget_reserve, group_budget_exists_sql, worst_case_cost
from conversations.usage.ledger import Priced

log = logging.getLogger(__name__)

TITLE_LENGTH = 60  # a new conversation's first title: its first message's first line, cut here
BUSY = (Message.Status.STREAMING, Message.Status.PENDING)
DRAFT_ID = 0  # `chat.estimate`'s draft message: no stored message has this id
REPLY_IN_PROGRESS = "A reply is still being written; wait for it to finish or stop it."

C = TypeVar("C")
R = TypeVar("R")


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
    prompt_messages: list[dict[str, Any]]
    priced: Priced
    reservation_id: int | None = None
    parent_id: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    owner_tz: str | None = None  # the owner's time zone setting at admission (their ledger row's day)
    temporary: bool = False  # the conversation is a temporary chat (deleted once no tab holds it)


def admit(check: Callable[..., C], do: Callable[..., R], /, **kwargs: Any) -> R:
    """`do(check=check(**kwargs))`: an action's admission in one call (one hop to the database lane)."""
    return do(check=check(**kwargs))


# --- shared steps -------------------------------------------------------------------------------------------
def _usable(user: User, public_name: str, message: str) -> Model:
    model = model_for_user(user, public_name)
    if model is None:
        raise ModelUnavailable(message, name=public_name)
    return model


def _clean_params(model: Model, params: dict[str, Any]) -> dict[str, Any]:
    try:
        cleaned = validate_params(params)
    except ParamError as exc:
        raise BadRequest(str(exc)) from None
    return drop_unsupported(cleaned, model.provider.dropped_params or [])


def _not_busy(parent: Message | None) -> None:
    """Refuse to build on a reply that is still being written (its text is not there yet)."""
    if parent is not None and parent.role == Message.Role.ASSISTANT and parent.status in BUSY:
        raise ReplyInProgress(REPLY_IN_PROGRESS)


@functools.cache
def _admission_lock_sql() -> str:
    # Raw SQL: one statement where the ORM needed two and spent more compiling them than the database answering
    # (tests/chat/test_admission.py holds it equal to the ORM's answer).
    quote = connection.ops.quote_name
    user, conversation, message = (quote(m._meta.db_table) for m in (User, Conversation, Message))
    lock = " FOR UPDATE" if connection.features.has_select_for_update else ""  # SQLite: BEGIN IMMEDIATE locks
    return (  # table names from the models' own metadata, quoted: nothing here comes from a request
        f"SELECT u.monthly_budget, u.{quote('timezone')}, (SELECT COUNT(*) FROM {message} m "  # noqa: S608
        f"JOIN {conversation} c ON m.conversation_id = c.id WHERE c.owner_id = u.id "
        f"AND m.role = %s AND m.status IN (%s, %s)), "
        f"{group_budget_exists_sql('u')} FROM {user} u WHERE u.id = %s{lock}"
    )


def user_lock_replies_streaming(*, user_id: int) -> tuple[Decimal | None, str, int, bool]:
    """Lock the user's row for this transaction; their monthly budget, time zone setting (the ledger row of the
    reply counts on their local day), how many of their replies stream, and whether a group of theirs has a
    shared budget."""
    with connection.cursor() as cursor:
        cursor.execute(_admission_lock_sql(), [Message.Role.ASSISTANT, *BUSY, user_id])
        budget, tz, running, group_budgeted = cursor.fetchone()
    budget = None if budget is None else User._meta.get_field("monthly_budget").to_python(budget)
    return budget, tz, running, bool(group_budgeted)


def _admit_reply(
    *, user: User, conversation: Conversation, model: Model, parent: Message | None, params: dict[str, Any],
    request_id: str | None, user_message: Message | None, branch: list[Message] | None = None,
) -> ReplyPlan:
    """In the caller's transaction: lock the user, refuse a reply beyond CHATWEB_MAX_CONCURRENT_REPLIES streaming
    at once, reserve the worst case against the budget, create the assistant message. `branch`: the history when
    the caller knows it already (a new conversation: its first message), saving a query."""
    budget, tz, running, group_budgeted = user_lock_replies_streaming(user_id=user.pk)
    limit = settings.CHATWEB_MAX_CONCURRENT_REPLIES
    if running >= limit:
        raise TooManyReplies(
            f"You already have {running} replies being written (at most {limit} at once); "
            "wait for one to finish or stop it."
        )
    if branch is None:
        branch = conversation_branch(conversation, parent.pk if parent else None)
    attached = attachments_by_message(
        m.pk for m in branch if m.role == Message.Role.USER and getattr(m, "has_attachments", False)
    )
    # The whole history counts: an image sent earlier in the conversation would go to this model too.
    images_refused(model, (a for found in attached.values() for a in found))
    messages = chat_messages(conversation.system_prompt, branch, attached, model)
    path, body = upstream_request(model, messages, params)
    reservation_id = None
    # budget_reserve decides under the same lock (raises BudgetExceeded), with the user's groups' budgets too
    if budget is not None or group_budgeted:
        reservation_id = budget_reserve(user_id=user.pk, amount=worst_case_cost(
            prompt_tokens=count_prompt_tokens(messages, image_rule=model.image_tokens),
            max_tokens=params.get("max_tokens") or model.max_output_tokens,
            input_price=model.input_price,
            output_price=model.output_price,
        ))
    reply = rows.insert(Message(
        conversation=conversation, parent=parent, role=Message.Role.ASSISTANT, status=Message.Status.STREAMING,
        model=model, model_name=model.public_name, heartbeat_at=timezone.now(),
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
        priced=Priced.of(model),
        reservation_id=reservation_id,
        parent_id=parent.pk if parent else None,
        extra={"attachments": [
            attachment_payload(a) for a in (attached.get(user_message.pk, []) if user_message else [])
        ]},
        owner_tz=tz,
        temporary=conversation.temporary,
    )


# --- chat.send ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SendCheck:
    user: User
    command: ChatSend
    model: Model
    params: dict[str, Any]
    conversation: Conversation | None  # None: the send starts a new conversation
    parent: Message | None  # what the user's message answers (None: the first message)
    attachments: list[Attachment] = field(default_factory=list)


def check_reply_send(*, user: User, command: ChatSend) -> SendCheck:
    """A user's message may be sent: the model, the parameters, the conversation and the parent it answers."""
    model = _usable(user, command.model, f"no model named {command.model!r} is available to you")
    params = _clean_params(model, command.params)
    conversation: Conversation | None = None
    parent: Message | None = None
    if command.conversation_id is None and command.parent_id is not None:
        # Branching from a message names its conversation.
        parent = Message.objects.for_user(user).select_related("conversation").filter(pk=command.parent_id).first()
        if parent is None:
            raise NotFound("no such message")
        conversation = parent.conversation
    elif command.conversation_id is not None:
        conversation = (
            Conversation.objects.for_user(user).select_related("active_leaf")
            .filter(pk=command.conversation_id).first()
        )
        if conversation is None:
            raise NotFound("no such conversation")
        if command.parent_id is None:
            parent = conversation.active_leaf
        else:
            parent = Message.objects.filter(conversation=conversation, pk=command.parent_id).first()
            if parent is None:
                raise NotFound("no such message in this conversation")
    _not_busy(parent)
    if command.temporary and conversation is not None:
        raise BadRequest("`temporary` applies to a new conversation only.")
    attachments = attachments_for_send(user=user, ids=command.attachments, conversation=conversation, model=model)
    return SendCheck(user=user, command=command, model=model, params=params, conversation=conversation,
                     parent=parent, attachments=attachments)


def do_reply_send(*, check: SendCheck) -> ReplyPlan:
    """Store the user's message (before any upstream call) and admit its reply, in one transaction."""
    command, user, model = check.command, check.user, check.model
    with transaction.atomic():
        conversation, parent = check.conversation, check.parent
        if conversation is None:
            conversation = rows.insert(Conversation(
                owner=user, model=model, system_prompt=command.system or "", params=command.params,
                title=default_title(command.content) or (check.attachments[0].name if check.attachments else ""),
                temporary=command.temporary,
            ))
        else:
            # Locked now: another process may have deleted it or moved its active leaf since the check.
            leaf = list(
                Conversation.objects.select_for_update().filter(pk=conversation.pk).values_list("active_leaf_id")
            )
            if not leaf:
                raise NotFound("no such conversation")
            if command.parent_id is None and leaf[0][0] != (parent.pk if parent else None):
                parent = Message.objects.filter(pk=leaf[0][0]).first() if leaf[0][0] else None
                _not_busy(parent)
            conversation.model = model
            conversation.params = command.params
            if command.system is not None:
                conversation.system_prompt = command.system
            rows.update(conversation, ("model", "params", "system_prompt", "updated_at"))
        user_message = rows.insert(Message(
            conversation=conversation, parent=parent, role=Message.Role.USER, content=command.content,
        ))
        message_attachments_link(message=user_message, attachments=check.attachments)
        user_message.has_attachments = bool(check.attachments)  # type: ignore[attr-defined]  # as branches have
        return _admit_reply(
            user=user, conversation=conversation, model=model, parent=user_message, params=check.params,
            request_id=command.request_id, user_message=user_message,
            branch=[user_message] if parent is None else None,
        )


# --- chat.regenerate ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RegenerateCheck:
    user: User
    command: ChatRegenerate
    conversation: Conversation
    model: Model
    params: dict[str, Any]
    parent: Message | None  # the old reply's parent: the new reply answers it too


def check_reply_regenerate(*, user: User, command: ChatRegenerate) -> RegenerateCheck:
    """A reply may be written anew: it is the user's, and its conversation's model is still usable."""
    old = (
        Message.objects.for_user(user).select_related("conversation__model", "parent")
        .filter(pk=command.message_id, role=Message.Role.ASSISTANT).first()
    )
    if old is None:
        raise NotFound("no such reply")
    conversation = old.conversation
    gone = "the model of this conversation is no longer available"
    model = (model_for_user(user, conversation.model.public_name) if conversation.model else None) or (
        _usable(user, old.model_name, gone)
    )
    params = _clean_params(model, conversation.params or {})
    return RegenerateCheck(user=user, command=command, conversation=conversation, model=model, params=params,
                           parent=old.parent)


def do_reply_regenerate(*, check: RegenerateCheck) -> ReplyPlan:
    """A new reply beside the old one (same history, the old reply kept as a sibling), in one transaction."""
    with transaction.atomic():
        return _admit_reply(
            user=check.user, conversation=check.conversation, model=check.model, parent=check.parent,
            params=check.params, request_id=check.command.request_id, user_message=None,
        )


# --- chat.edit --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class EditCheck:
    user: User
    command: ChatEdit
    original: Message
    model: Model
    params: dict[str, Any]
    has_attachments: bool = False


def check_reply_edit(*, user: User, command: ChatEdit) -> EditCheck:
    """A user message may be edited: it is the user's, and its conversation's model is still usable."""
    carries = Exists(Message.attachments.through.objects.filter(message_id=OuterRef("pk")))
    original = (
        Message.objects.for_user(user).select_related("conversation__model")
        .filter(pk=command.message_id, role=Message.Role.USER).annotate(has_attachments=carries).first()
    )
    if original is None:
        raise NotFound("no such message")
    conversation = original.conversation
    gone = "the model of this conversation is no longer available"
    if conversation.model is None:
        raise ModelUnavailable(gone, name=None)
    model = _usable(user, conversation.model.public_name, gone)
    params = _clean_params(model, conversation.params or {})
    return EditCheck(user=user, command=command, original=original, model=model, params=params,
                     has_attachments=original.has_attachments)


def do_reply_edit(*, check: EditCheck) -> ReplyPlan:
    """The edited message stored beside the original (same parent) and its reply admitted: a new branch."""
    original, conversation = check.original, check.original.conversation
    with transaction.atomic():
        edited = rows.insert(Message(
            conversation=conversation, parent_id=original.parent_id, role=Message.Role.USER,
            content=check.command.content,
        ))
        if check.has_attachments:  # the edited version keeps the original's attachments
            message_attachments_link(message=edited, attachments=list(original.attachments.all()))
        return _admit_reply(
            user=check.user, conversation=conversation, model=check.model, parent=edited, params=check.params,
            request_id=check.command.request_id, user_message=edited,
        )


# --- the title after a first reply ----------------------------------------------------------------------------
TITLE_MAX_TOKENS = 24
TITLE_PARAMS: dict[str, float | int] = {"max_tokens": TITLE_MAX_TOKENS, "temperature": 0.2}
QUESTION_CHARS = 2000
ANSWER_CHARS = 1000
TITLE_INSTRUCTION = (
    "Write a title for the conversation below: at most six words, in the language of the conversation, "
    "no quotes, no final full stop. Answer with the title only."
)


def default_title(content: str) -> str:
    """The title a conversation starts with: its first message's first line."""
    lines = content.strip().splitlines()
    return lines[0][:TITLE_LENGTH] if lines else ""


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


@dataclass(frozen=True)
class TitleCheck:
    owner_id: int
    conversation_id: int
    message_id: int
    default_title: str
    model: Model
    prompt_messages: list[dict[str, str]]


def check_title(*, conversation_id: int, message_id: int) -> TitleCheck | None:
    """What a title call would ask, or None when no title is wanted: no title model, not the conversation's
    first reply, or the user named the conversation already."""
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
    if conversation.temporary:
        return None  # listed nowhere, gone with its tab: a title would be money spent on nothing
    start = default_title(reply.parent.content)
    if conversation.title != start:
        return None  # the user named it already
    model = usable_model(model_name)
    if model is None:
        log.warning("CHATWEB_TITLE_MODEL %r is not an enabled model; titles stay first lines", model_name)
        return None
    question, answer = reply.parent.content[:QUESTION_CHARS], reply.content[:ANSWER_CHARS]
    messages = [
        {"role": "system", "content": TITLE_INSTRUCTION},
        {"role": "user", "content": f"User: {question}\n\nAssistant: {answer}"},
    ]
    return TitleCheck(owner_id=conversation.owner_id, conversation_id=conversation.pk, message_id=message_id,
                      default_title=start, model=model, prompt_messages=messages)


def do_title(*, check: TitleCheck) -> TitleJob:
    """Reserve the title call's worst case against the owner's budget (BudgetExceeded when it does not fit)."""
    model = check.model
    path, body = upstream_request(model, check.prompt_messages, dict(TITLE_PARAMS))
    reservation_id = budget_reserve(user_id=check.owner_id, amount=worst_case_cost(
        prompt_tokens=count_prompt_tokens(check.prompt_messages),
        max_tokens=TITLE_MAX_TOKENS,
        input_price=model.input_price,
        output_price=model.output_price,
    ))
    return TitleJob(
        user_id=check.owner_id,
        conversation_id=check.conversation_id,
        message_id=check.message_id,
        default_title=check.default_title,
        target=upstream_target(model.provider),
        path=path,
        body=body,
        prompt_messages=check.prompt_messages,
        priced=Priced.of(model),
        reservation_id=reservation_id,
    )


# --- chat.estimate (read only) ----------------------------------------------------------------------------------
def reply_estimate(*, user: User, command: ChatEstimate) -> dict[str, Any]:
    """The `chat.estimate` answer: the prompt's tokens as it would go upstream (system prompt, the shown branch and
    the draft, with their attachments: documents' text, images by the model's rule; counted offline) and the cost if
    the reply ran to its cap (the request's max_tokens, else the model's)."""
    model = _usable(user, command.model, f"no model named {command.model!r} is available to you")
    params = _clean_params(model, command.params)
    branch: list[BranchLine] = []
    system = command.system
    conversation: Conversation | None = None
    if command.conversation_id is not None:
        conversation = Conversation.objects.for_user(user).filter(pk=command.conversation_id).first()
        if conversation is None:
            raise NotFound("no such conversation")
        if conversation.active_leaf_id is not None:
            branch = branch_lines(conversation, conversation.active_leaf_id)
        if system is None:
            system = conversation.system_prompt
    attached = attachments_by_message(
        m.pk for m in branch if m.role == Message.Role.USER and getattr(m, "has_attachments", False)
    )
    if command.content or command.attachments:
        # The draft is no stored message yet: it goes under an id no stored message has.
        draft = BranchLine(DRAFT_ID, None, Message.Role.USER, command.content)
        branch = [*branch, draft]
        attached[DRAFT_ID] = attachments_for_send(
            user=user, ids=command.attachments, conversation=conversation, model=model
        )
    # Counted, never sent: images by their ids and stored sizes rather than their bytes.
    messages = chat_messages(system or "", branch, attached, model, image_url=attachment_reference)
    prompt_tokens = count_prompt_tokens(
        messages, image_rule=model.image_tokens,
        image_sizes=attachment_image_sizes(a for found in attached.values() for a in found),
    )
    max_cost = worst_case_cost(
        prompt_tokens=prompt_tokens,
        max_tokens=params.get("max_tokens") or model.max_output_tokens,
        input_price=model.input_price,
        output_price=model.output_price,
    )
    return {
        "type": "chat.estimate",
        "request_id": command.request_id,
        "prompt_tokens": prompt_tokens,
        "max_cost": format(max_cost.quantize(Decimal("1E-10")).normalize(), "f") if max_cost else "0",
        "estimated": True,
        "priced": model.priced,
    }
