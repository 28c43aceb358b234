"""Reads behind the usage pages: whose usage a viewer may see, its totals by day, model, provider, user."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from operator import add
from typing import Any

from django.conf import settings
from django.contrib.auth.models import Group
from django.db.models import Count, QuerySet, Sum

from conversations.models import Conversation, Team, UsageRecord, User
from conversations.rows import raw_rows
from conversations.usage.days import days_between, local_today, month_first, zone_named
from conversations.usage.ranking import top_conversations
from conversations.usage.rollup import EVERYONE, SUMMED, Owner, Totals, ledger_q, rolled_up, rollup_verify

MAX_SPAN_DAYS = 3660  # ten years: a bound on what one request may ask the database to group


class UsageQueryError(Exception):
    """A bad usage request (dates, user): `code` and a message for people, answered as 400 / 404."""

    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status


@dataclass(frozen=True)
class UsageScope:
    """Whose usage (one user, or everyone for staff) on which local days, first..last inclusive."""

    viewer: User
    subject: User | None  # None: every user (staff only), or every member of `group`
    first: date
    last: date
    memo: dict = field(default_factory=dict, compare=False, repr=False)  # what one request learnt already
    group: str | None = None  # a group's usage (its managers and staff): the members' usage, each on their days
    members: tuple[int, ...] = ()  # the group's members' ids

    @property
    def everyone(self) -> bool:
        """Several users' usage: every user's, or a group's members'."""
        return self.subject is None

    @property
    def owner(self) -> Owner | None:
        return Owner.of(self.subject) if self.subject is not None else EVERYONE


def usage_subject(viewer: User, wanted: str | None) -> User | None:
    """Whose usage the viewer asked for: staff may name `all`, a username or an id; others get their own."""
    if not viewer.is_staff or not wanted or wanted in ("me", viewer.get_username()):
        return viewer
    if wanted == "all":
        return None
    found = User.objects.filter(username=wanted).first()
    if found is None and wanted.isdigit():
        found = User.objects.filter(pk=int(wanted)).first()
    if found is None:
        raise UsageQueryError("unknown_user", f"no user named {wanted!r}", status=404)
    return found


def usage_group(viewer: User, wanted: str) -> tuple[str, tuple[int, ...]]:
    """The group a viewer asked for and its members' ids: staff may see any group, a manager their own; to anyone
    else a group is unknown (404), whether it exists or not."""
    team = Team.objects.managed_by(viewer).select_related("group").filter(group__name=wanted).first()
    group = team.group if team is not None else (Group.objects.filter(name=wanted).first() if viewer.is_staff else None)
    if group is None:
        raise UsageQueryError("unknown_group", f"no group named {wanted!r}", status=404)
    return group.name, tuple(group.user_set.order_by("pk").values_list("pk", flat=True))


def _parse_day(name: str, value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise UsageQueryError("bad_date", f"{name}: expected a date as YYYY-MM-DD, got {value!r}") from None


def usage_scope(
    *, viewer: User, wanted_user: str | None, first: str | None, last: str | None, wanted_group: str | None = None
) -> UsageScope:
    """Check and resolve a request's `user` (or `group`), `from` and `to`; by default this month in the subject's
    zone (a group's: the server's)."""
    group, members = usage_group(viewer, wanted_group) if wanted_group else (None, ())
    subject = usage_subject(viewer, wanted_user) if group is None else None
    today = local_today(zone_named(settings.TIME_ZONE if group else (subject or viewer).timezone))
    last_day = _parse_day("to", last) if last else None
    first_day = _parse_day("from", first) if first else month_first(last_day or today)
    if last_day is None:
        last_day = max(today, first_day)
    if last_day < first_day:
        raise UsageQueryError("bad_date", f"to ({last_day}) is before from ({first_day})")
    if (last_day - first_day).days >= MAX_SPAN_DAYS:
        raise UsageQueryError("bad_date", f"at most {MAX_SPAN_DAYS} days at a time")
    return UsageScope(viewer=viewer, subject=subject, first=first_day, last=last_day, group=group, members=members)


@dataclass
class Summary:
    """Totals of a scope and their breakdowns, all from one grouped read of the daily roll-up."""

    totals: Totals = field(default_factory=Totals)
    by_day: dict[date, Totals] = field(default_factory=dict)  # days with usage, in order
    by_model: dict[str, Totals] = field(default_factory=dict)  # most expensive first
    by_provider: dict[str, Totals] = field(default_factory=dict)
    unpriced_models: dict[str, int] = field(default_factory=dict)  # model → records without a known price

    def day_series(self, first: date, last: date) -> list[tuple[date, Totals]]:
        """Every day first..last, zero where nothing was used (what a chart draws)."""
        return [(d, self.by_day.get(d, Totals())) for d in days_between(first, last)]


def _checked(scope: UsageScope, rolled: int | None = None) -> bool:
    """Verify a single owner's roll-up for the scope, once per scope (request); False if it was recounted."""
    owner = scope.owner  # None: everyone
    if owner is None or scope.memo.get("checked"):
        return True
    scope.memo["checked"] = True
    return rollup_verify(owner, scope.first, scope.last, rolled)


def _rolled(scope: UsageScope, *group: str) -> QuerySet:
    rows = rolled_up(scope.owner, scope.first, scope.last, *group)
    # A group without members still reads (no id is -1): an empty IN list would make no SQL at all for raw_rows.
    return rows.filter(user_id__in=scope.members or (-1,)) if scope.group is not None else rows


def _grouped(scope: UsageScope, *group: str) -> QuerySet:
    _checked(scope)
    return _rolled(scope, *group)


def _most_expensive(groups: dict[str, Totals]) -> dict[str, Totals]:
    return dict(sorted(groups.items(), key=lambda kv: (-kv[1].cost_units, -kv[1].total_tokens, kv[0])))


def _fold(groups: dict[Any, list[int]], key: Any, sums: list[int]) -> None:
    kept = groups.get(key)
    groups[key] = sums if kept is None else list(map(add, kept, sums))


def _summed(groups: dict[Any, list[int]]) -> dict[Any, Totals]:
    return {key: Totals(**{k: int(v or 0) for k, v in zip(SUMMED, sums, strict=True)}) for key, sums in groups.items()}


def _day(value: date | str) -> date:
    return value if isinstance(value, date) else date.fromisoformat(value)  # SQLite gives dates as text


def usage_summary(scope: UsageScope) -> Summary:
    """Totals, by day, by model, by provider and the unpriced models of the scope (one roll-up query)."""
    group = ("day", "provider_name", "model_name")
    query = _rolled(scope, *group).values_list(*group, *SUMMED)
    rows = raw_rows(query)
    if not _checked(scope, rolled=sum(r[3] or 0 for r in rows)):
        rows = raw_rows(query)
    # Lists of sums folded in one pass: a year of every user is thousands of rows, and a Totals.add per row
    # and breakdown took longer than the query.
    by_day: dict[Any, list[int]] = {}
    by_provider_model: dict[tuple[str, str], list[int]] = {}
    for day, provider, model, *sums in rows:
        _fold(by_day, day, sums)
        _fold(by_provider_model, (provider, model), sums)
    by_model: dict[str, list[int]] = {}  # by public name: a name may have served under two providers
    by_provider: dict[str, list[int]] = {}
    for (provider, model), sums in by_provider_model.items():
        _fold(by_model, model, sums)
        _fold(by_provider, provider, sums)
    summary = Summary()
    summary.by_day = dict(sorted((_day(day), totals) for day, totals in _summed(by_day).items()))
    for totals in summary.by_day.values():
        summary.totals.add(totals)
    summary.by_model = _most_expensive(_summed(by_model))
    summary.by_provider = _most_expensive(_summed(by_provider))
    summary.unpriced_models = {
        model: t.unpriced_requests for model, t in summary.by_model.items() if t.unpriced_requests
    }
    return summary


@dataclass
class ConversationUsage:
    conversation_id: int
    title: str | None  # None: the conversation was deleted
    totals: Totals


def usage_by_conversation(scope: UsageScope, limit: int = 10) -> list[ConversationUsage]:
    """The scope's most expensive conversations (API calls have none), with their titles (ranking.py). A group's
    managers see how much its members spend, not what they talk about: none for a group."""
    if scope.group is not None:
        return []
    _checked(scope)
    top = top_conversations(scope.owner, scope.first, scope.last, limit)
    conversations = Conversation.objects.filter(pk__in=[pk for pk, _ in top])
    if scope.subject is not None:
        conversations = conversations.filter(owner=scope.subject)
    titles = dict(conversations.values_list("pk", "title"))
    return [
        ConversationUsage(pk, (titles[pk] or f"Conversation {pk}") if pk in titles else None, totals)
        for pk, totals in top
    ]


@dataclass
class UserUsage:
    user_id: int
    username: str
    totals: Totals


def usage_by_user(scope: UsageScope) -> list[UserUsage]:
    """Staff: each user's totals in the scope, most expensive first (two queries: grouping by the user's id
    alone lets the database sum in index order; the names are read for the few users found)."""
    result = []
    for row in _grouped(scope, "user_id"):
        totals = Totals()
        totals.add(row)
        result.append(UserUsage(row["user_id"], "", totals))
    names = dict(User.objects.filter(pk__in=[u.user_id for u in result]).values_list("pk", "username"))
    for usage in result:
        usage.username = names.get(usage.user_id, "")
    return sorted(result, key=lambda u: (-u.totals.cost_units, -u.totals.total_tokens, u.username))


def usage_records(
    *, subject: User | None, first: date | None, last: date | None, zones: dict[str, list[str]] | None = None,
    members: tuple[int, ...] | None = None,
) -> QuerySet[UsageRecord]:
    """The ledger rows of `subject` (None: everyone, or the group `members` when given; from usage_subject and
    usage_group) on its local days first..last."""
    owner = Owner.of(subject) if subject is not None else EVERYONE
    records = UsageRecord.objects.for_user(subject) if subject is not None else UsageRecord.objects.all()
    if subject is None and members is not None:
        records = records.filter(user_id__in=members)
    return records.filter(ledger_q(owner, first, last, zones))


def conversation_spend(*, user: User, conversation_id: int) -> tuple[Decimal, int]:
    """A conversation's running cost and request count: every ledger row of it, all branches and regenerations."""
    sums = UsageRecord.objects.for_user(user).filter(conversation_id=conversation_id).aggregate(
        cost=Sum("estimated_cost"), n=Count("pk")
    )
    return Decimal(str(sums["cost"] or 0)), sums["n"]
