"""Cost truth: the upstream id on the ledger, prices over time, reconciliation, the forecast and budget alerts."""

from __future__ import annotations

import csv
import io
import threading
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from channels.db import database_sync_to_async
from django.core import mail
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import close_old_connections, transaction

from conversations.audit import CHANGED, SOURCE_ADMIN, audit_record
from conversations.chat import generation
from conversations.models import (
    BudgetAlert,
    BudgetReservation,
    Conversation,
    ModelPrice,
    ProviderCharge,
    UsageRecord,
    User,
)
from conversations.upstream.events import Usage
from conversations.usage.forecast import usage_forecast
from conversations.usage.ledger import Priced, usage_record
from conversations.usage.reconcile import ReconcileFileError, charges_parse
from conversations.usage.rollup import usage_day_add
from tests.chat_helpers import chat_send, connect, make_model, send, until

db = database_sync_to_async


def ledger_row(user, request_id: str, cost: str, *, provider: str = "acme", at: datetime | None = None):
    """A ledger row billed at `cost` with the provider's id `request_id`, written as the ledger's writer does
    (with the reservation the admission holds when a budget applies; the spend here may run past the budget,
    as a reply longer than its estimate does)."""
    with transaction.atomic():
        has_budget = User.objects.filter(pk=user.pk, monthly_budget__isnull=False).exists()
        reservation_id = BudgetReservation.objects.create(user=user, amount=0).pk if has_budget else None
        record = usage_record(
            user_id=user.pk, source="api", priced=Priced(provider, f"{provider}/m", None, None),
            usage=Usage(10, 5, 15, Decimal(cost)), prompt_messages=[], completion_text="hi",
            finish_reason="stop", ttft_ms=1, duration_ms=2, upstream_request_id=request_id,
            reservation_id=reservation_id,
        )
    if at is not None:
        UsageRecord.objects.filter(pk=record.pk).update(created_at=at)
        record.refresh_from_db()
    return record


def write_csv(path, rows: list[tuple]) -> str:
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["request_id", "created_at", "model", "prompt_tokens", "completion_tokens", "cost"])
        writer.writerows(rows)
    return str(path)


def csv_text(rows: list[tuple]) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["request_id", "created_at", "model", "prompt_tokens", "completion_tokens", "cost"])
    writer.writerows(rows)
    return out.getvalue()


def reconcile(provider: str, path: str) -> str:
    out = io.StringIO()
    call_command("reconcile", provider, path, stdout=out)
    return out.getvalue().strip().splitlines()[-1]


NOW = datetime.now(UTC).replace(microsecond=0)


# --- reconciliation ------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_reconcile_matches_by_id_reports_drift_and_is_idempotent(alice, tmp_path):
    exact = ledger_row(alice, "gen-1", "0.0010")
    differs = ledger_row(alice, "gen-2", "0.0020")
    lonely = ledger_row(alice, "gen-3", "0.0005")  # the provider's file does not list it
    ledger_row(alice, "gen-1", "0.0100", provider="other")  # the same id at another provider is not a match
    stamp = NOW.isoformat()
    path = write_csv(tmp_path / "acme.csv", [
        ("gen-1", stamp, "m", 10, 5, "0.0010"),
        ("gen-2", stamp, "m", 10, 5, "0.0025"),
        ("gen-9", stamp, "m", 10, 5, "0.0001"),  # only in the file
    ])
    line = reconcile("acme", path)
    # ledger 0.001 + 0.002 + 0.0005 = 0.0035; provider 0.001 + 0.0025 + 0.0001 = 0.0036; drift +2.857 %
    assert line == "matched 2, only in file 1, only in ledger 1, ledger 0.0035 USD, provider 0.0036 USD, drift 2.86%"
    for record, reconciled in ((exact, "0.0010"), (differs, "0.0025")):
        record.refresh_from_db()
        assert record.cost_source == "reconciled" and record.reconciled_cost == Decimal(reconciled)
    differs.refresh_from_db()
    assert differs.estimated_cost == Decimal("0.0020")  # the billed figure stays
    lonely.refresh_from_db()
    assert lonely.reconciled_cost is None and lonely.cost_source == "reported"

    def state():
        return (
            sorted(ProviderCharge.objects.values_list("provider_name", "request_id", "cost", "record_id")),
            sorted(UsageRecord.objects.values_list("pk", "estimated_cost", "reconciled_cost", "cost_source")),
        )

    before = state()
    assert reconcile("acme", path) == line
    assert state() == before


@pytest.mark.django_db
def test_reconcile_reports_malformed_rows_by_line_and_imports_nothing(alice, tmp_path):
    record = ledger_row(alice, "gen-1", "0.0010")
    path = write_csv(tmp_path / "bad.csv", [
        ("gen-1", NOW.isoformat(), "m", 10, 5, "0.0010"),
        ("gen-2", "yesterday", "m", 10, 5, "0.0010"),
        ("gen-3", NOW.isoformat(), "m", "ten", 5, "0.0010"),
        ("gen-4", NOW.isoformat(), "m", 10, 5, "-1"),
        ("gen-1", NOW.isoformat(), "m", 10, 5, "0.0010"),
    ])
    err = io.StringIO()
    with pytest.raises(CommandError, match="nothing was imported"):
        call_command("reconcile", "acme", path, stderr=err)
    lines = err.getvalue().splitlines()
    assert [x.split(":")[0] for x in lines] == ["line 3", "line 4", "line 5", "line 6"]
    assert "created_at" in lines[0] and "prompt_tokens" in lines[1] and "cost" in lines[2] and "line 2" in lines[3]
    assert ProviderCharge.objects.count() == 0
    record.refresh_from_db()
    assert record.reconciled_cost is None
    bad_header = tmp_path / "header.csv"
    bad_header.write_text("id,cost\nx,1\n")
    with pytest.raises(CommandError):
        call_command("reconcile", "acme", str(bad_header), stderr=io.StringIO())


@pytest.mark.django_db
def test_a_nul_byte_an_overlong_field_and_a_cost_that_rounds_past_the_column_are_bad_lines(alice, tmp_path):
    ledger_row(alice, "gen-1", "0.0010")
    path = write_csv(tmp_path / "odd.csv", [
        ("gen-1", NOW.isoformat(), "m", 10, 5, "0.0010"),
        ("gen-2", NOW.isoformat(), "m", 10, 5, "9999999999.99999999999"),  # rounds up to 1E10
        ("gen-3", NOW.isoformat(), "m", 10, 5, "1E30"),
    ])
    with open(path, "a", encoding="utf-8") as handle:
        handle.write("gen-4,2025-01-01T00:00:00+00:00,m\x00,10,5,0.0010\r\n")
        handle.write("gen-5,2025-01-01T00:00:00+00:00," + "m" * 200_000 + ",10,5,0.0010\r\n")  # past csv's limit
        handle.write("gen-6,2025-01-01T00:00:00+00:00,m,10,5,0.0010\r\n")
    err = io.StringIO()
    with pytest.raises(CommandError, match="nothing was imported"):
        call_command("reconcile", "acme", path, stderr=err)
    lines = err.getvalue().splitlines()
    assert [x.split(":")[0] for x in lines] == ["line 3", "line 4", "line 5", "line 6"]
    assert "cost" in lines[0] and "cost" in lines[1] and "NUL" in lines[2] and "field limit" in lines[3]
    assert ProviderCharge.objects.count() == 0


@pytest.mark.django_db
def test_reconciliation_page_is_for_staff_and_shows_the_rows_that_differ(client, alice, staff, tmp_path):
    ledger_row(alice, "gen-1", "0.0010")
    ledger_row(alice, "gen-2", "0.0020")
    reconcile("acme", write_csv(tmp_path / "a.csv", [
        ("gen-1", NOW.isoformat(), "m", 10, 5, "0.0010"), ("gen-2", NOW.isoformat(), "m", 10, 5, "0.0031"),
    ]))
    assert client.get("/usage/reconciliation/").status_code == 302  # anonymous: to the login page
    client.force_login(alice)
    assert client.get("/usage/reconciliation/").status_code == 404
    client.force_login(staff)
    page = client.get("/usage/reconciliation/").content.decode()
    assert "acme" in page and NOW.strftime("%Y-%m") in page and "36.67%" in page
    assert "gen-2" in page and "0.0011" in page  # the row that differs, and by how much
    assert "<code>gen-1</code>" not in page  # an exact match is not a difference


@pytest.mark.django_db
def test_export_has_the_upstream_id_cost_source_and_reconciled_cost(client, alice, bob, tmp_path):
    ledger_row(alice, "gen-1", "0.0010")
    ledger_row(alice, "gen-2", "0.0020")
    ledger_row(bob, "gen-3", "0.0030")
    reconcile("acme", write_csv(tmp_path / "a.csv", [("gen-1", NOW.isoformat(), "m", 10, 5, "0.0012")]))
    client.force_login(alice)
    response = client.get("/usage/export.csv")
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert {r["upstream_request_id"]: (r["cost_source"], r["reconciled_cost"]) for r in rows} == {
        "gen-1": ("reconciled", "0.0012"), "gen-2": ("reported", ""),
    }  # bob's row is not in alice's export


def test_every_form_a_row_may_take_gives_the_same_charge_as_the_row_by_row_checks():
    # A space around a value sends its row through the row-by-row checks (the common forms are converted
    # inline); both ways must give the same charge.
    rows = [
        ("gen-1", "2026-03-01T10:00:00", "m", "10", "5", "0.001"),  # no offset: UTC
        ("gen-2", "2026-03-01T10:00:00Z", " m ", "0", "0", "0"),
        ("gen-3", "2026-03-01 10:00:00.1234567+05:30", "m" * 400, "999999999", "1", "0.00000000005"),
        ("gen-4", "2026-02-28T23:59:59-01:00", "", "1", "2", "9999999999.9999999999"),
        ("gen-5", "2024-02-29T00:00:00+00:00", "m", "1", "2", "1_000"),
    ]
    for row in rows:
        padded = (row[0], f" {row[1]} ", *row[2:])
        fast, slow = (charges_parse(io.StringIO(csv_text([r]))) for r in (row, padded))
        assert fast == slow and len(fast) == 1, row
    first = charges_parse(io.StringIO(csv_text(rows)))
    assert [c.created_at for c in first[:2]] == [datetime(2026, 3, 1, 10, tzinfo=UTC)] * 2
    assert first[2].model == "m" * 320 and first[2].cost == Decimal(0)  # 5E-11 rounds half to even
    # The forms only the row-by-row checks take, and the errors they give, whatever the value's form.
    slow_only = [
        ("gen-6", "1767225600", "m", "", " 7 ", "$0.5"),  # Unix seconds, empty tokens, a dollar sign
    ]
    assert charges_parse(io.StringIO(csv_text(slow_only))) == [
        (("gen-6", datetime(2026, 1, 1, tzinfo=UTC), "m", 0, 7, Decimal("0.5000000000")))
    ]
    bad = [
        ("gen-7", "2026-02-30T10:00:00", "m", "1", "1", "0.1"),
        ("gen-8", "2026-03-01T10:00:00", "m", "1", "1", "1E10"),
        ("gen-9", "2026-03-01T10:00:00", "m", "1", "1", "NaN"),
        ("gen-10", "2026-03-01T10:00:00", "m", "1", "1", "-0.1"),
        ("gen-11", "2026-03-01T10:00:00", "m", "1", "1", "0x1"),
    ]
    with pytest.raises(ReconcileFileError) as caught:
        charges_parse(io.StringIO(csv_text(bad)))
    assert caught.value.errors == [
        "line 2: created_at: '2026-02-30T10:00:00' is not an ISO 8601 date-time",
        "line 3: cost: '1E10' is not an amount in USD",
        "line 4: cost: 'NaN' is not an amount in USD",
        "line 5: cost: '-0.1' is not an amount in USD",
        "line 6: cost: '0x1' is not a number",
    ]


@pytest.mark.django_db
def test_a_bad_line_at_the_end_of_a_long_file_imports_nothing(alice, tmp_path):
    # The rows before it have already gone to the database (the file is read as it is stored): they must not stay.
    record = ledger_row(alice, "gen-1", "0.0010")
    rows = [(f"gen-{i}", NOW.isoformat(), "m", 10, 5, "0.0010") for i in range(1, 5001)]
    path = write_csv(tmp_path / "long.csv", [*rows, ("gen-2", NOW.isoformat(), "m", 10, 5, "0.0010"),
                                               ("gen-x", NOW.isoformat(), "m", 10, 5, "lots")])
    err = io.StringIO()
    with pytest.raises(CommandError, match="2 bad line"):
        call_command("reconcile", "acme", path, stderr=err)
    assert err.getvalue().splitlines() == [
        "line 5002: request_id gen-2 already on line 3", "line 5003: cost: 'lots' is not a number",
    ]
    assert ProviderCharge.objects.count() == 0
    record.refresh_from_db()
    assert record.reconciled_cost is None and record.cost_source == "reported"


@pytest.mark.django_db
def test_a_file_that_stops_being_utf8_halfway_imports_nothing(alice, tmp_path):
    ledger_row(alice, "gen-1", "0.0010")
    path = write_csv(tmp_path / "a.csv", [(f"gen-{i}", NOW.isoformat(), "m", 10, 5, "0.0010") for i in range(1, 2001)])
    with open(path, "ab") as handle:  # past the first blocks the reader decodes: rows have gone to the database
        handle.write(b"gen-\xff,2026-03-01T10:00:00,m,1,1,0.1\r\n")
    with pytest.raises(CommandError, match="is not UTF-8 text"):
        call_command("reconcile", "acme", path, stderr=io.StringIO())
    assert ProviderCharge.objects.count() == 0
    assert UsageRecord.objects.get(upstream_request_id="gen-1").reconciled_cost is None


@pytest.mark.django_db
def test_a_second_file_that_says_otherwise_updates_the_charge_and_only_the_ledger_cost(alice, tmp_path):
    ledger_row(alice, "gen-1", "0.0010")
    ledger_row(alice, "gen-2", "0.0020")
    reconcile("acme", write_csv(tmp_path / "a.csv", [
        ("gen-1", NOW.isoformat(), "m", 10, 5, "0.0010"), ("gen-2", NOW.isoformat(), "m", 10, 5, "0.0020"),
    ]))
    before = {r["upstream_request_id"]: r for r in UsageRecord.objects.values()}
    line = reconcile("acme", write_csv(tmp_path / "b.csv", [
        ("gen-1", NOW.isoformat(), "m", 10, 5, "0.0010"), ("gen-2", NOW.isoformat(), "m2", 12, 5, "0.0030"),
    ]))
    assert line.startswith("matched 2, only in file 0, only in ledger 0,")
    charge = ProviderCharge.objects.get(request_id="gen-2")
    assert (charge.model_name, charge.prompt_tokens, charge.cost) == ("m2", 12, Decimal("0.0030"))
    after = {r["upstream_request_id"]: r for r in UsageRecord.objects.values()}
    assert after["gen-2"]["reconciled_cost"] == Decimal("0.0030")
    assert after["gen-1"] == before["gen-1"]
    assert {**after["gen-2"], "reconciled_cost": None} == {**before["gen-2"], "reconciled_cost": None}


@pytest.mark.django_db
def test_the_summary_covers_the_utc_months_of_the_rows_whatever_their_offset(alice, tmp_path):
    ledger_row(alice, "gen-1", "0.0010", at=datetime(2026, 2, 1, 4, 30, tzinfo=UTC))
    path = write_csv(tmp_path / "a.csv", [("gen-1", "2026-01-31T23:30:00-05:00", "m", 1, 1, "0.001")])
    line = reconcile("acme", path)
    assert line.startswith("matched 1, only in file 0, only in ledger 0,")  # February in UTC, January at -05:00


# --- prices over time ----------------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("upstream_http")
async def test_a_price_change_between_two_replies_keeps_the_first_row(alice, staff, dev_upstream, nonce):
    model = await db(make_model)(dev_upstream.v1(key=nonce, tokens=8))
    ws = await connect(alice)
    await send(ws, chat_send(model.public_name, "first"))
    started, _ = await until(ws, "chat.started")
    await until(ws, "chat.done")
    await generation.wait_for_replies()
    first = await db(UsageRecord.objects.get)(message_id=started["message_id"])
    assert first.upstream_request_id.startswith("chatcmpl-")
    assert (first.input_price, first.output_price) == (Decimal("0.5"), Decimal("1.5"))

    def reprice():
        model.input_price, model.output_price = Decimal("5"), Decimal("15")
        model.save()
        audit_record(actor=staff, action=CHANGED, obj=model, fields=["input_price", "output_price"],
                     source=SOURCE_ADMIN)

    await db(reprice)()
    await send(ws, chat_send(model.public_name, "second", conversation_id=started["conversation_id"],
                             request_id="r2"))
    started2, _ = await until(ws, "chat.started")
    await until(ws, "chat.done")
    await generation.wait_for_replies()
    await ws.disconnect()
    second = await db(UsageRecord.objects.get)(message_id=started2["message_id"])
    again = await db(UsageRecord.objects.get)(pk=first.pk)
    assert (again.estimated_cost, again.input_price) == (first.estimated_cost, Decimal("0.5"))
    assert second.input_price == Decimal("5") and second.output_price == Decimal("15")
    expected = (second.prompt_tokens * Decimal(5) + second.completion_tokens * Decimal(15)) / 1_000_000
    assert second.estimated_cost == expected.quantize(Decimal("1E-10"))
    assert second.upstream_request_id.startswith("chatcmpl-")
    assert second.upstream_request_id != first.upstream_request_id
    history = await db(lambda: list(ModelPrice.objects.filter(model=model).values_list(
        "input_price", "changed_by__username", "source")))()
    assert history == [(Decimal("5"), "staff", "admin")]


@pytest.mark.django_db
def test_the_model_admin_shows_the_price_history(client, staff):
    model = make_model("http://127.0.0.1:9/v1")
    audit_record(actor=staff, action=CHANGED, obj=model, fields=["input_price"], source=SOURCE_ADMIN)
    client.force_login(staff)
    page = client.get(f"/admin/conversations/model/{model.pk}/change/").content.decode()
    assert "price history" in page.lower() and "staff" in page


# --- forecast and alerts -------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_forecast_extrapolates_the_recent_daily_rate(alice, client):
    alice.monthly_budget = Decimal("20")
    alice.save()
    now = datetime(2025, 3, 10, 12, tzinfo=UTC)
    for day in range(3, 11):  # 1 USD a day from the 3rd to the 10th
        record = UsageRecord.objects.create(
            user=alice, source="api", provider_name="acme", model_name="acme/m", estimated_cost=Decimal(1),
            cost_source="price", created_at=datetime(2025, 3, day, 9, tzinfo=UTC),
        )
        usage_day_add(record=record)
    forecast = usage_forecast(user=alice, now=now)
    assert forecast.spent == 8 and forecast.daily_rate == 1
    assert forecast.month_end_cost == 8 + 21  # 21 days left after the 10th
    assert forecast.exhausted_on == date(2025, 3, 22)
    assert forecast.as_json() == {"month_end_cost": "29", "budget": "20", "exhausted_on": "2025-03-22"}
    client.force_login(alice)
    data = client.get("/usage/summary.json").json()
    assert set(data["forecast"]) == {"month_end_cost", "budget", "exhausted_on"} and data["forecast"]["budget"] == "20"
    assert "forecast-month-end" in client.get("/usage/").content.decode()


@pytest.mark.django_db(transaction=True)  # the emails go when the ledger's transaction commits
def test_budget_alerts_email_once_per_threshold_and_show_on_the_chat_page(alice, client):
    alice.monthly_budget, alice.email = Decimal("1"), "alice@example.com"
    alice.save()
    ledger_row(alice, "a", "0.5")
    assert mail.outbox == []
    ledger_row(alice, "b", "0.35")  # 85 %
    assert len(mail.outbox) == 1 and "80%" in mail.outbox[0].subject and mail.outbox[0].to == ["alice@example.com"]
    ledger_row(alice, "c", "0.05")  # still between 80 and 100: nothing new
    assert len(mail.outbox) == 1
    ledger_row(alice, "d", "0.2")  # 110 %
    assert len(mail.outbox) == 2 and "used up" in mail.outbox[1].subject
    ledger_row(alice, "e", "0.2")
    assert len(mail.outbox) == 2
    client.force_login(alice)
    assert 'id="budget-alert"' in client.get("/").content.decode()


@pytest.mark.django_db(transaction=True)
def test_budget_alerts_fire_once_under_concurrent_sends(alice):
    alice.monthly_budget, alice.email = Decimal("1"), "alice@example.com"
    alice.save()
    barrier = threading.Barrier(6)
    failures: list[BaseException] = []

    def send_one(i: int) -> None:
        try:
            barrier.wait()
            ledger_row(alice, f"c{i}", "0.3")
        except BaseException as exc:
            failures.append(exc)
        finally:
            close_old_connections()

    threads = [threading.Thread(target=send_one, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures
    assert sorted(BudgetAlert.objects.filter(user=alice).values_list("threshold", flat=True)) == [80, 100]
    assert len(mail.outbox) == 2


def test_the_normaliser_gives_the_response_id_with_the_usage():
    from conversations.upstream.events import SSEEvent
    from conversations.upstream.normalize import StreamNormalizer, normalize_response

    n = StreamNormalizer()
    events = n.feed(SSEEvent('{"id": "gen-7", "choices": [{"index": 0, "delta": {"content": "hi"}}]}'))
    events += n.feed(SSEEvent('{"id": "gen-7", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],'
                              ' "usage": {"prompt_tokens": 3, "completion_tokens": 1}}'))
    events += n.feed(SSEEvent("[DONE]"))
    assert isinstance(events[-1], Usage) and events[-1].response_id == "gen-7" and n.response_id == "gen-7"
    body = {"id": "gen-8", "choices": [{"message": {"content": "x"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 1}}
    assert normalize_response(body)[-1].response_id == "gen-8"  # type: ignore[union-attr]


# --- before sending: chat.estimate ----------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("upstream_http")
async def test_chat_estimate_matches_what_the_upstream_then_reports(alice, bob, dev_upstream, nonce):
    model = await db(make_model)(dev_upstream.v1(key=nonce, tokens=8))
    ws = await connect(alice)
    await send(ws, chat_send(model.public_name, "The history: tides rise and fall twice a day.", system="Be brief."))
    started, _ = await until(ws, "chat.started")
    await until(ws, "chat.done")
    await generation.wait_for_replies()
    content = "And why do the tides follow the moon rather than the sun, mostly?"
    frame = {"type": "chat.estimate", "request_id": "e1", "conversation_id": started["conversation_id"],
             "model": model.public_name, "content": content, "params": {"max_tokens": 100}}
    await send(ws, frame)
    estimate, _ = await until(ws, "chat.estimate")
    assert estimate["request_id"] == "e1" and estimate["estimated"] is True
    # The cost if the reply ran to its cap: prompt × 0.5 + 100 × 1.5 per million tokens.
    worst = (Decimal(estimate["prompt_tokens"]) * Decimal("0.5") + 100 * Decimal("1.5")) / 1_000_000
    assert Decimal(estimate["max_cost"]) == worst
    await send(ws, chat_send(model.public_name, content, conversation_id=started["conversation_id"],
                             request_id="r2", params={"max_tokens": 100}))
    started2, _ = await until(ws, "chat.started")
    await until(ws, "chat.done")
    await generation.wait_for_replies()
    record = await db(UsageRecord.objects.get)(message_id=started2["message_id"])
    assert not record.usage_estimated  # the upstream's own count, to compare with
    # Counted offline with the same tokenizer family: within 10 % (chat templates add a few tokens a message).
    assert abs(estimate["prompt_tokens"] - record.prompt_tokens) <= max(4, record.prompt_tokens // 10)
    assert record.estimated_cost <= Decimal(estimate["max_cost"])
    # Someone else's conversation is not found; a bad frame is a clear error.
    bobs = await db(Conversation.objects.create)(owner=bob, title="bob's")
    await send(ws, {**frame, "conversation_id": bobs.pk})
    error, _ = await until(ws, "chat.error")
    assert error["code"] == "not_found" and error["request_id"] == "e1"
    await send(ws, {**frame, "model": ""})
    error, _ = await until(ws, "chat.error")
    assert error["code"] == "bad_request"
    await ws.disconnect()
