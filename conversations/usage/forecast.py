"""The month-end forecast: spend so far, extrapolated from the recent daily rate, and the day a budget runs out."""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db.models import Q, QuerySet, Sum
from django.utils import timezone

from conversations.models import Team, UsageRecord, User
from conversations.usage.days import day_start, local_today, month_first, zone_named
from conversations.usage.rollup import money_text

RATE_DAYS = 7  # the recent daily rate: the mean of the last week (or of the month so far, when younger)


@dataclass(frozen=True)
class Forecast:
    spent: Decimal
    daily_rate: Decimal
    month_end_cost: Decimal
    budget: Decimal | None
    exhausted_on: date | None

    def as_json(self) -> dict[str, str | None]:
        """The `forecast` object of /usage/summary.json."""
        return {
            "month_end_cost": money_text(self.month_end_cost.quantize(Decimal("1E-10"))),
            "budget": money_text(self.budget) if self.budget is not None else None,
            "exhausted_on": self.exhausted_on.isoformat() if self.exhausted_on else None,
        }


def usage_forecast(*, user: User, now: datetime | None = None) -> Forecast:
    """The user's current month, in their time zone, against their own budget."""
    return spend_forecast(
        records=UsageRecord.objects.for_user(user), zone=zone_named(user.timezone), budget=user.monthly_budget, now=now
    )


def group_forecast(*, name: str, now: datetime | None = None) -> Forecast | None:
    """A group's current month, in the server's time zone as its shared budget counts it, over its members' spend
    (None: no such group)."""
    team = Team.objects.filter(group__name=name).first()
    if team is None:
        return None
    return spend_forecast(
        records=UsageRecord.objects.filter(user__groups=team.group_id),
        zone=zone_named(settings.TIME_ZONE),
        budget=team.monthly_budget,
        now=now,
    )


def spend_forecast(
    *, records: QuerySet[UsageRecord], zone: ZoneInfo, budget: Decimal | None, now: datetime | None = None
) -> Forecast:
    """Spend so far this month (in `zone`) plus the recent daily rate times the days left, and the day that rate
    makes the spend reach `budget` (already reached: today; not this month: None)."""
    now = now or timezone.now()
    today = local_today(zone, now)
    first = month_first(today)
    last = date(today.year, today.month, calendar.monthrange(today.year, today.month)[1])
    window_first = max(first, today - timedelta(days=RATE_DAYS - 1))
    window_start = day_start(window_first, zone)
    # One query for both sums (the dashboard counts its queries); a forecast needs no more than 10 places.
    sums = (
        records
        .filter(created_at__gte=day_start(first, zone), created_at__lte=now)
        .aggregate(spent=Sum("estimated_cost"), recent=Sum("estimated_cost", filter=Q(created_at__gte=window_start)))
    )
    spent, recent = _money(sums["spent"]), _money(sums["recent"])
    rate = recent / ((today - window_first).days + 1)
    days_left = (last - today).days
    month_end = spent + rate * days_left
    exhausted_on = None
    if budget is not None:
        if spent >= budget:
            exhausted_on = today
        elif rate > 0:
            # The first whole day after today at whose end the spend reaches the budget.
            days = int(((budget - spent) / rate).to_integral_value(rounding="ROUND_CEILING"))
            day = today + timedelta(days=days)
            exhausted_on = day if day <= last else None
    return Forecast(spent, rate, month_end, budget, exhausted_on)


def _money(value: Decimal | float | None) -> Decimal:
    return Decimal(str(value or 0)).quantize(Decimal("1E-10"))
