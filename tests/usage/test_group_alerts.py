"""Budget alerts of a group's shared budget: once per threshold and month, to its members and managers, and the
chat page's cost lines (budget.json) that the page fetches again after each reply."""

from __future__ import annotations

import threading
from decimal import Decimal

import pytest
from django.contrib.auth.models import Group
from django.core import mail
from django.db import close_old_connections, transaction

from conversations.models import BudgetAlert, BudgetReservation, Conversation, Team, User
from conversations.upstream.events import Usage
from conversations.usage.budgets import budgets_apply
from conversations.usage.ledger import Priced, usage_record


def ledger_row(user: User, cost: str, *, conversation: Conversation | None = None) -> None:
    """A reply billed at `cost`, written as the ledger's writer does (with the reservation its admission holds
    when a budget applies; the spend may run past the budget, as a reply longer than its estimate does)."""
    with transaction.atomic():
        reservation_id = (
            BudgetReservation.objects.create(user=user, amount=0).pk if budgets_apply(user_id=user.pk) else None
        )
        usage_record(
            user_id=user.pk, source="chat", priced=Priced("acme", "acme/m", None, None),
            usage=Usage(10, 5, 15, Decimal(cost)), prompt_messages=[], completion_text="hi", finish_reason="stop",
            ttft_ms=1, duration_ms=2, reservation_id=reservation_id,
            conversation_id=conversation.pk if conversation else None,
        )


@pytest.fixture
def lab(alice, bob):
    """Group "lab" with a shared budget of 1 USD: alice and bob members, carol its manager (not a member),
    dave in no group."""
    group = Group.objects.create(name="lab")
    team = Team.objects.create(group=group, monthly_budget=Decimal(1))
    for user, email in ((alice, "alice@example.com"), (bob, "bob@example.com")):
        user.email = email
        user.save()
        user.groups.add(group)
    carol = User.objects.create_user("carol", email="carol@example.com", password="pw-carol-123")
    team.managers.add(carol)
    User.objects.create_user("dave", email="dave@example.com", password="pw-dave-123")
    return team


@pytest.mark.django_db(transaction=True)  # the emails go when the ledger's transaction commits
def test_a_group_budget_alerts_its_members_and_managers_once_per_threshold(alice, bob, lab, client):
    ledger_row(alice, "0.5")
    assert mail.outbox == []
    ledger_row(bob, "0.35")  # 85 % of the group's budget, spent by two members
    assert sorted(m.to[0] for m in mail.outbox) == ["alice@example.com", "bob@example.com", "carol@example.com"]
    assert all(len(m.to) == 1 for m in mail.outbox)  # one message each: no member sees another's address
    assert all("80% of group lab's monthly budget of 1 USD used" in m.subject for m in mail.outbox)
    ledger_row(alice, "0.05")
    assert len(mail.outbox) == 3
    ledger_row(bob, "0.2")  # 110 %
    assert len(mail.outbox) == 6 and "group lab's monthly budget of 1 USD is used up" in mail.outbox[-1].subject
    assert "refused" in mail.outbox[-1].body
    ledger_row(alice, "0.2")
    assert len(mail.outbox) == 6
    alert = BudgetAlert.objects.get(team=lab, threshold=100)
    assert alert.user_id == bob.pk  # whose reply crossed it
    # Members and the manager see the notice on the chat page; someone outside the group does not.
    for username, sees in (("alice", True), ("bob", True), ("carol", True), ("dave", False)):
        client.force_login(User.objects.get(username=username))
        page = client.get("/").content.decode()
        assert ("group lab&#x27;s monthly budget of 1 USD is used up" in page) is sees, username


@pytest.mark.django_db(transaction=True)
def test_a_users_own_alert_and_the_groups_are_separate(alice, lab):
    alice.monthly_budget = Decimal(1)
    alice.save()
    ledger_row(alice, "0.9")  # 90 % of both
    assert set(BudgetAlert.objects.values_list("team_id", "threshold")) == {(None, 80), (lab.pk, 80)}
    subjects = sorted(m.subject for m in mail.outbox if m.to == ["alice@example.com"])
    assert len(subjects) == 2 and any("your monthly budget" in s for s in subjects)


@pytest.mark.django_db(transaction=True)
def test_group_alerts_fire_once_under_concurrent_sends_of_several_members(alice, bob, lab):
    members = [alice, bob] + [User.objects.create_user(f"m{i}", email=f"m{i}@example.com") for i in range(2)]
    for member in members[2:]:
        member.groups.add(lab.group)
    barrier = threading.Barrier(8)
    failures: list[BaseException] = []

    def send_one(user: User) -> None:
        try:
            barrier.wait()
            ledger_row(user, "0.3")
        except BaseException as exc:
            failures.append(exc)
        finally:
            close_old_connections()

    threads = [threading.Thread(target=send_one, args=(members[i % 4],)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures
    assert sorted(BudgetAlert.objects.filter(team=lab).values_list("threshold", flat=True)) == [80, 100]
    # Each threshold once, to each of the four members and the manager.
    assert len(mail.outbox) == 2 * 5
    assert len({(m.subject, m.to[0]) for m in mail.outbox}) == 10


@pytest.mark.django_db
def test_budget_json_gives_the_conversation_total_the_groups_and_the_alerts(alice, bob, lab, client):
    conversation = Conversation.objects.create(owner=alice, title="t")
    bobs = Conversation.objects.create(owner=bob, title="b")
    ledger_row(alice, "0.25", conversation=conversation)
    ledger_row(alice, "0.6", conversation=conversation)
    ledger_row(bob, "0.05", conversation=bobs)
    client.force_login(alice)
    status = client.get(f"/usage/budget.json?conversation={conversation.pk}").json()
    assert status["conversation"] == {"id": conversation.pk, "cost": "0.85", "requests": 2}
    assert status["groups"] == [{"name": "lab", "label": "$0.10 of $1.00 left this month",
                                 "title": status["groups"][0]["title"], "over": False}]
    assert status["alerts"] == ["80% of group lab's monthly budget of 1 USD used (" + status["alerts"][0][-14:]]
    # Someone else's conversation counts nothing of theirs; a bad id is a clear error.
    other = client.get(f"/usage/budget.json?conversation={bobs.pk}").json()["conversation"]
    assert other == {"id": bobs.pk, "cost": "0", "requests": 0}
    bad = client.get("/usage/budget.json?conversation=x")
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "bad_conversation"
