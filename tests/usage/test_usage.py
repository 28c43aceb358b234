"""The usage pages: totals against the ledger (days in the owner's zone), export, JSON, isolation, charts."""

from __future__ import annotations

import csv
import io
import json
import random
import re
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.test.utils import CaptureQueriesContext

from conversations.models import Conversation, ConversationDay, ConversationTotal, UsageDay, UsageRecord
from conversations.upstream.events import Usage
from conversations.usage.charts import Bar, bar_chart, nice_ceiling, tokens_axis
from conversations.usage.days import day_span
from conversations.usage.ledger import Priced, usage_record
from conversations.usage.ranking import top_conversations
from conversations.usage.rollup import Owner, cost_units, ledger_q, rolled_total, usage_day_add
from conversations.usage.views import CSV_COLUMNS

pytestmark = pytest.mark.django_db

BERLIN = ZoneInfo("Europe/Berlin")


def add(user, at: datetime, *, cost: str = "0.0010000000", prompt: int = 10, completion: int = 5,
        model: str = "dev/m1", provider: str = "dev", conversation: Conversation | None = None,
        cost_source: str = "price", estimated: bool = False, hook: bool = True) -> UsageRecord:
    """One ledger row at `at`; `hook` folds it into the roll-up as the ledger's writer does."""
    record = UsageRecord.objects.create(
        user=user, source="chat" if conversation else "api", conversation=conversation,
        provider_name=provider, model_name=model, prompt_tokens=prompt, completion_tokens=completion,
        total_tokens=prompt + completion, estimated_cost=Decimal(cost), cost_source=cost_source,
        usage_estimated=estimated, finish_reason="stop", ttft_ms=120, duration_ms=900, created_at=at,
    )
    if hook:
        usage_day_add(record=record)
    return record


def summary(client, **params) -> dict:
    response = client.get("/usage/summary.json", params)
    assert response.status_code == 200, response.content
    return response.json()


def export(client, **params) -> list[dict]:
    response = client.get("/usage/export.csv", params)
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    text = b"".join(response.streaming_content).decode()
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0][: len(CSV_COLUMNS)] == CSV_COLUMNS
    return [dict(zip(rows[0], r, strict=True)) for r in rows[1:]]


@pytest.fixture
def berlin_alice(alice):
    alice.timezone = "Europe/Berlin"
    alice.save()
    return alice


# --- Days in the owner's time zone --------------------------------------------------------------------------

def test_a_record_at_2330_utc_on_the_31st_counts_on_the_1st_in_berlin(client, berlin_alice, bob):
    add(berlin_alice, datetime(2025, 3, 31, 23, 30, tzinfo=UTC), cost="0.5")
    add(bob, datetime(2025, 3, 31, 23, 30, tzinfo=UTC), cost="0.25")  # bob's zone is UTC
    client.force_login(berlin_alice)
    april = summary(client, **{"from": "2025-04-01", "to": "2025-04-30"})
    assert april["totals"]["requests"] == 1 and april["totals"]["estimated_cost"] == "0.5"
    assert [d["day"] for d in april["by_day"]] == ["2025-04-01"]
    assert summary(client, **{"from": "2025-03-01", "to": "2025-03-31"})["totals"]["requests"] == 0
    # The same instant is still March 31 for bob, in UTC.
    client.force_login(bob)
    march = summary(client, **{"from": "2025-03-31", "to": "2025-03-31"})
    assert march["by_day"] == [{
        "day": "2025-03-31", "requests": 1, "prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15,
        "estimated_cost": "0.25",
    }]
    # The export's date filter uses the same days.
    client.force_login(berlin_alice)
    assert len(export(client, **{"from": "2025-04-01", "to": "2025-04-01"})) == 1
    assert export(client, **{"from": "2025-03-31", "to": "2025-03-31"}) == []


def test_totals_by_day_and_model_equal_the_ledger_sums_across_months_and_dst(client, berlin_alice, bob):
    rng = random.Random(7)
    models = ["dev/m1", "dev/m2", "other/big"]
    start = datetime(2025, 3, 20, tzinfo=UTC)  # spans Berlin's DST change (March 30) and two month ends
    for _ in range(300):
        at = start + timedelta(seconds=rng.randrange(0, 45 * 86400))
        cost = Decimal(rng.randrange(0, 10**9)).scaleb(-10)  # up to 10 decimal places, exact
        add(berlin_alice, at, cost=str(cost), prompt=rng.randrange(1, 5000), completion=rng.randrange(0, 900),
            model=rng.choice(models))
    for i in range(20):  # bob's rows must never count for alice
        add(bob, start + timedelta(hours=7 * i), cost="1", model="dev/m1")
    first, last = date(2025, 3, 25), date(2025, 4, 30)
    begin, end = day_span(BERLIN, first, last)
    expected_day: dict[str, list] = defaultdict(lambda: [0, 0, 0, 0, Decimal(0)])
    expected_model: dict[str, list] = defaultdict(lambda: [0, 0, 0, 0, Decimal(0)])
    for r in UsageRecord.objects.filter(user=berlin_alice, created_at__gte=begin, created_at__lt=end):
        local_day = r.created_at.astimezone(BERLIN).date().isoformat()
        for bucket in (expected_day[local_day], expected_model[r.model_name]):
            bucket[0] += 1
            bucket[1] += r.prompt_tokens
            bucket[2] += r.completion_tokens
            bucket[3] += r.total_tokens
            bucket[4] += r.estimated_cost

    def as_list(item: dict) -> list:
        return [item["requests"], item["prompt_tokens"], item["completion_tokens"], item["total_tokens"],
                Decimal(item["estimated_cost"])]

    client.force_login(berlin_alice)
    data = summary(client, **{"from": first.isoformat(), "to": last.isoformat()})
    assert {d["day"]: as_list(d) for d in data["by_day"]} == dict(expected_day)
    assert {m["model"]: as_list(m) for m in data["by_model"]} == dict(expected_model)
    assert as_list(data["totals"]) == [sum(v[i] for v in expected_day.values()) for i in range(5)]
    assert data["by_day"] == sorted(data["by_day"], key=lambda d: d["day"])
    assert list(data["totals"]) == [
        "requests", "prompt_tokens", "completion_tokens", "total_tokens", "estimated_cost"]
    assert data["user"] == "alice" and data["time_zone"] == "Europe/Berlin"
    # The 30th of March has 23 hours in Berlin: the day boundaries follow the zone's rules, not UTC+1.
    assert day_span(BERLIN, date(2025, 3, 30), date(2025, 3, 30))[1] - day_span(
        BERLIN, date(2025, 3, 30), date(2025, 3, 30))[0] == timedelta(hours=23)


def test_dashboard_numbers_agree_with_the_export_to_the_last_decimal(client, alice):
    conversation = Conversation.objects.create(owner=alice, title="Tides")
    day = datetime(2025, 5, 10, 12, tzinfo=UTC)
    for i, cost in enumerate(["0.0000268000", "0.1000000001", "0.2", "0.0000000001", "3.3333333333"]):
        add(alice, day + timedelta(minutes=i), cost=cost, conversation=conversation if i % 2 else None,
            model="dev/m2" if i == 4 else "dev/m1")
    client.force_login(alice)
    params = {"from": "2025-05-01", "to": "2025-05-31"}
    page = client.get("/usage/", params)
    assert page.status_code == 200
    html = page.content.decode()
    rows = export(client, **params)
    exported = sum(Decimal(r["estimated_cost"]) for r in rows)
    assert exported == Decimal("3.6333601335")
    shown = re.search(r'id="total-cost" data-value="([0-9.]+)"', html).group(1)
    assert Decimal(shown) == exported and shown == "3.6333601335"
    assert f'id="total-tokens">{sum(int(r["total_tokens"]) for r in rows)}<' in html
    assert f'id="total-requests">{len(rows)}<' in html
    # The by-model table shows the same exact figures as the export, model by model.
    for model in ("dev/m1", "dev/m2"):
        cost = sum(Decimal(r["estimated_cost"]) for r in rows if r["model"] == model)
        assert re.search(rf">{re.escape(model)}</th>.*?<td class=\"num\">{cost.normalize():f}</td>", html)
    assert summary(client, **params)["totals"]["estimated_cost"] == "3.6333601335"


def test_export_has_the_contract_columns_and_formats(client, alice):
    conversation = Conversation.objects.create(owner=alice, title="t")
    add(alice, datetime(2025, 6, 1, 8, 5, 3, tzinfo=UTC), cost="0.0000268000", conversation=conversation,
        estimated=True)
    add(alice, datetime(2025, 6, 2, 9, tzinfo=UTC), cost="0", cost_source="estimated", model="local/x",
        provider="local")
    client.force_login(alice)
    response = client.get("/usage/export.csv")
    assert 'filename="usage-alice.csv"' in response["Content-Disposition"]
    text = b"".join(response.streaming_content).decode()
    header, first, second = list(csv.reader(io.StringIO(text)))
    assert header == [
        "created_at", "source", "conversation_id", "message_id", "provider", "model", "prompt_tokens",
        "completion_tokens", "total_tokens", "estimated_cost", "usage_estimated", "finish_reason", "ttft_ms",
        "duration_ms", "upstream_request_id", "cost_source", "reconciled_cost", "outcome",
    ]
    assert first == ["2025-06-01T08:05:03+00:00", "chat", str(conversation.pk), "", "dev", "dev/m1", "10",
                     "5", "15", "0.0000268", "true", "stop", "120", "900", "", "price", "", "complete"]
    assert second[:3] == ["2025-06-02T09:00:00+00:00", "api", ""] and second[9:11] == ["0", "false"]


def test_export_pages_through_more_rows_than_a_batch(client, alice, monkeypatch):
    from conversations.usage import views

    monkeypatch.setattr(views, "EXPORT_BATCH", 7)
    at = datetime(2025, 6, 1, tzinfo=UTC)
    for i in range(30):
        add(alice, at + timedelta(seconds=i // 3), hook=False)  # ties on created_at across batch edges
    client.force_login(alice)
    rows = export(client)
    assert len(rows) == 30 == len({(r["created_at"], r["duration_ms"], i) for i, r in enumerate(rows)})
    assert [r["created_at"] for r in rows] == sorted(r["created_at"] for r in rows)


# --- Who sees what ---------------------------------------------------------------------------------------

def test_another_users_rows_never_appear_and_non_staff_all_means_own(client, alice, bob):
    add(alice, datetime(2025, 7, 1, 12, tzinfo=UTC), model="alice/model", cost="1")
    add(bob, datetime(2025, 7, 1, 12, tzinfo=UTC), model="bob/secret-model", cost="2")
    Conversation.objects.create(owner=bob, title="bob's secret plans")
    client.force_login(alice)
    params = {"from": "2025-07-01", "to": "2025-07-31"}
    for extra in ({}, {"user": "all"}, {"user": "bob"}, {"user": str(bob.pk)}):
        data = summary(client, **params, **extra)
        assert data["user"] == "alice"
        assert [m["model"] for m in data["by_model"]] == ["alice/model"]
        assert data["totals"]["estimated_cost"] == "1"
        assert {r["model"] for r in export(client, **params, **extra)} == {"alice/model"}
        assert {r["model"] for r in export(client, **extra)} == {"alice/model"}
        html = client.get("/usage/", {**params, **extra}).content.decode()
        assert "bob/secret-model" not in html and "secret plans" not in html and "By user" not in html


def test_staff_see_everyone_and_drill_down_by_username_or_id(client, staff, alice, bob):
    bob.timezone = "America/New_York"
    bob.save()
    add(alice, datetime(2025, 7, 1, 12, tzinfo=UTC), model="dev/m1", cost="1")
    add(bob, datetime(2025, 7, 2, 12, tzinfo=UTC), model="other/m9", provider="other", cost="2")
    add(bob, datetime(2025, 7, 3, 12, tzinfo=UTC), model="local/free", provider="local", cost="0",
        cost_source="estimated")
    client.force_login(staff)
    params = {"from": "2025-07-01", "to": "2025-07-31"}
    everyone = summary(client, **params, user="all")
    assert everyone["user"] == "all" and everyone["totals"]["requests"] == 3
    assert everyone["totals"]["estimated_cost"] == "3"
    assert summary(client, **params)["totals"]["requests"] == 0  # staff's own usage by default
    for who in ("bob", str(bob.pk)):
        drill = summary(client, **params, user=who)
        assert drill["user"] == "bob" and drill["time_zone"] == "America/New_York"
        assert {m["model"] for m in drill["by_model"]} == {"other/m9", "local/free"}
    rows = export(client, **params, user="all")
    assert sorted(r["user"] for r in rows) == ["alice", "bob", "bob"]
    response = client.get("/usage/summary.json", {**params, "user": "nobody"})
    assert response.status_code == 404 and response.json()["error"]["code"] == "unknown_user"
    html = client.get("/usage/", {**params, "user": "all"}).content.decode()
    assert 'id="by-user"' in html and ">alice</a>" in html and ">bob</a>" in html
    assert 'id="by-provider"' in html and ">other</th>" in html
    unpriced = html[html.index('id="unpriced"'):]
    assert "local/free" in unpriced[: unpriced.index("</table>")]
    assert "no price" in html


def test_bad_dates_are_a_400_with_a_clear_json_error(client, alice):
    client.force_login(alice)
    cases = [
        ({"from": "2025-13-01"}, "from: expected a date as YYYY-MM-DD"),
        ({"from": "yesterday"}, "from: expected a date"),
        ({"to": "2025-02-30"}, "to: expected a date"),
        ({"from": "2025-05-02", "to": "2025-05-01"}, "is before from"),
        ({"from": "1900-01-01", "to": "2025-01-01"}, "at most"),
    ]
    for params, message in cases:
        for url in ("/usage/summary.json", "/usage/export.csv"):
            response = client.get(url, params)
            assert response.status_code == 400, (url, params)
            error = response.json()["error"]
            assert error["code"] == "bad_date" and message in error["message"]
    page = client.get("/usage/", {"from": "2025-13-01"})
    assert page.status_code == 400 and "expected a date as YYYY-MM-DD" in page.content.decode()


def test_anonymous_pages_redirect_and_data_endpoints_answer_401(client):
    page = client.get("/usage/")
    assert page.status_code == 302 and page["Location"].startswith("/accounts/login/?next=/usage/")
    for url in ("/usage/summary.json", "/usage/export.csv"):
        response = client.get(url)
        assert response.status_code == 401 and response.json()["error"]["code"] == "not_authenticated"


# --- The page ----------------------------------------------------------------------------------------------

def test_the_default_range_is_this_month_in_the_users_zone(client, alice):
    alice.timezone = "Pacific/Kiritimati"  # UTC+14: its month starts well before UTC's
    alice.save()
    zone = ZoneInfo("Pacific/Kiritimati")
    today = datetime.now(zone).date()
    add(alice, datetime.now(UTC) - timedelta(minutes=1))
    client.force_login(alice)
    data = summary(client)
    assert data["from"] == today.replace(day=1).isoformat() and data["to"] == today.isoformat()
    assert data["totals"]["requests"] == 1
    assert summary(client, to="2025-05-20")["from"] == "2025-05-01"  # `to` alone: from the 1st of its month


def test_the_chart_is_inline_svg_with_a_table_and_no_script(client, alice):
    for day in (3, 3, 9):
        add(alice, datetime(2025, 8, day, 10, tzinfo=UTC), cost="0.25")
    client.force_login(alice)
    html = client.get("/usage/", {"from": "2025-08-01", "to": "2025-08-31"}).content.decode()
    assert html.count('<svg class="chart"') == 2 and 'role="img"' in html
    tokens_svg = html[html.index('id="chart-tokens"'): html.index("</svg>", html.index('id="chart-tokens"'))]
    assert tokens_svg.count("<rect") == 31  # a bar per day, zero days included
    assert "<title>2025-08-03: 30 tokens</title>" in tokens_svg
    assert 'fill="currentColor"' in tokens_svg  # follows the colour scheme
    assert "<script" not in html.lower().replace('<script src="/static/', "")
    assert " style=" not in html  # a strict CSP forbids inline styles too
    series = html[html.index('id="series-table"'):]
    cells = '<td class="num">2</td><td class="num">30</td><td class="num">0.5</td>'
    assert f'<th scope="row">2025-08-03</th>{cells}' in series
    assert 'href="/usage/export.csv?from=2025-08-01&amp;to=2025-08-31"' in html
    assert 'href="/usage/summary.json?from=2025-08-01&amp;to=2025-08-31"' in html


def test_ranges_longer_than_a_year_are_charted_by_month(client, alice):
    add(alice, datetime(2024, 2, 10, tzinfo=UTC))
    client.force_login(alice)
    html = client.get("/usage/", {"from": "2023-01-01", "to": "2025-12-31"}).content.decode()
    svg = html[html.index('id="chart-tokens"'): html.index("</svg>", html.index('id="chart-tokens"'))]
    assert svg.count("<rect") == 36 and "<title>2024-02: 15 tokens</title>" in svg


def test_records_are_paginated_newest_first(client, alice):
    at = datetime(2025, 9, 1, tzinfo=UTC)
    for i in range(30):
        add(alice, at + timedelta(hours=i), prompt=100 + i)
    client.force_login(alice)
    params = {"from": "2025-09-01", "to": "2025-09-30"}
    first = client.get("/usage/", params).content.decode()
    assert "page 1 of 2" in first and "2025-09-02 05:00:00" in first  # the newest, hour 29
    second = client.get("/usage/", {**params, "page": 2}).content.decode()
    table = second[second.index('id="records"'):]
    assert table.count("<tr>") == 1 + 5 and "2025-09-01 00:00:00" in table


def test_budget_and_what_is_left_are_shown_when_set(client, alice):
    client.force_login(alice)
    assert "Monthly budget" not in client.get("/usage/").content.decode()
    alice.monthly_budget = Decimal("5.00")
    alice.save()
    add(alice, datetime.now(UTC) - timedelta(minutes=1), cost="1.25")
    html = client.get("/usage/").content.decode()
    assert "Monthly budget" in html and '<strong id="budget-remaining">$3.75 left</strong>' in html
    assert "<meter" in html


def test_query_counts_are_bounded_and_do_not_grow_with_the_data(client, staff, alice, bob):
    def queries(viewer, **params) -> int:
        client.force_login(viewer)
        with CaptureQueriesContext(connection) as captured:
            assert client.get("/usage/", params).status_code == 200
        return len(captured)

    params = {"from": "2025-10-01", "to": "2025-10-31"}
    add(alice, datetime(2025, 10, 2, tzinfo=UTC), conversation=Conversation.objects.create(owner=alice))
    small = queries(alice, **params), queries(staff, **params, user="all")
    for i in range(80):
        conversation = Conversation.objects.create(owner=alice if i % 2 else bob, title=f"c{i}")
        for user in (alice, bob):
            add(user, datetime(2025, 10, 1 + i % 28, i % 24, tzinfo=UTC), conversation=conversation,
                model=f"dev/m{i % 7}")
    large = queries(alice, **params), queries(staff, **params, user="all")
    assert small == large
    assert large[0] <= 11 and large[1] <= 12, large  # + the groups the viewer manages (links), + the forecast


# --- The roll-up stays exact -----------------------------------------------------------------------------

def test_rows_written_around_the_rollup_are_recounted_on_read(client, alice):
    conversation = Conversation.objects.create(owner=alice, title="backfilled")
    add(alice, datetime(2025, 11, 3, tzinfo=UTC), cost="0.1", conversation=conversation)
    add(alice, datetime(2025, 11, 4, tzinfo=UTC), cost="0.2", hook=False, conversation=conversation)  # a backfill
    client.force_login(alice)
    data = summary(client, **{"from": "2025-11-01", "to": "2025-11-30"})
    assert data["totals"]["requests"] == 2 and data["totals"]["estimated_cost"] == "0.3"
    assert UsageDay.objects.filter(user=alice).count() == 2
    assert rolled_total(Owner.of(alice), date(2025, 11, 1), date(2025, 11, 30)).requests == 2
    assert sorted(ConversationDay.objects.filter(user=alice).values_list("day", "cost_units")) == [
        (date(2025, 11, 3), cost_units(Decimal("0.1"))), (date(2025, 11, 4), cost_units(Decimal("0.2")))]
    total = ConversationTotal.objects.get(conversation_id=conversation.pk)
    assert (total.first_day, total.last_day, total.requests) == (date(2025, 11, 3), date(2025, 11, 4), 2)
    assert total.cost_units == cost_units(Decimal("0.3"))


def test_a_changed_time_zone_recounts_the_days(client, alice):
    conversation = Conversation.objects.create(owner=alice, title="late night")
    add(alice, datetime(2025, 3, 31, 23, 30, tzinfo=UTC), conversation=conversation)
    client.force_login(alice)
    assert summary(client, **{"from": "2025-03-31", "to": "2025-04-01"})["by_day"][0]["day"] == "2025-03-31"
    alice.timezone = "Europe/Berlin"
    alice.save()
    data = summary(client, **{"from": "2025-03-31", "to": "2025-04-01"})
    assert [d["day"] for d in data["by_day"]] == ["2025-04-01"] and data["totals"]["requests"] == 1
    assert set(UsageDay.objects.filter(user=alice).values_list("tz", flat=True)) == {"Europe/Berlin"}
    assert list(ConversationDay.objects.filter(user=alice).values_list("tz", "day")) == [
        ("Europe/Berlin", date(2025, 4, 1))]
    total = ConversationTotal.objects.get(conversation_id=conversation.pk)
    assert (total.first_day, total.last_day) == (date(2025, 4, 1), date(2025, 4, 1))
    page = client.get("/usage/", {"from": "2025-04-01", "to": "2025-04-01"})
    assert [c.title for c in page.context["by_conversation"]] == ["late night"]


def test_the_ledger_writer_keeps_the_rollup_in_step(alice):
    """usage_record (the ledger's one writer) folds each row into its day, so reads never need a recount."""
    conversation = Conversation.objects.create(owner=alice)
    usage_record(
        user_id=alice.pk, source="chat", priced=Priced("dev", "dev/m1", Decimal("0.5"), Decimal("1.5")),
        usage=Usage(prompt_tokens=100, completion_tokens=20, total_tokens=120), prompt_messages=[],
        completion_text="x", finish_reason="stop", ttft_ms=10, duration_ms=20,
        conversation_id=conversation.pk,
    )
    today = datetime.now(UTC).date()
    totals = rolled_total(Owner.of(alice), today - timedelta(days=1), today + timedelta(days=1))
    assert totals is not None, "conversations/ledger.usage_record must call usage_day_add"
    assert totals.requests == 1 and totals.total_tokens == 120 and totals.estimated_cost == Decimal("0.00008")


# --- The most expensive conversations --------------------------------------------------------------------

def _ledger_top(owner: Owner | None, first: date, last: date, limit: int) -> list[tuple[int, int, int, int]]:
    """(conversation, requests, tokens, cost units) of the span's most expensive conversations, from the ledger."""
    sums: dict[int, list[int]] = defaultdict(lambda: [0, 0, 0])
    for r in UsageRecord.objects.filter(ledger_q(owner, first, last), conversation__isnull=False):
        kept = sums[r.conversation_id]
        kept[0], kept[1], kept[2] = kept[0] + 1, kept[1] + r.total_tokens, kept[2] + cost_units(r.estimated_cost)
    ranked = sorted(sums.items(), key=lambda kv: (-kv[1][2], -kv[1][1], kv[0]))[:limit]
    return [(pk, *s) for pk, s in ranked]


def test_the_most_expensive_conversations_equal_grouping_the_ledger(alice, bob, staff):
    """The threshold walk over conversation totals gives exactly what summing every record of the span gives,
    on spans from a day to all of it, for one owner and for everyone, ties and free models included."""
    bob.timezone = "Asia/Tokyo"
    bob.save()
    rng = random.Random(7)
    start = datetime(2025, 1, 1, tzinfo=UTC)
    for i in range(40):
        owner = (alice, bob, staff)[i % 3]
        conversation = Conversation.objects.create(owner=owner, title=f"c{i}")
        day = rng.randrange(60)
        for _ in range(rng.randint(1, 6)):
            at = start + timedelta(days=day + rng.choice((0, 0, 1, 3, 9)), hours=rng.randrange(24))
            free = rng.random() < 0.2
            add(owner, at, conversation=conversation, cost="0" if free else rng.choice(("0.001", "0.002", "0.0105")),
                prompt=rng.choice((10, 100)), completion=rng.randrange(1, 50),
                cost_source="estimated" if free else "price")
        if i % 5 == 0:
            add(owner, start + timedelta(days=day), cost="5")  # an API call: no conversation
    spans = [(date(2025, 1, d), date(2025, 1, d)) for d in (1, 7, 20, 31)]
    spans += [(date(2025, 1, 5), date(2025, 1, 11)), (date(2025, 2, 1), date(2025, 2, 28)),
              (date(2024, 12, 1), date(2025, 12, 31)), (date(2026, 1, 1), date(2026, 1, 31))]
    most_queries = 0
    for first, last in spans:
        for owner in (None, Owner.of(alice), Owner.of(bob)):
            for limit in (1, 3, 10):
                with CaptureQueriesContext(connection) as captured:
                    found = top_conversations(owner, first, last, limit)
                most_queries = max(most_queries, len(captured))
                got = [(pk, t.requests, t.total_tokens, t.cost_units) for pk, t in found]
                assert got == _ledger_top(owner, first, last, limit), (owner, first, last, limit)
    assert most_queries > 2, "no span needed a second batch: the walk's stopping rule went untested"


def test_the_dashboard_ranks_conversations_and_keeps_deleted_ones(client, staff, alice, bob):
    cheap = Conversation.objects.create(owner=alice, title="cheap chat")
    dear = Conversation.objects.create(owner=alice, title="dear chat")
    gone = Conversation.objects.create(owner=alice, title="soon deleted")
    secret = Conversation.objects.create(owner=bob, title="bob's plans")
    for conversation, cost in ((cheap, "0.1"), (dear, "0.9"), (gone, "0.5"), (secret, "2")):
        add(conversation.owner, datetime(2025, 7, 3, 12, tzinfo=UTC), conversation=conversation, cost=cost)
    gone.delete()
    params = {"from": "2025-07-01", "to": "2025-07-31"}
    client.force_login(alice)
    html = client.get("/usage/", params).content.decode()
    table = html[html.index('id="by-conversation"'):]
    table = table[: table.index("</table>")]
    assert table.index("dear chat") < table.index("deleted conversation") < table.index("cheap chat")
    assert f'href="/c/{dear.pk}/"' in table and "bob" not in table
    client.force_login(staff)
    html = client.get("/usage/", {**params, "user": "all"}).content.decode()
    table = html[html.index('id="by-conversation"'):]
    table = table[: table.index("</table>")]
    assert table.index("bob&#x27;s plans") < table.index("dear chat") and "href=" not in table


@pytest.mark.django_db(transaction=True)
def test_the_migration_moves_conversations_out_of_the_daily_rollup(alice, bob):
    """0006/0007 on a roll-up written by the previous schema (one row per day, model and conversation)."""
    try:
        before = ("conversations", "0005_message_content_html")
        after = ("conversations", "0007_usageday_without_conversation")
        executor = MigrationExecutor(connection)
        executor.migrate([before])
        old_day = executor.loader.project_state([before]).apps.get_model("conversations", "UsageDay")
        july = date(2025, 7, 1)
        for user, day, model, conversation_id, requests, cost in (
            (alice, july, "dev/m1", 11, 2, 100), (alice, july, "dev/m1", 12, 1, 40), (alice, july, "dev/m1", 0, 3, 7),
            (alice, july + timedelta(days=1), "dev/m1", 11, 1, 10), (alice, july, "dev/m2", 11, 1, 1),
            (bob, july, "dev/m1", 13, 4, 1000),
        ):
            old_day.objects.create(
                user_id=user.pk, tz="UTC", day=day, provider_name="dev", model_name=model,
                conversation_id=conversation_id,
                requests=requests, prompt_tokens=requests, completion_tokens=requests, total_tokens=2 * requests,
                cost_units=cost, unpriced_requests=0, estimated_usage_requests=0,
            )
        executor = MigrationExecutor(connection)
        executor.migrate([after])
        days = UsageDay.objects.order_by("user_id", "day", "model_name").values_list(
            "user_id", "day", "model_name", "requests", "cost_units")
        assert list(days) == [
            (alice.pk, july, "dev/m1", 6, 147), (alice.pk, july, "dev/m2", 1, 1),
            (alice.pk, july + timedelta(days=1), "dev/m1", 1, 10), (bob.pk, july, "dev/m1", 4, 1000),
        ]
        conversation_days = ConversationDay.objects.order_by("conversation_id", "day").values_list(
            "conversation_id", "user_id", "day", "requests", "total_tokens", "cost_units")
        assert list(conversation_days) == [
            (11, alice.pk, july, 3, 6, 101), (11, alice.pk, july + timedelta(days=1), 1, 2, 10),
            (12, alice.pk, july, 1, 2, 40), (13, bob.pk, july, 4, 8, 1000),
        ]
        totals = ConversationTotal.objects.order_by("conversation_id").values_list(
            "conversation_id", "user_id", "first_day", "last_day", "requests", "cost_units")
        assert list(totals) == [
            (11, alice.pk, july, july + timedelta(days=1), 4, 111), (12, alice.pk, july, july, 1, 40),
            (13, bob.pk, july, july, 4, 1000),
        ]
    finally:  # the rest of the session runs on the latest schema, whatever order the tests run in
        executor = MigrationExecutor(connection)
        executor.migrate(executor.loader.graph.leaf_nodes())


# --- Charts ---------------------------------------------------------------------------------------------

def test_nice_ceiling_gives_round_axis_tops():
    assert [nice_ceiling(v) for v in (0, 0.7, 1, 1.2, 2.2, 3, 7, 12, 0.0031)] == [
        1, 1, 1, 2, 2.5, 5, 10, 20, 0.005]
    assert tokens_axis(1_500_000) == "1.5M" and tokens_axis(0) == "0"


def test_chart_text_is_escaped():
    svg = bar_chart(chart_id="c", title="<b>", description="d&d", bars=[Bar("<x>", 1, "\"1\"")],
                    axis_text=str)
    assert "<b>" not in svg and "&lt;x&gt;" in svg and "d&amp;d" in svg
    assert json.dumps(str(svg))  # plain text, nothing left unescaped that a parser would trip on
