"""Monthly budgets: the command, the month in the user's zone, concurrent reservations, refusal up front."""

from __future__ import annotations

import io
import json
import threading
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
from django.contrib.sessions.backends.db import SessionStore
from django.core.management import CommandError, call_command
from django.db import close_old_connections, connection, transaction
from django.utils import timezone

from chatweb.asgi import application
from conversations.models import AuditLog, BudgetReservation, Message, Model, Provider, UsageRecord, User
from conversations.upstream.events import Usage
from conversations.usage.budgets import (
    BudgetExceeded,
    budget_remaining,
    budget_reserve,
    budget_settle,
    budget_status,
    month_spend,
    month_start,
    worst_case_cost,
)
from conversations.usage.ledger import Priced, usage_record
from conversations.usage.rollup import usage_day_add


def spend(user: User, at: datetime, cost: str, *, hook: bool = True) -> UsageRecord:
    record = UsageRecord.objects.create(
        user=user, source="api", provider_name="dev", model_name="dev/m", total_tokens=1,
        estimated_cost=Decimal(cost), cost_source="price", created_at=at,
    )
    if hook:
        usage_day_add(record=record)
    return record


# --- The command -------------------------------------------------------------------------------------------

@pytest.mark.django_db
def test_budget_command_sets_shows_and_clears_and_is_audited(alice):
    out = io.StringIO()
    call_command("budget", "alice", "--monthly", "5.00", stdout=out)
    alice.refresh_from_db()
    assert alice.monthly_budget == Decimal("5.00")
    assert "alice: monthly budget $5.00" in out.getvalue() and "$5.00 left" in out.getvalue()
    entry = AuditLog.objects.get(object_type="user", object_id=str(alice.pk))
    assert entry.fields == ["monthly_budget"] and entry.action == "changed"
    assert entry.source == "budget command"

    out = io.StringIO()
    call_command("budget", "alice", stdout=out)  # no option: show
    assert "monthly budget $5.00" in out.getvalue()
    assert AuditLog.objects.count() == 1

    out = io.StringIO()
    call_command("budget", "alice", "--clear", stdout=out)
    alice.refresh_from_db()
    assert alice.monthly_budget is None and out.getvalue().strip() == "alice: no monthly budget"
    assert AuditLog.objects.count() == 2


@pytest.mark.django_db
@pytest.mark.parametrize("args, message", [
    (["nobody", "--monthly", "5"], "no user named 'nobody'"),
    (["alice", "--monthly", "five"], "is not an amount"),
    (["alice", "--monthly", "-1"], "positive amount"),
    (["alice", "--monthly", "1.00001"], "at most 4 decimal places"),
])
def test_budget_command_refuses_bad_input(alice, args, message):
    with pytest.raises(CommandError, match=message):
        call_command("budget", *args, stdout=io.StringIO())
    alice.refresh_from_db()
    assert alice.monthly_budget is None


# --- Spend, the month, reservations ------------------------------------------------------------------------

@pytest.mark.django_db
@pytest.mark.parametrize("hook", [True, False])  # from the roll-up; from the ledger when it is behind
def test_the_month_starts_at_midnight_in_the_users_zone(alice, hook):
    alice.timezone = "America/Los_Angeles"
    alice.save()
    spend(alice, datetime(2025, 5, 1, 6, 59, tzinfo=UTC), "1.5", hook=hook)  # April 30, 23:59 in Los Angeles
    spend(alice, datetime(2025, 5, 1, 7, 0, tzinfo=UTC), "0.25", hook=hook)  # May 1, 00:00
    spend(alice, datetime(2025, 5, 20, tzinfo=UTC), "0.0000000001", hook=hook)
    now = datetime(2025, 5, 20, 12, tzinfo=UTC)
    assert month_start(alice, now) == datetime(2025, 5, 1, 7, 0, tzinfo=UTC)
    assert month_spend(alice, now) == Decimal("0.2500000001")
    assert month_start(alice, datetime(2025, 5, 1, 6, 0, tzinfo=UTC)) == datetime(2025, 4, 1, 7, tzinfo=UTC)


@pytest.mark.django_db
def test_status_and_remaining_count_spend_and_open_reservations_not_stale_ones(alice):
    assert budget_status(alice) is None and budget_remaining(alice) is None
    assert budget_reserve(user_id=alice.pk, amount=Decimal(100)) is None  # no budget, no reservation
    alice.monthly_budget = Decimal("2.0000")
    alice.save()
    spend(alice, timezone.now() - timedelta(minutes=5), "0.5")
    spend(alice, timezone.now() - timedelta(days=40), "9")  # an earlier month
    open_id = budget_reserve(user_id=alice.pk, amount=Decimal("0.25"))
    stale = BudgetReservation.objects.create(
        user=alice, amount=Decimal(1), created_at=timezone.now() - timedelta(hours=2)
    )
    status = budget_status(alice)
    assert status["budget"] == Decimal(2) and status["spent"] == Decimal("0.5")
    assert status["reserved"] == Decimal("0.25") and status["remaining"] == Decimal("1.25")
    assert status["month"] == timezone.now().date().replace(day=1).isoformat()
    budget_reserve(user_id=alice.pk, amount=Decimal("0.01"))
    assert not BudgetReservation.objects.filter(pk=stale.pk).exists()  # cleared at the next admission
    budget_settle(open_id)
    assert budget_remaining(alice) == Decimal("1.49")


@pytest.mark.django_db
def test_a_request_larger_than_what_is_left_is_refused_and_an_exhausted_budget_refuses_even_free_ones(alice):
    alice.monthly_budget = Decimal("1.0000")
    alice.save()
    with pytest.raises(BudgetExceeded) as refused:
        budget_reserve(user_id=alice.pk, amount=Decimal("1.5"))
    assert refused.value.remaining == Decimal(1) and "could cost up to $1.50" in str(refused.value)
    spend(alice, timezone.now(), "1")
    with pytest.raises(BudgetExceeded, match="used up"):
        budget_reserve(user_id=alice.pk, amount=Decimal(0))
    assert not BudgetReservation.objects.exists()


def test_worst_case_is_prompt_plus_the_reply_cap_at_list_prices():
    cost = worst_case_cost(
        prompt_tokens=1000, max_tokens=500, input_price=Decimal("0.5"), output_price=Decimal(2)
    )
    assert cost == Decimal("0.0015")
    uncapped = worst_case_cost(prompt_tokens=10, max_tokens=None, input_price=None, output_price=Decimal(1))
    assert uncapped == Decimal("0.004096")


# --- Concurrency: real threads, real transactions ----------------------------------------------------------

def _in_threads(count: int, work) -> list:
    results: list = [None] * count
    barrier = threading.Barrier(count)

    def run(i: int) -> None:
        try:
            barrier.wait()
            results[i] = work(i)
        except Exception as exc:  # the test inspects what each thread met
            results[i] = exc
        finally:
            close_old_connections()
            connection.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return results


@pytest.mark.django_db(transaction=True)
def test_ten_concurrent_reservations_never_overcommit_a_small_budget(alice):
    alice.monthly_budget = Decimal("0.0350")
    alice.save()
    amount = Decimal("0.01")
    results = _in_threads(10, lambda i: budget_reserve(user_id=alice.pk, amount=amount))
    admitted = [r for r in results if isinstance(r, int)]
    refused = [r for r in results if isinstance(r, BudgetExceeded)]
    assert len(admitted) == 3 and len(refused) == 7, results
    held = sum(BudgetReservation.objects.filter(user=alice).values_list("amount", flat=True))
    assert held == Decimal("0.03") <= alice.monthly_budget


@pytest.mark.django_db(transaction=True)
def test_concurrent_requests_that_settle_overspend_by_at_most_one_reservation(alice):
    """Each request reserves its worst case, then records a real cost 10% above it (a provider's own figure
    may exceed list prices) and settles; admissions see every settled cost and every open reservation."""
    alice.monthly_budget = Decimal("0.0500")
    alice.save()
    reserve, actual = Decimal("0.01"), Decimal("0.011")

    def request(i: int) -> str:
        reservation = budget_reserve(user_id=alice.pk, amount=reserve)
        with transaction.atomic():
            usage_record(
                user_id=alice.pk, source="api", priced=Priced("dev", "dev/m", None, None),
                usage=Usage(prompt_tokens=1, completion_tokens=1, total_tokens=2, cost=actual),
                prompt_messages=[], completion_text="x", finish_reason="stop", ttft_ms=1, duration_ms=1,
                reservation_id=reservation,
            )
        return "done"

    for _ in range(2):  # two waves: the second meets a budget the first has spent
        _in_threads(10, request)
    spent = month_spend(alice)
    assert spent == actual * UsageRecord.objects.count()
    assert spent - alice.monthly_budget <= reserve, spent
    assert not BudgetReservation.objects.exists()  # every admitted request settled
    with pytest.raises(BudgetExceeded):
        budget_reserve(user_id=alice.pk, amount=reserve)


# --- Refused before anything goes upstream ----------------------------------------------------------------

def _signed_in_cookie(user: User) -> str:
    session = SessionStore()
    session[SESSION_KEY] = str(user.pk)
    session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
    session[HASH_SESSION_KEY] = user.get_session_auth_hash()
    session.save()
    return f"{settings.SESSION_COOKIE_NAME}={session.session_key}"


def _priced_model(base_url: str) -> Model:
    provider = Provider.objects.create(name="dev", base_url=base_url)
    return Model.objects.create(  # worst case of a short prompt: 1024 tokens at $1.5/M, about $0.0015
        provider=provider, upstream_id="dev-chat", input_price=Decimal("0.5"), output_price=Decimal("1.5"),
        max_output_tokens=1024,
    )


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("upstream_http")
async def test_a_send_over_budget_is_refused_before_any_upstream_request(alice, dev_upstream, nonce):
    model = await database_sync_to_async(_priced_model)(dev_upstream.v1(key=nonce))
    alice.monthly_budget = Decimal("0.0010")
    await database_sync_to_async(alice.save)()
    cookie = await database_sync_to_async(_signed_in_cookie)(alice)
    headers = [(b"origin", b"http://127.0.0.1:8000"), (b"cookie", cookie.encode())]
    ws = WebsocketCommunicator(application, "/ws/chat/", headers=headers)
    assert (await ws.connect())[0]
    await ws.send_to(text_data=json.dumps({
        "type": "chat.send", "request_id": "r1", "conversation_id": None, "model": model.public_name,
        "content": "Hello",
    }))
    while (frame := json.loads(await ws.receive_from(timeout=10)))["type"] != "chat.error":
        assert frame["type"] != "chat.started", frame
    assert frame["code"] == "budget_exceeded" and "budget" in frame["message"] and frame["request_id"] == "r1"
    await ws.disconnect()
    assert dev_upstream.stats(nonce)["requests"] == 0
    counts = await database_sync_to_async(
        lambda: (UsageRecord.objects.count(), BudgetReservation.objects.count(),
                 Message.objects.filter(role="assistant").count())
    )()
    assert counts == (0, 0, 0)


# --- How an overrun budget reads everywhere ----------------------------------------------------------------

@pytest.fixture
def overrun(alice):
    """alice spent $0.0105 this month, then her budget was set to $0.0001 by the command."""
    spend(alice, timezone.now(), "0.0105")
    out = io.StringIO()
    call_command("budget", "alice", "--monthly", "0.0001", stdout=out)
    alice.refresh_from_db()
    return alice, out.getvalue()


@pytest.mark.django_db
def test_an_overrun_budget_reads_the_same_everywhere_and_never_negative(client, overrun):
    alice, command_output = overrun
    assert "monthly budget $0.0001;" in command_output and "$0.0105 spent" in command_output
    assert "$0 left · over by $0.0104" in command_output and "budget $0.00;" not in command_output
    client.force_login(alice)
    chat = client.get("/").content.decode()
    assert "$0 of $0.0001 left this month · over by $0.0104" in chat and "$-" not in chat
    usage = client.get("/usage/").content.decode()
    assert '<strong id="budget-remaining">$0 left · over by $0.0104</strong>' in usage and "$-" not in usage
    assert "of $0.0001 this month" in usage
    with pytest.raises(BudgetExceeded) as refused:
        budget_reserve(user_id=alice.pk, amount=Decimal("0.001"))
    assert "over by $0.0104" in str(refused.value) and "$0.0000" not in str(refused.value)
    status = client.get("/usage/budget.json").json()
    assert status["label"] == "$0 of $0.0001 left this month · over by $0.0104" and status["over"] is True
    assert status["remaining"] == "-0.0104" and status["budget"] == "0.0001"


@pytest.mark.django_db
def test_the_budget_json_follows_a_raised_budget_and_says_when_there_is_none(client, overrun):
    alice, _ = overrun
    client.force_login(alice)
    call_command("budget", "alice", "--monthly", "5", stdout=io.StringIO())
    status = client.get("/usage/budget.json").json()
    assert status["label"] == "$4.99 of $5.00 left this month" and status["left"] == "$4.99 left"
    call_command("budget", "alice", "--clear", stdout=io.StringIO())
    assert client.get("/usage/budget.json").json() == {"budget": None, "groups": [], "alerts": []}
    client.logout()
    assert client.get("/usage/budget.json").status_code == 401


@pytest.mark.django_db
def test_a_refusal_names_small_amounts_with_their_precision(alice):
    alice.monthly_budget = Decimal("0.0100")
    alice.save()
    budget_reserve(user_id=alice.pk, amount=Decimal("0.009"))
    with pytest.raises(BudgetExceeded) as refused:
        budget_reserve(user_id=alice.pk, amount=Decimal("0.00123"))
    assert "could cost up to $0.00123, more than the $0.001 left" in str(refused.value)
