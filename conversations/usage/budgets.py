"""Monthly budgets: reserve a request's worst case at admission, settle to the actual cost when it ends."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import TypedDict

from django.db import transaction
from django.db.models import Sum
from django.utils import timezone

from conversations.audit import CHANGED, audit_record
from conversations.errors import BudgetExceeded
from conversations.models import BudgetReservation, UsageRecord, User
from conversations.money import BudgetText, budget_text
from conversations.usage.days import day_start, local_today, month_first, zone_named
from conversations.usage.rollup import Owner, ledger_sums, rolled_total, units_cost

DEFAULT_MAX_OUTPUT_TOKENS = 4096  # worst case when neither the request nor the model sets a cap
STALE_RESERVATION = timedelta(hours=1)  # a process that died mid-request leaves its reservation behind
ZERO = Decimal(0)


class BudgetStatus(TypedDict):
    budget: Decimal
    spent: Decimal
    reserved: Decimal
    remaining: Decimal
    month: str  # the month's first day in the user's time zone, YYYY-MM-DD


def month_start(user: User, now: datetime | None = None) -> datetime:
    """The start of the current calendar month in the user's time zone."""
    zone = zone_named(user.timezone)
    return day_start(month_first(local_today(zone, now)), zone).astimezone(zone)


def month_spend(user: User, now: datetime | None = None) -> Decimal:
    """What the user's ledger records cost since the start of their month (exact, from the daily roll-up)."""
    owner = Owner.of(user)
    totals = rolled_total(owner, month_first(local_today(owner.zone, now)))
    if totals is not None:
        return totals.estimated_cost
    # The roll-up is behind (rows written around it): sum the ledger itself, as exact integer units.
    units = UsageRecord.objects.for_user(user).filter(created_at__gte=month_start(user, now)).aggregate(
        units=ledger_sums()["cost_units"]
    )["units"]
    return units_cost(units or 0)


def _reserved(user: User) -> Decimal:
    since = timezone.now() - STALE_RESERVATION
    held = BudgetReservation.objects.filter(user_id=user.pk, created_at__gte=since)
    return held.aggregate(total=Sum("amount"))["total"] or ZERO


def budget_remaining(user: User) -> Decimal | None:
    """What is left this month after spend and open reservations; None when the user has no budget."""
    if user.monthly_budget is None:
        return None
    return user.monthly_budget - month_spend(user) - _reserved(user)


def budget_status(user: User) -> BudgetStatus | None:
    """The user's budget this month, for pages: budget, spent, reserved, remaining (None: no budget)."""
    if user.monthly_budget is None:
        return None
    spent, reserved = month_spend(user), _reserved(user)
    return {
        "budget": user.monthly_budget,
        "spent": spent,
        "reserved": reserved,
        "remaining": user.monthly_budget - spent - reserved,
        "month": month_first(local_today(zone_named(user.timezone))).isoformat(),
    }


class BudgetDisplay(BudgetStatus, BudgetText):
    """A budget status with the words every page shows for it (conversations/conversations/money.py)."""


def budget_display(user: User) -> BudgetDisplay | None:
    """The user's budget this month and how it reads ("$0.0045 left", never a negative amount)."""
    status = budget_status(user)
    if status is None:
        return None
    words = budget_text(
        budget=status["budget"], spent=status["spent"], reserved=status["reserved"], remaining=status["remaining"]
    )
    return {**status, **words}


def worst_case_cost(
    *, prompt_tokens: int, max_tokens: int | None, input_price: Decimal | None, output_price: Decimal | None
) -> Decimal:
    completion = max_tokens or DEFAULT_MAX_OUTPUT_TOKENS
    per_million = Decimal(1_000_000)
    prompt_cost = Decimal(prompt_tokens) * (input_price or 0)
    return (prompt_cost + Decimal(completion) * (output_price or 0)) / per_million


def budget_reserve(*, user_id: int, amount: Decimal) -> int | None:
    """Hold `amount` against the user's budget or raise BudgetExceeded; the reservation id (None: no budget).

    Admissions of one user run one after another, so concurrent requests cannot all see the same remaining
    amount: on PostgreSQL the user row is locked (SELECT ... FOR UPDATE) for the transaction; on SQLite
    transactions are IMMEDIATE (settings): the write lock is taken at BEGIN and every writer waits its turn.
    The month is the user's calendar month in their time zone; reservations older than STALE_RESERVATION
    (left by a process that died) no longer count and are cleared here.
    """
    with transaction.atomic():
        user = User.objects.select_for_update().get(pk=user_id)
        if user.monthly_budget is None:
            return None
        stale = timezone.now() - STALE_RESERVATION
        BudgetReservation.objects.filter(user_id=user_id, created_at__lt=stale).delete()
        remaining = budget_remaining(user)
        assert remaining is not None
        if remaining <= 0 or amount > remaining:
            raise BudgetExceeded(remaining, amount)
        return BudgetReservation.objects.create(user=user, amount=amount).pk


def budget_settle(reservation_id: int | None) -> None:
    """Release a reservation; call inside the transaction that writes the request's UsageRecord."""
    if reservation_id is not None:
        BudgetReservation.objects.filter(pk=reservation_id).delete()


def user_budget_set(
    *, user: User, monthly: Decimal | None, actor: User | None = None, source: str = ""
) -> User:
    """Set (or, with None, remove) the user's monthly budget in USD; the change goes to the audit trail."""
    if monthly is not None and monthly < 0:
        raise ValueError("a budget cannot be negative")
    with transaction.atomic():
        locked = User.objects.select_for_update().get(pk=user.pk)
        before = locked.monthly_budget
        locked.monthly_budget = monthly
        locked.save(update_fields=["monthly_budget"])
        if before != monthly:
            audit_record(actor=actor, action=CHANGED, obj=locked, fields=["monthly_budget"], source=source)
    user.monthly_budget = monthly
    return user
