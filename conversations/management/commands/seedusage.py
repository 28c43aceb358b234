"""`manage.py seedusage --rows 1000000 --users 20`: a year of realistic ledger rows, fast, for benchmarks."""

from __future__ import annotations

import random
import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from zoneinfo import ZoneInfo

from django.core.management.base import BaseCommand, CommandParser
from django.db import connection, transaction
from django.utils import timezone

from conversations.models import Conversation, ConversationDay, ConversationTotal, UsageDay, UsageRecord, User
from conversations.usage.days import zone_named
from conversations.usage.rollup import CONVERSATION_SUMMED, SUMMED, cost_units

BATCH = 5000
QUANTUM = Decimal("1E-10")
ZONES = ["UTC", "Europe/Berlin", "America/New_York", "Asia/Kolkata", "Asia/Tokyo", "Australia/Adelaide"]
HOUR_WEIGHTS = [1, 1, 1, 1, 1, 2, 3, 5, 8, 10, 10, 9, 8, 9, 10, 10, 9, 8, 7, 6, 5, 4, 3, 2]  # by local hour


@dataclass(frozen=True)
class SeedModel:
    provider: str
    name: str
    input_price: Decimal | None  # USD per 1M tokens; None: unpriced (cost_source "estimated")
    output_price: Decimal | None
    weight: int
    reports_cost: bool = False  # the provider sends its own cost (cost_source "reported")


D = Decimal
MODELS = [
    SeedModel("deepinfra", "deepinfra/meta-llama/Llama-3.3-70B-Instruct", D("0.23"), D("0.40"), 30),
    SeedModel("deepinfra", "deepinfra/Qwen/Qwen2.5-72B-Instruct", D("0.13"), D("0.40"), 15),
    SeedModel("deepinfra", "deepinfra/deepseek-ai/DeepSeek-V3", D("0.49"), D("0.89"), 10, True),
    SeedModel("openrouter", "openrouter/anthropic/claude-3.5-sonnet", D("3"), D("15"), 12, True),
    SeedModel("openrouter", "openrouter/openai/gpt-4o-mini", D("0.15"), D("0.60"), 20),
    SeedModel("local", "local/llama3.1-8b", None, None, 13),
]


def _cost(model: SeedModel, prompt: int, completion: int, rng: random.Random) -> tuple[Decimal, str]:
    if model.input_price is None or model.output_price is None:
        return Decimal(0).quantize(QUANTUM), UsageRecord.CostSource.ESTIMATED
    cost = (prompt * model.input_price + completion * model.output_price) / Decimal(1_000_000)
    if model.reports_cost:  # a provider's own figure differs a little from list prices
        cost *= Decimal(rng.randint(95, 105)) / 100
        return cost.quantize(QUANTUM, rounding=ROUND_HALF_UP), UsageRecord.CostSource.REPORTED
    return cost.quantize(QUANTUM, rounding=ROUND_HALF_UP), UsageRecord.CostSource.PRICE


RECORD_COLUMNS = (
    "user_id", "source", "conversation_id", "provider_name", "model_name", "prompt_tokens",
    "completion_tokens", "total_tokens", "estimated_cost", "cost_source", "usage_estimated", "finish_reason",
    "ttft_ms", "duration_ms", "created_at",
)


def _insert_records(rows: list[tuple]) -> None:
    """One batch of ledger rows: COPY on PostgreSQL, one executemany on SQLite. Django's bulk_create spends
    ~30 µs a row preparing values (and SQLite batches only 999 parameters): a million rows took minutes."""
    ops = connection.ops
    table = ops.quote_name(UsageRecord._meta.db_table)
    if connection.vendor == "postgresql":  # COPY: a hundred times faster than row-by-row inserts
        statement = f"COPY {table} ({', '.join(RECORD_COLUMNS)}) FROM STDIN"
        with transaction.atomic(), connection.cursor() as cursor, cursor.cursor.copy(statement) as copy:
            for row in rows:
                copy.write_row(row)
        return
    sql = (
        f"INSERT INTO {table} ({', '.join(RECORD_COLUMNS)}) "  # noqa: S608 (names from the model)
        f"VALUES ({', '.join(['%s'] * len(RECORD_COLUMNS))})"
    )
    adapted = [
        (*row[:8], ops.adapt_decimalfield_value(row[8], 20, 10), *row[9:14],
         ops.adapt_datetimefield_value(row[14]))
        for row in rows
    ]
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.executemany(sql, adapted)


def _rollups(rollup: dict[tuple, list[int]]) -> tuple[list, list, list]:
    """The three roll-ups (what conversations/usage/rollup.usage_day_add keeps) from sums keyed by
    (user, tz, day, provider, model, conversation or 0)."""
    days: dict[tuple, list[int]] = defaultdict(lambda: [0] * len(SUMMED))
    by_conversation: dict[tuple, list[int]] = defaultdict(lambda: [0, 0, 0])
    for (user_id, tz, day, provider, model, conversation_id), sums in rollup.items():
        day_sums = days[user_id, tz, day, provider, model]
        for i, value in enumerate(sums):
            day_sums[i] += value
        if conversation_id:
            kept = by_conversation[conversation_id, user_id, tz, day]
            for i, k in enumerate(CONVERSATION_SUMMED):
                kept[i] += sums[SUMMED.index(k)]
    totals: dict[int, ConversationTotal] = {}
    for (conversation_id, user_id, _tz, day), (requests, tokens, cost) in sorted(by_conversation.items()):
        total = totals.setdefault(conversation_id, ConversationTotal(
            conversation_id=conversation_id, user_id=user_id, first_day=day, last_day=day))
        total.last_day = day  # sorted: days in order
        total.requests += requests
        total.total_tokens += tokens
        total.cost_units += cost
    return (
        [UsageDay(user_id=k[0], tz=k[1], day=k[2], provider_name=k[3], model_name=k[4],
                  **dict(zip(SUMMED, v, strict=True))) for k, v in days.items()],
        [ConversationDay(conversation_id=k[0], user_id=k[1], tz=k[2], day=k[3],
                         **dict(zip(CONVERSATION_SUMMED, v, strict=True))) for k, v in by_conversation.items()],
        list(totals.values()),
    )


class Command(BaseCommand):
    help = (
        "Replace the usage of users PREFIX-001..PREFIX-N (created if missing) with ROWS ledger rows spread "
        "over the last DAYS days, several models and time zones; keeps the daily roll-up in step."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--rows", type=int, default=10_000)
        parser.add_argument("--users", type=int, default=5)
        parser.add_argument("--days", type=int, default=365)
        parser.add_argument("--prefix", default="seed")
        parser.add_argument("--seed", type=int, default=1)

    def handle(self, *args, **options) -> None:
        started = time.monotonic()
        rng = random.Random(options["seed"])
        users = self._users(options["prefix"], options["users"])
        self._clear(users)
        # A few heavy users and a long tail, as in real deployments.
        weights = [1 / (i + 1) ** 0.8 for i in range(len(users))]
        shares = [int(options["rows"] * w / sum(weights)) for w in weights]
        shares[0] += options["rows"] - sum(shares)
        rollup: dict[tuple, list[int]] = defaultdict(lambda: [0] * len(SUMMED))
        written = 0
        for user, rows in zip(users, shares, strict=True):
            written += self._seed_user(user, rows, options["days"], rng, rollup)
            self.stdout.write(f"  {user.username} ({user.timezone}): {rows} rows", ending="\n")
        days, conversation_days, conversation_totals = _rollups(rollup)
        UsageDay.objects.bulk_create(days, batch_size=BATCH)
        ConversationDay.objects.bulk_create(conversation_days, batch_size=BATCH)
        ConversationTotal.objects.bulk_create(conversation_totals, batch_size=BATCH)
        if connection.vendor == "postgresql":  # what autovacuum soon does after a bulk load
            with connection.cursor() as cursor:
                for model in (UsageRecord, UsageDay, ConversationDay, ConversationTotal):
                    cursor.execute(f"VACUUM ANALYZE {connection.ops.quote_name(model._meta.db_table)}")
        self.stdout.write(
            f"seeded {written} usage records ({len(days)} daily roll-up rows) for {len(users)} users "
            f"in {time.monotonic() - started:.1f} s"
        )

    def _users(self, prefix: str, count: int) -> list[User]:
        users = []
        for i in range(count):
            user, created = User.objects.get_or_create(
                username=f"{prefix}-{i + 1:03d}", defaults={"timezone": ZONES[i % len(ZONES)]}
            )
            if created:
                user.set_unusable_password()
                user.save(update_fields=["password"])
            users.append(user)
        return users

    def _clear(self, users: list[User]) -> None:
        ids = [u.pk for u in users]
        with transaction.atomic():
            for rolled in (UsageDay, ConversationDay, ConversationTotal):
                rolled.objects.filter(user_id__in=ids).delete()
            UsageRecord.objects.filter(user_id__in=ids)._raw_delete(UsageRecord.objects.db)
            Conversation.objects.filter(owner_id__in=ids, title__startswith="Seeded ").delete()

    def _sessions(
        self, rows: int, days: int, zone: ZoneInfo, rng: random.Random
    ) -> list[tuple[bool, int, SeedModel, datetime]]:
        """Sessions of one model each: a conversation of a few turns, or a burst of API calls."""
        now = timezone.now()
        first_day = (now.astimezone(zone) - timedelta(days=days - 1)).date()
        model_weights = [m.weight for m in MODELS]
        sessions = []
        planned = 0
        while planned < rows:
            turns = min(rows - planned, max(1, int(rng.expovariate(1 / 12))))
            day = first_day + timedelta(days=int(days * rng.random() ** 0.7))  # more use lately
            hour = rng.choices(range(24), HOUR_WEIGHTS)[0]
            minute, second = rng.randrange(60), rng.randrange(60)
            start = datetime(day.year, day.month, day.day, hour, minute, second, tzinfo=zone)
            start = min(start, now - timedelta(hours=2))
            sessions.append((rng.random() < 0.15, turns, rng.choices(MODELS, model_weights)[0], start))
            planned += turns
        return sessions

    def _seed_user(self, user: User, rows: int, days: int, rng: random.Random, rollup: dict) -> int:
        zone = zone_named(user.timezone)
        sessions = self._sessions(rows, days, zone, rng)
        conversations = Conversation.objects.bulk_create(
            [
                Conversation(owner=user, title=f"Seeded conversation {i + 1}")
                for i, (api, *_) in enumerate(sessions)
                if not api
            ],
            batch_size=BATCH,
        )
        conversation_ids = iter(c.pk for c in conversations)
        pending: list[tuple] = []
        made = 0
        for api, turns, model, start in sessions:
            conversation_id = None if api else next(conversation_ids)
            moment, context = start, rng.randint(20, 400)
            for _ in range(turns):
                completion = rng.randint(5, 900)
                prompt = context
                context += completion + rng.randint(5, 200)
                cost, source = _cost(model, prompt, completion, rng)
                estimated = rng.random() < 0.04
                pending.append((
                    user.pk, UsageRecord.Source.API if api else UsageRecord.Source.CHAT, conversation_id,
                    model.provider, model.name, prompt, completion, prompt + completion, cost, source,
                    estimated, "length" if rng.random() < 0.03 else "stop", rng.randint(150, 2500),
                    rng.randint(800, 30000), moment,
                ))
                key = (user.pk, zone.key, moment.astimezone(zone).date(), model.provider, model.name,
                       conversation_id or 0)
                sums = rollup[key]
                for i, value in enumerate((1, prompt, completion, prompt + completion, cost_units(cost),
                                           int(source == UsageRecord.CostSource.ESTIMATED), int(estimated))):
                    sums[i] += value
                moment += timedelta(seconds=rng.randint(5, 60))
                made += 1
            if len(pending) >= BATCH:
                _insert_records(pending)
                pending = []
        if pending:
            _insert_records(pending)
        return made
