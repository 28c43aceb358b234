"""Local days: a user's time zone, the UTC span of a range of their days, the day a moment falls on."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.utils import timezone

UTC = ZoneInfo("UTC")


def zone_named(name: str | None) -> ZoneInfo:
    """The IANA zone of that name; UTC for an empty or unknown name (a bad setting must not break a page)."""
    try:
        return ZoneInfo(name) if name else UTC
    except (ZoneInfoNotFoundError, ValueError):
        return UTC


def local_day(moment: datetime, zone: ZoneInfo) -> date:
    return moment.astimezone(zone).date()


def local_today(zone: ZoneInfo, now: datetime | None = None) -> date:
    return local_day(now or timezone.now(), zone)


def day_start(day: date, zone: ZoneInfo) -> datetime:
    """The first moment of `day` in `zone` (in a spring-forward gap at midnight: the moment clocks jump)."""
    return datetime.combine(day, time.min, tzinfo=zone).astimezone(UTC)


def day_span(zone: ZoneInfo, first: date, last: date) -> tuple[datetime, datetime]:
    """[start, end) in UTC covering the local days first..last inclusive."""
    return day_start(first, zone), day_start(last + timedelta(days=1), zone)


def month_first(day: date) -> date:
    return day.replace(day=1)


def days_between(first: date, last: date) -> list[date]:
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


def previous_month(day: date) -> tuple[date, date]:
    """The first and last day of the month before `day`'s."""
    last = month_first(day) - timedelta(days=1)
    return month_first(last), last
