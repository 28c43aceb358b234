"""The ledger's daily roll-up (UsageDay): one upsert per ledger write, recounted from the ledger when behind.

Each ledger row counts once, on its owner's local day (in the owner's current time zone, stored as `tz`).
Money is summed as integer units of 10^-10 USD, so totals are exact on SQLite (which keeps decimals as
floats) as well as on PostgreSQL. A user's own reads do not trust the roll-up blindly: `rollup_verify`
compares its request count with the ledger's row count for the same span (an index-only count) and
recounts when they differ, so rows written around the roll-up (a backfill, a writer that forgot
`usage_day_add`) and a changed time zone heal on the next read.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass
from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from functools import cache
from zoneinfo import ZoneInfo

from django.db import IntegrityError, connection, transaction
from django.db.models import (
    BigIntegerField,
    Count,
    DecimalField,
    ExpressionWrapper,
    F,
    Max,
    Min,
    Model,
    Q,
    QuerySet,
    Sum,
    Value,
)
from django.db.models.functions import Cast, Round, TruncDate

from conversations.models import ConversationDay, ConversationTotal, UsageDay, UsageRecord, User
from conversations.usage.days import UTC, day_span, zone_named

log = logging.getLogger(__name__)

UNITS = 10**10  # cost_units per USD: the ledger keeps 10 decimal places
SUMMED = (
    "requests", "prompt_tokens", "completion_tokens", "total_tokens", "cost_units", "unpriced_requests",
    "estimated_usage_requests",
)


def cost_units(cost: Decimal) -> int:
    return int((Decimal(cost) * UNITS).to_integral_value(rounding=ROUND_HALF_UP))


def units_cost(units: int) -> Decimal:
    """Exact: 268000 units → Decimal('0.0000268000')."""
    return Decimal(int(units)).scaleb(-10)


def money_text(value: Decimal) -> str:
    """Money as an exact decimal string: Decimal('0.0000268000') → '0.0000268', zero → '0'."""
    return format(value.normalize(), "f") if value else "0"


@dataclass
class Totals:
    """The sums every usage figure is made of."""

    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    cost_units: int = 0
    unpriced_requests: int = 0
    estimated_usage_requests: int = 0

    @property
    def estimated_cost(self) -> Decimal:
        return units_cost(self.cost_units)

    @property
    def cost_text(self) -> str:
        return money_text(self.estimated_cost)

    def add(self, row: dict | Totals) -> None:
        """Add a row of sums (a dict with the keys of SUMMED, None for none) or other totals."""
        r = row.__dict__ if isinstance(row, Totals) else row
        self.requests += int(r["requests"] or 0)
        self.prompt_tokens += int(r["prompt_tokens"] or 0)
        self.completion_tokens += int(r["completion_tokens"] or 0)
        self.total_tokens += int(r["total_tokens"] or 0)
        self.cost_units += int(r["cost_units"] or 0)
        self.unpriced_requests += int(r["unpriced_requests"] or 0)
        self.estimated_usage_requests += int(r["estimated_usage_requests"] or 0)


@dataclass(frozen=True)
class Owner:
    """One user's usage, counted in their time zone."""

    user_id: int
    zone: ZoneInfo

    @classmethod
    def of(cls, user: User) -> Owner:
        return cls(user.pk, zone_named(user.timezone))


EVERYONE = None  # a subject of None: every user's usage, each record on its owner's local day


# --- Writing ------------------------------------------------------------------------------------------

CONVERSATION_SUMMED = ("requests", "total_tokens", "cost_units")  # what a conversation's usage shows and ranks by


def _upsert_sql(model: type[Model], key: tuple[str, ...], summed: tuple[str, ...], *, widen: bool = False) -> str:
    """INSERT (key, summed) ... ON CONFLICT (key) DO UPDATE adding the sums: one atomic statement on SQLite
    (3.24+) and PostgreSQL alike. `widen` also moves first_day / last_day (inserted last) out to the new day."""
    table = connection.ops.quote_name(model._meta.db_table)
    updates = [f"{c} = {table}.{c} + excluded.{c}" for c in summed]
    if widen:  # portable MIN / MAX of two values (SQLite's min() is PostgreSQL's LEAST())
        updates += [
            f"first_day = CASE WHEN excluded.first_day < {table}.first_day THEN excluded.first_day "
            f"ELSE {table}.first_day END",
            f"last_day = CASE WHEN excluded.last_day > {table}.last_day THEN excluded.last_day "
            f"ELSE {table}.last_day END",
        ]
    inserted = (*key, *summed, *(("first_day", "last_day") if widen else ()))
    return (
        f"INSERT INTO {table} ({', '.join(inserted)}) VALUES ({', '.join(['%s'] * len(inserted))}) "  # noqa: S608 (names from the model)
        f"ON CONFLICT ({', '.join(key)}) DO UPDATE SET {', '.join(updates)}"
    )


@cache
def _upserts() -> tuple[str, str, str]:
    return (
        _upsert_sql(UsageDay, ("user_id", "tz", "day", "provider_name", "model_name"), SUMMED),
        _upsert_sql(ConversationDay, ("conversation_id", "user_id", "tz", "day"), CONVERSATION_SUMMED),
        _upsert_sql(ConversationTotal, ("conversation_id", "user_id"), CONVERSATION_SUMMED, widen=True),
    )


def usage_day_add(*, record: UsageRecord, tz: str | None = None) -> None:
    """Fold one new ledger row into its owner's day (and its conversation's); call in the transaction that
    wrote it.

    `tz` is the owner's time zone when the caller has it at hand (saves a query).
    """
    if tz is None:
        tz = User.objects.values_list("timezone", flat=True).get(pk=record.user_id)
    zone = zone_named(tz)
    day = connection.ops.adapt_datefield_value(record.created_at.astimezone(zone).date())
    cost = cost_units(record.estimated_cost)
    day_sql, conversation_day_sql, conversation_total_sql = _upserts()
    with connection.cursor() as cursor:
        cursor.execute(day_sql, [
            record.user_id, zone.key, day, record.provider_name, record.model_name,
            1, record.prompt_tokens, record.completion_tokens, record.total_tokens, cost,
            int(record.cost_source == UsageRecord.CostSource.ESTIMATED), int(bool(record.usage_estimated)),
        ])
        if record.conversation_id:
            sums = [1, record.total_tokens, cost]
            cursor.execute(conversation_day_sql, [record.conversation_id, record.user_id, zone.key, day, *sums])
            cursor.execute(conversation_total_sql, [record.conversation_id, record.user_id, *sums, day, day])


_WIDE: DecimalField = DecimalField(max_digits=32, decimal_places=0)


def ledger_sums() -> dict:
    """Aggregates over ledger rows giving the keys of SUMMED (cost summed exactly, as integer units)."""
    units = Cast(
        Round(ExpressionWrapper(F("estimated_cost") * Value(UNITS), output_field=_WIDE)),
        BigIntegerField(),
    )
    return {
        "requests": Count("id"),
        "prompt_tokens": Sum("prompt_tokens"),
        "completion_tokens": Sum("completion_tokens"),
        "total_tokens": Sum("total_tokens"),
        "cost_units": Sum(units),
        "unpriced_requests": Count("id", filter=Q(cost_source=UsageRecord.CostSource.ESTIMATED)),
        "estimated_usage_requests": Count("id", filter=Q(usage_estimated=True)),
    }


def usage_days_rebuild(*, user_id: int, tz: str, first: date | None = None, last: date | None = None) -> int:
    """Recount the owner's local days first..last (None: unbounded) from the ledger, in zone `tz`: their
    UsageDay and ConversationDay rows, then their ConversationTotal rows from those.

    Rows the owner had counted in another zone are dropped (they would count some records twice). Ledger
    rows of deleted conversations (their conversation is gone) count for the user's days, no longer for a
    conversation. Returns the number of ledger records counted.
    """
    zone = zone_named(tz)
    days = Q()
    records = UsageRecord.objects.filter(user_id=user_id)
    if first is not None:
        days &= Q(day__gte=first)
        records = records.filter(created_at__gte=day_span(zone, first, first)[0])
    if last is not None:
        days &= Q(day__lte=last)
        records = records.filter(created_at__lt=day_span(zone, last, last)[1])
    by_day = records.order_by().annotate(d=TruncDate("created_at", tzinfo=zone))
    owner_days = Q(user_id=user_id) & (days | ~Q(tz=zone.key))
    for attempt in range(3):
        try:
            with transaction.atomic():
                UsageDay.objects.filter(owner_days).delete()
                ConversationDay.objects.filter(owner_days).delete()
                rows = UsageDay.objects.bulk_create(
                    (
                        UsageDay(
                            user_id=user_id, tz=zone.key, day=g["d"], provider_name=g["provider_name"],
                            model_name=g["model_name"], **{k: g[k] or 0 for k in SUMMED},
                        )
                        for g in by_day.values("d", "provider_name", "model_name").annotate(**ledger_sums())
                    ),
                    batch_size=2000,
                )
                ConversationDay.objects.bulk_create(
                    (
                        ConversationDay(
                            conversation_id=g["conversation_id"], user_id=user_id, tz=zone.key, day=g["d"],
                            **{k: g[k] or 0 for k in CONVERSATION_SUMMED},
                        )
                        for g in by_day.filter(conversation_id__isnull=False)
                        .values("d", "conversation_id")
                        .annotate(**{k: v for k, v in ledger_sums().items() if k in CONVERSATION_SUMMED})
                    ),
                    batch_size=2000,
                )
                _conversation_totals_rebuild(user_id)
            return sum(r.requests for r in rows)
        except IntegrityError:  # a concurrent write added a day row between the delete and the insert: redo
            if attempt == 2:
                raise
    return 0  # pragma: no cover


def _conversation_totals_rebuild(user_id: int) -> None:
    """The owner's ConversationTotal rows summed again from their ConversationDay rows."""
    ConversationTotal.objects.filter(user_id=user_id).delete()
    ConversationTotal.objects.bulk_create(
        (
            ConversationTotal(
                conversation_id=g["conversation_id"], user_id=user_id, first_day=g["first"], last_day=g["last"],
                **{k: g[f"all_{k}"] for k in CONVERSATION_SUMMED},
            )
            for g in ConversationDay.objects.filter(user_id=user_id).order_by().values("conversation_id")
            .annotate(first=Min("day"), last=Max("day"), **{f"all_{k}": SUMS[k] for k in CONVERSATION_SUMMED})
        ),
        batch_size=2000,
    )


# --- Reading ------------------------------------------------------------------------------------------

def user_zones() -> dict[str, list[str]]:
    """Zone key → the users' timezone settings that resolve to it (an unknown name counts as UTC)."""
    found: dict[str, list[str]] = defaultdict(list)
    for name in User.objects.order_by().values_list("timezone", flat=True).distinct():
        found[zone_named(name).key].append(name)
    return found


def _span_q(zone: ZoneInfo, first: date | None, last: date | None) -> Q:
    q = Q()
    if first is not None:
        q &= Q(created_at__gte=day_span(zone, first, first)[0])
    if last is not None:
        q &= Q(created_at__lt=day_span(zone, last, last)[1])
    return q


def _day_q(first: date | None, last: date | None) -> Q:
    q = Q()
    if first is not None:
        q &= Q(day__gte=first)
    if last is not None:
        q &= Q(day__lte=last)
    return q


def ledger_q(
    subject: Owner | None, first: date | None, last: date | None, zones: dict[str, list[str]] | None = None
) -> Q:
    """The ledger rows of the subject on its local days first..last (each record on its owner's day)."""
    if subject is not None:
        return Q(user_id=subject.user_id) & _span_q(subject.zone, first, last)
    if first is None and last is None:
        return Q()
    zones = zones if zones is not None else user_zones()
    if list(zones) == ["UTC"]:
        return _span_q(UTC, first, last)  # every user counts days in UTC: no join needed
    # The span covering every zone's days first..last (UTC+14 starts first, UTC-12 ends last) lets the
    # database walk the created_at index; the per-zone terms then pick each record by its owner's days.
    hull = _span_q(ZoneInfo("Etc/GMT-14"), first, None) & _span_q(ZoneInfo("Etc/GMT+12"), None, last)
    q = Q(pk__in=[])
    for key, names in zones.items():
        q |= Q(user__timezone__in=names) & _span_q(zone_named(key), first, last)
    return hull & q


def rollup_q(subject: Owner | None, first: date | None, last: date | None) -> Q:
    """The roll-up rows of the subject on its days first..last (a single owner: in their current zone)."""
    if subject is not None:
        return Q(user_id=subject.user_id, tz=subject.zone.key) & _day_q(first, last)
    return _day_q(first, last)


# As bigint: PostgreSQL sums bigints as numeric, which arrives as Decimal (slow to parse and to add up).
SUMS = {k: Cast(Sum(k), BigIntegerField()) for k in SUMMED}


def rolled_up(subject: Owner | None, first: date | None, last: date | None, *group: str) -> QuerySet:
    """Roll-up sums (the keys of SUMMED) grouped by `group` for the subject's days first..last, unordered.

    Single owners: call `rollup_verify` once per span first. Every-user reads trust the roll-up (checking
    it would mean counting the whole ledger); each owner's own reads keep their rows exact.
    """
    return UsageDay.objects.filter(rollup_q(subject, first, last)).order_by().values(*group).annotate(**SUMS)


def rollup_verify(owner: Owner, first: date | None, last: date | None, rolled: int | None = None) -> bool:
    """True when the roll-up holds every ledger row of the owner's days first..last; else recount them.

    `rolled` is the roll-up's request count for the span when the caller already has it. Rows the owner
    had counted in another zone (they changed time zone) mean a full recount, so that every ledger row
    stays counted exactly once for the every-user views too.
    """
    # MIN and MAX of tz come from the ends of the owner's index range (PostgreSQL reads two entries).
    seen = UsageDay.objects.filter(user_id=owner.user_id).aggregate(lo=Min("tz"), hi=Max("tz"))
    if seen["lo"] is not None and {seen["lo"], seen["hi"]} != {owner.zone.key}:
        counted = usage_days_rebuild(user_id=owner.user_id, tz=owner.zone.key)
        log.info("usage roll-up of user %s recounted in %s: %s records", owner.user_id, owner.zone, counted)
        return False
    if rolled is None:
        rolled = UsageDay.objects.filter(rollup_q(owner, first, last)).aggregate(n=Sum("requests"))["n"] or 0
    if rolled == UsageRecord.objects.filter(ledger_q(owner, first, last)).count():
        return True
    counted = usage_days_rebuild(user_id=owner.user_id, tz=owner.zone.key, first=first, last=last)
    log.warning(
        "usage roll-up was behind the ledger for user %s (%s..%s): recounted %s records",
        owner.user_id, first, last, counted,
    )
    return False


def rolled_total(owner: Owner, first: date | None, last: date | None = None) -> Totals | None:
    """The owner's totals for first..last from the roll-up, or None when it is behind the ledger (never heals:
    budget admission calls this while holding the write lock and falls back to the ledger)."""
    totals = Totals()
    totals.add(UsageDay.objects.filter(rollup_q(owner, first, last)).aggregate(**SUMS))
    if totals.requests != UsageRecord.objects.filter(ledger_q(owner, first, last)).count():
        return None
    return totals
