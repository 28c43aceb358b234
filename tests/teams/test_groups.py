"""Groups as teams: the group command, shared budgets under concurrent members, managers' usage views, models
limited to groups over the websocket, /v1 and the providers file."""

from __future__ import annotations

import io
import json
from datetime import timedelta
from decimal import Decimal

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth.models import Group
from django.core.management import CommandError, call_command
from django.test import AsyncClient, Client
from django.utils import timezone

from conversations.accounts.apikeys import api_key_create
from conversations.accounts.teams import user_groups_sync
from conversations.api.auth import _key_by_prefix
from conversations.catalog.providers_file import providers_apply, providers_export
from conversations.errors import BudgetExceeded
from conversations.models import AuditLog, BudgetReservation, Message, Model, Team, UsageRecord, User
from conversations.usage.budgets import budget_reserve, team_budget_status, user_budget_set, user_team_budgets
from conversations.usage.rollup import usage_day_add
from tests.chat_helpers import chat_send, connect, make_model, send, until
from tests.usage.test_budgets import _in_threads


def spend(user: User, cost: str, model: str = "dev/m") -> UsageRecord:
    record = UsageRecord.objects.create(
        user=user, source="api", provider_name="dev", model_name=model, total_tokens=7,
        estimated_cost=Decimal(cost), cost_source="price", created_at=timezone.now() - timedelta(seconds=5),
    )
    usage_day_add(record=record)
    return record


# --- The command -------------------------------------------------------------------------------------------

@pytest.mark.django_db
def test_group_command_creates_and_updates_budget_members_and_managers_with_the_audit_trail(alice, bob, staff):
    out = io.StringIO()
    call_command("group", "lab", "--monthly", "20.00", "--add", "alice", "bob", "--manager", "staff", stdout=out)
    team = Team.objects.get(group__name="lab")
    assert team.monthly_budget == Decimal("20.00")
    assert set(team.group.user_set.values_list("username", flat=True)) == {"alice", "bob", "staff"}
    assert list(team.managers.values_list("username", flat=True)) == ["staff"]
    text = out.getvalue()
    assert "group lab: monthly budget $20.00" in text and "members: alice, bob, staff" in text
    assert "managers: staff" in text
    created = AuditLog.objects.get(object_type="team")
    assert created.action == "created" and created.source == "group command"
    assert {"monthly_budget", "managers", "members"} <= set(created.fields)

    call_command("group", "lab", "--clear", "--remove", "bob", stdout=io.StringIO())
    team.refresh_from_db()
    assert team.monthly_budget is None
    assert not bob.groups.filter(name="lab").exists()
    changed = AuditLog.objects.filter(object_type="team", action="changed").get()
    assert set(changed.fields) == {"monthly_budget", "members"}


@pytest.mark.django_db
@pytest.mark.parametrize(("args", "message"), [
    (["--add", "nobody"], "no user named 'nobody'"),
    (["--monthly", "-1"], "positive amount"),
    (["--monthly", "ten"], "not an amount"),
])
def test_group_command_refuses_bad_input_and_changes_nothing(alice, args, message):
    with pytest.raises(CommandError, match=message):
        call_command("group", "lab", *args, stdout=io.StringIO())
    assert not Group.objects.filter(name="lab").exists() and not Team.objects.exists()


# --- Shared budgets ----------------------------------------------------------------------------------------

def _lab(budget: str, *members: User) -> Team:
    group = Group.objects.create(name="lab")
    group.user_set.add(*members)
    return Team.objects.create(group=group, monthly_budget=Decimal(budget))


@pytest.mark.django_db
def test_a_group_budget_counts_every_members_spend_and_reservations(alice, bob, staff):
    team = _lab("1.00", alice, bob)
    spend(alice, "0.30")
    spend(bob, "0.20")
    spend(staff, "5.00")  # not a member
    BudgetReservation.objects.create(user=bob, amount=Decimal("0.10"))
    status = team_budget_status(team)
    assert status is not None
    assert (status.spent, status.reserved, status.remaining) == (Decimal("0.5"), Decimal("0.1"), Decimal("0.4"))
    with pytest.raises(BudgetExceeded) as refused:
        budget_reserve(user_id=alice.pk, amount=Decimal("0.5"))
    assert refused.value.group == "lab" and "monthly budget of group 'lab'" in str(refused.value)
    assert budget_reserve(user_id=staff.pk, amount=Decimal("0.5")) is None  # no budget applies to staff
    assert isinstance(budget_reserve(user_id=alice.pk, amount=Decimal("0.4")), int)
    assert [s.name for s in user_team_budgets(alice)] == ["lab"]


@pytest.mark.django_db
def test_the_users_own_budget_is_named_when_it_is_the_one_that_does_not_fit(alice):
    _lab("10.00", alice)
    alice.monthly_budget = Decimal("0.01")
    alice.save()
    with pytest.raises(BudgetExceeded) as refused:
        budget_reserve(user_id=alice.pk, amount=Decimal("0.05"))
    assert refused.value.group is None and "your monthly budget" in str(refused.value)


@pytest.mark.django_db(transaction=True)
def test_concurrent_reservations_of_two_members_never_overcommit_their_group(alice, bob):
    _lab("0.0350", alice, bob)
    members = [alice, bob]
    amount = Decimal("0.01")
    results = _in_threads(10, lambda i: budget_reserve(user_id=members[i % 2].pk, amount=amount))
    admitted = [r for r in results if isinstance(r, int)]
    refused = [r for r in results if isinstance(r, BudgetExceeded)]
    assert len(admitted) == 3 and len(refused) == 7, results
    assert all(r.group == "lab" for r in refused)
    held = sum(BudgetReservation.objects.values_list("amount", flat=True))
    assert held == Decimal("0.03")


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("upstream_http")
async def test_a_send_over_the_group_budget_is_refused_naming_the_group_before_going_upstream(
    alice, dev_upstream, nonce
):
    model = await sync_to_async(make_model)(dev_upstream.v1(key=nonce))
    await sync_to_async(_lab)("0.0010", alice)
    ws = await connect(alice)
    await send(ws, chat_send(model.public_name))
    frame, seen = await until(ws, "chat.error")
    assert not any(f["type"] == "chat.started" for f in seen)
    assert frame["code"] == "budget_exceeded" and "group 'lab'" in frame["message"]
    await ws.disconnect()
    assert dev_upstream.stats(nonce)["requests"] == 0
    assert await Message.objects.filter(role="assistant").acount() == 0


@pytest.mark.django_db(transaction=True)
async def test_an_api_call_over_the_group_budget_is_429_naming_the_group(alice, dev_upstream, nonce):
    model = await sync_to_async(make_model)(dev_upstream.v1(key=nonce))
    await sync_to_async(_lab)("0.0010", alice)
    _, raw = await sync_to_async(api_key_create)(user=alice, name="t")
    response = await AsyncClient().post(
        "/v1/chat/completions",
        json.dumps({"model": model.public_name, "messages": [{"role": "user", "content": "hi"}]}),
        content_type="application/json", headers={"Authorization": f"Bearer {raw}"},
    )
    assert response.status_code == 429
    error = json.loads(response.content)["error"]
    assert error["code"] == "budget_exceeded" and "group 'lab'" in error["message"]
    assert dev_upstream.stats(nonce)["requests"] == 0


@pytest.mark.django_db
def test_the_chat_page_names_each_group_budget(alice):
    _lab("5.00", alice)
    client = Client()
    client.force_login(alice)
    page = client.get("/").content.decode()
    assert 'data-group="lab"' in page and "Group lab: $5.00 of $5.00 left this month" in page


# --- Managers' usage views ---------------------------------------------------------------------------------

@pytest.fixture
def lab_usage(alice, bob, staff):
    team = _lab("20.00", alice, bob)
    carol = User.objects.create_user("carol", password="pw-carol-12345")
    team.managers.add(carol)
    other = Group.objects.create(name="other")
    Team.objects.create(group=other).managers.add(alice)
    spend(alice, "0.25", "dev/a")
    spend(bob, "0.50", "dev/b")
    spend(staff, "9.00", "dev/secret")
    return carol


def _as(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.mark.django_db
def test_a_manager_sees_the_groups_usage_on_the_dashboard_export_and_summary(lab_usage):
    client = _as(lab_usage)
    page = client.get("/usage/?group=lab")
    assert page.status_code == 200
    html = page.content.decode()
    assert "group lab" in html and 'id="by-member"' in html and "dev/secret" not in html
    assert 'id="group-budget-remaining">$19.2500' in html
    summary = client.get("/usage/summary.json?group=lab").json()
    assert summary["group"] == "lab" and summary["totals"]["estimated_cost"] == "0.75"
    assert summary["totals"]["requests"] == 2
    assert {m["model"] for m in summary["by_model"]} == {"dev/a", "dev/b"}
    export = client.get("/usage/export.csv?group=lab")
    assert export.status_code == 200
    rows = b"".join(export.streaming_content).decode().strip().splitlines()
    assert rows[0].endswith(",user") and len(rows) == 3
    assert {r.rsplit(",", 1)[1] for r in rows[1:]} == {"alice", "bob"}


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/usage/", "/usage/summary.json", "/usage/export.csv"])
def test_anyone_but_the_groups_managers_and_staff_gets_404(lab_usage, alice, bob, staff, path):
    assert _as(bob).get(f"{path}?group=lab").status_code == 404  # a member, not a manager
    assert _as(alice).get(f"{path}?group=lab").status_code == 404  # manages another group
    assert _as(lab_usage).get(f"{path}?group=other").status_code == 404  # a manager of lab, not of other
    assert _as(lab_usage).get(f"{path}?group=nothing").status_code == 404
    assert _as(alice).get(f"{path}?group=other").status_code == 200
    assert _as(staff).get(f"{path}?group=lab").status_code == 200


# --- Models limited to groups ------------------------------------------------------------------------------

@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("upstream_http")
async def test_a_group_model_is_unknown_over_the_websocket_to_non_members_and_usable_by_members(
    alice, bob, dev_upstream, nonce
):
    def setup() -> Model:
        model = make_model(dev_upstream.v1(key=nonce))
        lab = Group.objects.create(name="lab")
        model.allowed_groups.add(lab)
        lab.user_set.add(alice)
        return model

    model = await sync_to_async(setup)()
    ws = await connect(bob)
    await send(ws, chat_send(model.public_name))
    frame, _ = await until(ws, "chat.error")
    assert frame["code"] == "not_found"
    await ws.disconnect()
    ws = await connect(alice)
    await send(ws, chat_send(model.public_name))
    done, _ = await until(ws, "chat.done")
    await ws.disconnect()
    assert done["type"] == "chat.done"


@pytest.mark.django_db
def test_the_picker_shows_only_usable_models(alice, bob):
    model = make_model("http://127.0.0.1:9/v1")
    secret = Model.objects.create(provider=model.provider, upstream_id="secret")
    lab = Group.objects.create(name="lab")
    secret.allowed_groups.add(lab)
    lab.user_set.add(alice)
    assert "dev/secret" in _as(alice).get("/").content.decode()
    assert "dev/secret" not in _as(bob).get("/").content.decode()


@pytest.mark.django_db
def test_providers_file_groups_limit_a_model_and_are_exported(alice):
    text = """
[[provider]]
name = "dev"
base_url = "http://127.0.0.1:9/v1"
[[provider.model]]
id = "open"
[[provider.model]]
id = "lab-only"
groups = ["lab"]
"""
    providers_apply(text=text)
    model = Model.objects.get(upstream_id="lab-only")
    assert list(model.allowed_groups.values_list("name", flat=True)) == ["lab"]
    assert not Model.objects.get(upstream_id="open").allowed_groups.exists()
    assert 'groups = ["lab"]' in providers_export()
    entry = AuditLog.objects.get(object_type="model", object_id=str(model.pk))
    assert "allowed_groups" in entry.fields
    providers_apply(text=text.replace('groups = ["lab"]', "groups = []"))
    assert not model.allowed_groups.exists()
    assert "allowed_groups" in AuditLog.objects.filter(object_type="model", action="changed").get().fields


@pytest.mark.django_db
def test_sign_in_group_sync_follows_the_claim_exactly(alice):
    user_groups_sync(user=alice, names=["lab", "ops"])
    assert set(alice.groups.values_list("name", flat=True)) == {"lab", "ops"}
    user_groups_sync(user=alice, names=["ops"])
    assert list(alice.groups.values_list("name", flat=True)) == ["ops"]


@pytest.mark.django_db
def test_the_admin_sets_a_groups_budget_and_managers_with_the_audit_trail(staff, alice):
    staff.is_superuser = True
    staff.save()
    client = _as(staff)
    group = Group.objects.create(name="lab")
    page = client.get(f"/admin/auth/group/{group.pk}/change/")
    assert page.status_code == 200 and "team settings" in page.content.decode().lower()
    response = client.post(f"/admin/auth/group/{group.pk}/change/", {
        "name": "lab",
        "team-TOTAL_FORMS": "1", "team-INITIAL_FORMS": "0", "team-MIN_NUM_FORMS": "0", "team-MAX_NUM_FORMS": "1",
        "team-0-group": str(group.pk), "team-0-monthly_budget": "12.50", "team-0-managers": [str(alice.pk)],
    })
    assert response.status_code == 302, response.content.decode()[:2000]
    team = Team.objects.get(group=group)
    assert team.monthly_budget == Decimal("12.50") and list(team.managers.all()) == [alice]
    entry = AuditLog.objects.get(object_type="team")
    assert entry.source == "admin" and "monthly_budget" in entry.fields


@pytest.mark.django_db
def test_a_groups_forecast_is_its_members_spend_against_the_shared_budget(lab_usage):
    from django.conf import settings

    from conversations.models import UsageRecord
    from conversations.usage.days import zone_named
    from conversations.usage.forecast import spend_forecast

    client = _as(lab_usage)
    forecast = client.get("/usage/summary.json?group=lab").json()["forecast"]
    assert Decimal(forecast["budget"]) == Decimal("20")
    members = UsageRecord.objects.filter(user__username__in=["alice", "bob"])  # not staff's spend outside the group
    expected = spend_forecast(records=members, zone=zone_named(settings.TIME_ZONE), budget=Decimal("20"))
    assert forecast == expected.as_json()
    assert Decimal(forecast["month_end_cost"]) >= Decimal("0.75")
    assert 'id="forecast-month-end"' in client.get("/usage/?group=lab").content.decode()


@pytest.mark.django_db
def test_whether_a_budget_applies_is_the_orms_answer(alice, bob, staff):
    from django.db.models import Exists, OuterRef, Q

    from conversations.usage.budgets import budgets_apply

    alice.monthly_budget = Decimal("5")
    alice.save()
    _lab("20.00", bob)
    staff.groups.add(Group.objects.create(name="unbudgeted"))
    Team.objects.create(group=Group.objects.get(name="unbudgeted"))
    shared = Team.objects.filter(group__user=OuterRef("pk"), monthly_budget__isnull=False)
    prefixes = {user: api_key_create(user=user)[1][:12] for user in (alice, bob, staff)}
    for user in (alice, bob, staff):
        orm = User.objects.filter(pk=user.pk).filter(Q(monthly_budget__isnull=False) | Exists(shared)).exists()
        assert budgets_apply(user_id=user.pk) is orm
        assert _key_by_prefix(prefixes[user]).budgeted is orm  # read with the key, in the key's statement
    assert [budgets_apply(user_id=u.pk) for u in (alice, bob, staff)] == [True, True, False]
    user_budget_set(user=alice, monthly=None)  # the key's row is the same, the answer beside it is not
    assert _key_by_prefix(prefixes[alice]).budgeted is budgets_apply(user_id=alice.pk) is False
