"""Monthly budgets: reserve a request's worst-case cost at admission, settle to the actual cost when it ends."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from django.db import transaction
from django.db.models import Sum
from django.utils import timezone

from conversations.models import BudgetReservation, UsageRecord, User

DEFAULT_MAX_OUTPUT_TOKENS = 4096  # worst case when neither the request nor the model sets a cap
STALE_RESERVATION = timedelta(hours=1)  # a process that died mid-request leaves its reservation behind


class BudgetExceeded(Exception):
    """The request's worst case does not fit in what is left of the user's monthly budget."""

    def __init__(self, remaining: Decimal) -> None:
        self.remaining = remaining
        super().__init__(
            f"Your monthly budget is used up (${max(remaining, Decimal(0)):.4f} left); "
            "ask an administrator to raise it."
        )


def month_start(user: User, now: datetime | None = None) -> datetime:
    """The start of the current calendar month in the user's time zone."""
    tz = ZoneInfo(user.timezone or "UTC")
    local = (now or timezone.now()).astimezone(tz)
    return local.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def month_spend(user: User, now: datetime | None = None) -> Decimal:
    spent = UsageRecord.objects.filter(user=user, created_at__gte=month_start(user, now)).aggregate(
        total=Sum("estimated_cost")
    )["total"]
    return spent or Decimal(0)


def budget_remaining(user: User) -> Decimal | None:
    """What is left this month after spend and open reservations; None when the user has no budget."""
    if user.monthly_budget is None:
        return None
    reserved = _open_reservations(user).aggregate(total=Sum("amount"))["total"] or Decimal(0)
    return user.monthly_budget - month_spend(user) - reserved


def _open_reservations(user: User):
    return BudgetReservation.objects.filter(user=user, created_at__gte=timezone.now() - STALE_RESERVATION)


def worst_case_cost(
    *, prompt_tokens: int, max_tokens: int | None, input_price: Decimal | None, output_price: Decimal | None
) -> Decimal:
    completion = max_tokens or DEFAULT_MAX_OUTPUT_TOKENS
    per_million = Decimal(1_000_000)
    return (Decimal(prompt_tokens) * (input_price or 0) + Decimal(completion) * (output_price or 0)) / per_million


def budget_reserve(*, user_id: int, amount: Decimal) -> int | None:
    """Hold `amount` against the user's budget, or raise BudgetExceeded. Returns the reservation id (None: no budget).

    The user row is locked (PostgreSQL) or the write lock taken up front (SQLite IMMEDIATE transactions), so
    concurrent requests are admitted one after another and cannot all see the same remaining amount.
    """
    with transaction.atomic():
        user = User.objects.select_for_update().get(pk=user_id)
        remaining = budget_remaining(user)
        if remaining is None:
            return None
        if remaining <= 0 or amount > remaining:
            raise BudgetExceeded(remaining)
        return BudgetReservation.objects.create(user=user, amount=amount).pk


def budget_settle(reservation_id: int | None) -> None:
    """Release a reservation; call inside the transaction that writes the request's UsageRecord."""
    if reservation_id is not None:
        BudgetReservation.objects.filter(pk=reservation_id).delete()
