"""Monthly budgets: reserve a request's worst case at admission, settle to the actual cost when it ends."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import TypedDict

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Sum
from django.utils import timezone

from conversations.audit import CHANGED, audit_record
from conversations.errors import BudgetExceeded
from conversations.models import BudgetReservation, Team, UsageRecord, User
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


@dataclass(frozen=True)
class TeamBudgetStatus:
    """A group's shared budget this month: budget, spent, reserved, remaining."""

    name: str
    budget: Decimal
    spent: Decimal
    reserved: Decimal
    remaining: Decimal
    month: str  # the month's first day in the server's time zone, YYYY-MM-DD

    @property
    def text(self) -> BudgetText:
        """How the group's budget reads on the pages (never a negative amount left)."""
        return budget_text(budget=self.budget, spent=self.spent, reserved=self.reserved, remaining=self.remaining)


def team_month_start(now: datetime | None = None) -> datetime:
    """The start of the current calendar month in the server's time zone (a group's members may live in many)."""
    zone = zone_named(settings.TIME_ZONE)
    return day_start(month_first(local_today(zone, now)), zone).astimezone(UTC)


def team_month_spend(team: Team, now: datetime | None = None) -> Decimal:
    """What the group's current members spent since the start of the group's month (exact, from the ledger)."""
    records = UsageRecord.objects.filter(user__groups=team.group_id, created_at__gte=team_month_start(now))
    units = records.aggregate(units=ledger_sums()["cost_units"])["units"]
    return units_cost(units or 0)


def _team_reserved(team: Team) -> Decimal:
    since = timezone.now() - STALE_RESERVATION
    held = BudgetReservation.objects.filter(user__groups=team.group_id, created_at__gte=since)
    return held.aggregate(total=Sum("amount"))["total"] or ZERO


def team_budget_remaining(team: Team) -> Decimal:
    """What is left of the group's shared budget this month after its members' spend and open reservations."""
    assert team.monthly_budget is not None
    return team.monthly_budget - team_month_spend(team) - _team_reserved(team)


def team_budget_status(team: Team) -> TeamBudgetStatus | None:
    """The group's shared budget this month, for pages and commands (None: the group has no budget)."""
    if team.monthly_budget is None:
        return None
    spent, reserved = team_month_spend(team), _team_reserved(team)
    zone = zone_named(settings.TIME_ZONE)
    return TeamBudgetStatus(
        name=team.group.name, budget=team.monthly_budget, spent=spent, reserved=reserved,
        remaining=team.monthly_budget - spent - reserved, month=month_first(local_today(zone)).isoformat(),
    )


def user_team_budgets(user: User) -> list[TeamBudgetStatus]:
    """The shared budgets of the user's groups that have one, by group name."""
    teams = Team.objects.select_related("group").filter(group__user=user, monthly_budget__isnull=False)
    return [s for t in teams.order_by("group__name") if (s := team_budget_status(t)) is not None]


def worst_case_cost(
    *, prompt_tokens: int, max_tokens: int | None, input_price: Decimal | None, output_price: Decimal | None
) -> Decimal:
    completion = max_tokens or DEFAULT_MAX_OUTPUT_TOKENS
    per_million = Decimal(1_000_000)
    prompt_cost = Decimal(prompt_tokens) * (input_price or 0)
    return (prompt_cost + Decimal(completion) * (output_price or 0)) / per_million


def budget_reserve(*, user_id: int, amount: Decimal) -> int | None:
    """Hold `amount` against the user's budget and each of their groups' budgets, or raise BudgetExceeded naming
    the budget that does not fit; the reservation id (None: no budget applies).

    Admissions of one user run one after another, so concurrent requests cannot all see the same remaining
    amount: on PostgreSQL the user row is locked (SELECT ... FOR UPDATE) for the transaction, and so are the
    rows of their budgeted groups (in key order, so that two members never wait on each other in a cycle): the
    admissions of all members of a group are decided one at a time. On SQLite transactions are IMMEDIATE
    (settings): the write lock is taken at BEGIN and every writer waits its turn. The month is the user's
    calendar month in their time zone (a group's: the server's); reservations older than STALE_RESERVATION
    (left by a process that died) no longer count and are cleared here.
    """
    with transaction.atomic():
        user = User.objects.select_for_update().get(pk=user_id)
        teams = list(
            Team.objects.select_for_update().select_related("group")
            .filter(group__user=user_id, monthly_budget__isnull=False).order_by("pk")
        )
        if user.monthly_budget is None and not teams:
            return None
        stale = timezone.now() - STALE_RESERVATION
        BudgetReservation.objects.filter(user_id=user_id, created_at__lt=stale).delete()
        if user.monthly_budget is not None:
            remaining = budget_remaining(user)
            assert remaining is not None
            if remaining <= 0 or amount > remaining:
                raise BudgetExceeded(remaining, amount)
        for team in teams:
            left = team_budget_remaining(team)
            if left <= 0 or amount > left:
                raise BudgetExceeded(left, amount, group=team.group.name)
        return BudgetReservation.objects.create(user=user, amount=amount).pk


def group_budget_exists_sql(user_alias: str) -> str:
    """SQL true when a group of the user `user_alias.id` has a shared budget: the one spelling of that rule for
    the hand-written statements on the admission's path (held equal to the ORM by tests/teams/test_groups.py)."""
    quote = connection.ops.quote_name
    team, memberships = quote(Team._meta.db_table), quote(User.groups.through._meta.db_table)
    return (  # names from the models' own metadata: nothing here comes from a request
        f"EXISTS (SELECT 1 FROM {team} t JOIN {memberships} g ON g.group_id = t.group_id "  # noqa: S608
        f"WHERE g.user_id = {user_alias}.id AND t.monthly_budget IS NOT NULL)"
    )


def budgets_apply_sql(user_alias: str) -> str:
    """SQL true when any budget limits the user `user_alias.id`: their own or one of their groups'."""
    return f"({user_alias}.monthly_budget IS NOT NULL OR {group_budget_exists_sql(user_alias)})"


@functools.cache
def _budgets_apply_sql() -> str:
    # Raw SQL: the ORM's version (an OR with an EXISTS) cost ~0.45 ms of query building.
    user = connection.ops.quote_name(User._meta.db_table)
    return f"SELECT {budgets_apply_sql('u')} FROM {user} u WHERE u.id = %s"  # noqa: S608


def budgets_apply(*, user_id: int) -> bool:
    """Whether any budget limits this user's requests: their own or one of their groups' (one statement)."""
    with connection.cursor() as cursor:
        cursor.execute(_budgets_apply_sql(), [user_id])
        row = cursor.fetchone()
    return bool(row and row[0])


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
