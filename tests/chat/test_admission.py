"""The chat's admission as check/do pairs: what a check refuses, that it only reads, the queries each step costs,
and the hand-written lock statement equal to the ORM's answer."""

from __future__ import annotations

from zoneinfo import ZoneInfo

import pytest
from django.contrib.auth.models import Group
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from conversations.catalog.access import model_for_user
from conversations.chat.admission import (
    BUSY,
    REPLY_IN_PROGRESS,
    admit,
    check_reply_edit,
    check_reply_regenerate,
    check_reply_send,
    do_reply_edit,
    do_reply_regenerate,
    do_reply_send,
    user_lock_replies_streaming,
)
from conversations.chat.commands import ChatEdit, ChatRegenerate, ChatSend
from conversations.errors import BadRequest, BudgetExceeded, ModelUnavailable, NotFound, ReplyInProgress
from conversations.models import Conversation, Message, Model, Team
from tests.chat_helpers import make_model

pytestmark = pytest.mark.django_db

WRITES = ("INSERT", "UPDATE", "DELETE")


@pytest.fixture
def model(db) -> Model:
    return make_model("http://127.0.0.1:9/v1")


def chain(conversation: Conversation, *contents: str, last_status: str = Message.Status.COMPLETE) -> list[Message]:
    """Messages one after another (user, assistant, ...), the last one shown and of status `last_status`."""
    made: list[Message] = []
    parent = None
    for i, content in enumerate(contents):
        last = i == len(contents) - 1
        parent = Message.objects.create(
            conversation=conversation, parent=parent, role="user" if i % 2 == 0 else "assistant", content=content,
            status=last_status if last else Message.Status.COMPLETE,
        )
        made.append(parent)
    conversation.active_leaf = parent
    conversation.save()
    return made


def send(model: Model, conversation: Conversation | None = None, **extra) -> ChatSend:
    return ChatSend(request_id="r1", conversation_id=conversation.pk if conversation else None,
                    model=model.public_name, content="And then?", **extra)


def writes(queries: CaptureQueriesContext) -> list[str]:
    return [q["sql"] for q in queries.captured_queries if q["sql"].lstrip().upper().startswith(WRITES)]


@pytest.mark.parametrize("status", BUSY)
def test_a_send_after_a_reply_still_being_written_is_refused(alice, model, status):
    conversation = Conversation.objects.create(owner=alice, model=model)
    question, answer = chain(conversation, "Why?", "Because", last_status=status)
    for command in (send(model, conversation), send(model, conversation, parent_id=answer.pk),
                    send(model, parent_id=answer.pk)):
        with pytest.raises(ReplyInProgress) as refused:
            check_reply_send(user=alice, command=command)
        assert refused.value.code == "reply_in_progress" and refused.value.message == REPLY_IN_PROGRESS
    # Answering an earlier message (a branch beside the reply being written) is allowed.
    assert check_reply_send(user=alice, command=send(model, conversation, parent_id=question.pk)).parent == question


def test_a_reply_that_started_between_check_and_do_is_seen_under_the_lock(alice, model):
    conversation = Conversation.objects.create(owner=alice, model=model)
    chain(conversation, "Why?", "Because")
    check = check_reply_send(user=alice, command=send(model, conversation))
    plan = admit(check_reply_send, do_reply_send, user=alice, command=send(model, conversation))  # another tab
    assert Message.objects.get(pk=plan.message_id).status == Message.Status.STREAMING
    with pytest.raises(ReplyInProgress):
        do_reply_send(check=check)


def test_checks_refuse_with_domain_errors(alice, bob, model):
    conversation = Conversation.objects.create(owner=alice, model=model)
    question, answer = chain(conversation, "Why?", "Because")
    with pytest.raises(NotFound):
        check_reply_send(user=bob, command=send(model, conversation))
    with pytest.raises(NotFound):
        check_reply_send(user=bob, command=send(model, parent_id=answer.pk))
    with pytest.raises(NotFound, match="in this conversation"):
        check_reply_send(user=alice, command=send(model, conversation, parent_id=10**9))
    with pytest.raises(ModelUnavailable) as unavailable:
        check_reply_send(user=alice, command=ChatSend(request_id=None, conversation_id=None, model="nope", content="x"))
    assert unavailable.value.code == "not_found"
    with pytest.raises(BadRequest) as bad:
        check_reply_send(user=alice, command=send(model, params={"temperature": 9}))
    assert bad.value.code == "bad_request"
    with pytest.raises(NotFound):
        check_reply_regenerate(user=bob, command=ChatRegenerate(message_id=answer.pk))
    with pytest.raises(NotFound):
        check_reply_edit(user=alice, command=ChatEdit(message_id=answer.pk, content="x"))  # not a user message
    model.enabled = False
    model.save()
    with pytest.raises(ModelUnavailable, match="no longer available"):
        check_reply_edit(user=alice, command=ChatEdit(message_id=question.pk, content="x"))


def test_the_budget_is_decided_under_the_lock_in_do(alice, model):
    model.input_price = model.output_price = 1000
    model.save()
    alice.monthly_budget = 0
    alice.save()
    check = check_reply_send(user=alice, command=send(model))  # the check never asks the budget
    with pytest.raises(BudgetExceeded) as refused:
        do_reply_send(check=check)
    assert refused.value.code == "budget_exceeded"
    assert not Conversation.objects.exists() and not Message.objects.exists()  # the transaction rolled back


@pytest.mark.parametrize("pairs", [1, 20])
def test_checks_only_read_and_each_step_costs_the_same_queries_however_long_the_conversation(alice, model, pairs):
    conversation = Conversation.objects.create(owner=alice, model=model)
    made = chain(conversation, *(["Why?", "Because"] * pairs))
    actions = [
        (check_reply_send, do_reply_send, {"command": send(model, conversation)}, 2, 8),
        (check_reply_send, do_reply_send, {"command": send(model)}, 1, 6),
        (check_reply_regenerate, do_reply_regenerate, {"command": ChatRegenerate(message_id=made[1].pk)}, 2, 5),
        (check_reply_edit, do_reply_edit, {"command": ChatEdit(message_id=made[0].pk, content="How?")}, 2, 6),
    ]
    model_for_user(alice, model.public_name)  # the model's row turned into objects once per process (rows.py)
    for check_step, do_step, kwargs, check_reads, do_queries in actions:
        with CaptureQueriesContext(connection) as checking:
            check = check_step(user=alice, **kwargs)
        assert not writes(checking), check_step.__name__
        assert len(checking) == check_reads, (check_step.__name__, checking.captured_queries)
        with CaptureQueriesContext(connection) as doing:
            plan = do_step(check=check)
        statements = [q["sql"] for q in doing.captured_queries if not q["sql"].startswith(("BEGIN", "SAVEPOINT",
                                                                                            "RELEASE"))]
        assert len(statements) <= do_queries, (do_step.__name__, statements)
        Message.objects.filter(pk=plan.message_id).update(status=Message.Status.COMPLETE)


def test_the_lock_statement_equals_the_orm(alice, bob, model):
    conversation = Conversation.objects.create(owner=alice, model=model)
    chain(conversation, "a", "b", last_status=Message.Status.STREAMING)
    chain(Conversation.objects.create(owner=alice), "c", "d", last_status=Message.Status.PENDING)
    chain(Conversation.objects.create(owner=alice), "e", "f")
    chain(Conversation.objects.create(owner=bob), "g", "h", last_status=Message.Status.STREAMING)
    alice.monthly_budget = 12.5
    alice.save()
    lab = Group.objects.create(name="lab")
    Team.objects.create(group=lab, monthly_budget=20)
    bob.groups.add(lab, Group.objects.create(name="unbudgeted"))
    for user in (alice, bob):
        user.refresh_from_db()
        expected = Message.objects.for_user(user).filter(role=Message.Role.ASSISTANT, status__in=BUSY).count()
        shared = Team.objects.filter(group__user=user, monthly_budget__isnull=False).exists()
        with transaction.atomic():
            assert user_lock_replies_streaming(user_id=user.pk) == (
                user.monthly_budget, user.timezone, expected, shared
            )


def test_the_finish_counts_the_reply_on_the_owners_day_without_asking_for_their_time_zone(alice, model):
    """The time zone is read with the admission's lock (fresh: changed after the socket opened) and travels in the
    plan, so the finish's roll-up writes ask nothing more of the user's row."""
    from conversations.chat.replies import ReplyOutcome, reply_finish
    from conversations.models import UsageDay, UsageRecord, User
    from conversations.upstream.events import Usage

    User.objects.filter(pk=alice.pk).update(timezone="Pacific/Kiritimati")  # UTC+14: a day ahead of UTC
    plan = admit(check_reply_send, do_reply_send, user=alice, command=send(model))  # `alice`: the stale object
    assert plan.owner_tz == "Pacific/Kiritimati"
    outcome = ReplyOutcome(content="Then the tide turns.", reasoning="", status=Message.Status.COMPLETE,
                           finish_reason="stop", seq=1, usage=Usage(10, 5, 15))
    with CaptureQueriesContext(connection) as queries:
        reply_finish(plan=plan, outcome=outcome)
    users = connection.ops.quote_name(User._meta.db_table)
    assert not [q["sql"] for q in queries.captured_queries if f"FROM {users}" in q["sql"]]
    day, record = UsageDay.objects.get(user=alice), UsageRecord.objects.get(user=alice)
    assert day.tz == "Pacific/Kiritimati" and day.requests == 1
    assert day.day == record.created_at.astimezone(ZoneInfo("Pacific/Kiritimati")).date()


@pytest.mark.django_db
def test_the_estimates_branch_lines_are_the_branch(alice):
    from conversations.chat.selectors import branch_lines, conversation_branch

    conversation = Conversation.objects.create(owner=alice, title="t")
    _, answer, second, _last = chain(conversation, "q1", "a1", "q2", "a2")
    Message.objects.create(conversation=conversation, parent=second, role="assistant", content="a2, again")
    conversation.refresh_from_db()
    as_tuples = [(m.pk, m.parent_id, m.role, m.content, m.has_attachments) for m in conversation_branch(conversation)]
    assert [tuple(line) for line in branch_lines(conversation)] == as_tuples
    assert [line.content for line in branch_lines(conversation, answer.pk)] == ["q1", "a1"]
    conversation.active_leaf = None
    newest = [m.content for m in conversation_branch(conversation)]
    assert [line.content for line in branch_lines(conversation)] == newest == ["q1", "a1", "q2", "a2, again"]
