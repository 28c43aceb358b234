"""Reconciliation: the provider's own account of its requests, matched to the ledger by the upstream's response id.

The account is a CSV with the header `request_id,created_at,model,prompt_tokens,completion_tokens,cost` (cost in
USD). A matched ledger row keeps the cost it was billed at and gains `reconciled_cost` (its `cost_source` becomes
`reconciled`); the provider's rows are kept (ProviderCharge), so importing the same file again changes nothing and
the staff page can show, per provider and month, what only one side has.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import NamedTuple

from django.db import connection, transaction
from django.db.backends.utils import CursorWrapper
from django.db.models import Count, DecimalField, ExpressionWrapper, F, Q, Sum
from django.db.models.functions import Abs, TruncMonth

from conversations.models import ProviderCharge, UsageRecord
from conversations.usage.rollup import money_text

HEADER = ["request_id", "created_at", "model", "prompt_tokens", "completion_tokens", "cost"]
BATCH = 2000  # ids per IN (...) query and rows per bulk write
MAX_ERRORS = 50  # a file that is wrong everywhere is reported by its first mistakes
TOP_DIFFERENCES = 10
QUANTUM = Decimal("1E-10")
MAX_COST = Decimal("1E10")


class ReconcileFileError(ValueError):
    """The file cannot be imported; `errors` names each bad line ("line 7: cost: not a number")."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("; ".join(errors))
        self.errors = errors


class Charge(NamedTuple):
    """One row of the provider's account (a tuple: a million of them are built and copied as they are)."""

    request_id: str
    created_at: datetime
    model: str
    prompt_tokens: int
    completion_tokens: int
    cost: Decimal


@dataclass
class Reconciliation:
    """One provider's matching over some months: counts, each side's total, and the drift between them."""

    provider: str
    month: date | None = None
    matched: int = 0
    only_in_file: int = 0
    only_in_ledger: int = 0
    ledger_cost: Decimal = Decimal(0)
    provider_cost: Decimal = Decimal(0)
    differences: list[dict] = field(default_factory=list)

    @property
    def drift_percent(self) -> Decimal:
        """(provider − ledger) / ledger, in per cent: positive when the provider bills more than the ledger says."""
        if not self.ledger_cost:
            return Decimal(0) if not self.provider_cost else Decimal(100)
        return (self.provider_cost - self.ledger_cost) * 100 / self.ledger_cost

    def line(self) -> str:
        """The command's last line."""
        return (
            f"matched {self.matched}, only in file {self.only_in_file}, only in ledger {self.only_in_ledger}, "
            f"ledger {money_text(self.ledger_cost)} USD, provider {money_text(self.provider_cost)} USD, "
            f"drift {self.drift_percent:.2f}%"
        )


# --- reading the file ---------------------------------------------------------------------------------------


def charges_parse(lines: Iterable[str]) -> list[Charge]:
    """Every row of the file, or ReconcileFileError listing the bad lines (then nothing is imported)."""
    return list(charges_read(lines))


def charges_read(lines: Iterable[str]) -> Iterator[Charge]:
    """Each row of the file as it is read; at the end, ReconcileFileError listing the bad lines if any (the rows
    already given must then be thrown away: the import reads the file inside its transaction)."""
    reader = csv.reader(lines)
    try:
        header = next(reader, None)
    except csv.Error as exc:
        raise ReconcileFileError([f"line 1: {exc}"]) from None
    if header is None:
        raise ReconcileFileError(["line 1: the file is empty"])
    if [h.strip().lower() for h in header] != HEADER:
        raise ReconcileFileError([f"line 1: the header must be {','.join(HEADER)}"])
    errors: list[str] = []
    seen: dict[str, int] = {}
    fields = len(HEADER)
    moment_of = datetime.fromisoformat
    _new_charge = tuple.__new__  # the same tuple as Charge(...), without its Python-level __new__ per row
    while True:
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:  # a NUL byte, a field beyond the csv module's limit: that line is bad, read on
            errors.append(f"line {reader.line_num}: {exc}")
            if len(errors) >= MAX_ERRORS:
                errors.append("... (more errors not shown)")
                break
            continue
        line = reader.line_num
        # The forms providers write (an ISO date-time, digits, a plain decimal) are converted inline, a million
        # times; anything else, valid or not, goes through _charge, which gives the same values and says what is
        # wrong. Every test here only lets through what _charge would turn into the same Charge.
        charge = None
        if len(row) == fields:
            request_id, created, model, prompt, completion, cost = row
            request_id = request_id.strip()
            if (
                request_id and len(request_id) <= 255 and created[4:5] == "-"  # a Unix time has no "-"
                and "\x00" not in request_id and "\x00" not in model  # PostgreSQL's text holds no NUL
                and prompt.isascii() and prompt.isdigit() and len(prompt) < 10
                and completion.isascii() and completion.isdigit() and len(completion) < 10
            ):
                try:
                    moment, amount = moment_of(created), Decimal(cost).quantize(QUANTUM)
                except (ValueError, ArithmeticError):
                    pass
                else:
                    if amount.is_finite() and 0 <= amount < MAX_COST:
                        charge = _new_charge(Charge, (
                            request_id, moment if moment.tzinfo else moment.replace(tzinfo=UTC),
                            model.strip()[:320], int(prompt), int(completion), amount,
                        ))
        if charge is None:
            if not row or not any(cell.strip() for cell in row):
                continue  # a blank line (a trailing newline, say) is no request
            try:
                charge = _charge(row)
            except ValueError as exc:
                errors.append(f"line {line}: {exc}")
        if charge is not None:
            if charge.request_id in seen:
                errors.append(f"line {line}: request_id {charge.request_id} already on line {seen[charge.request_id]}")
            else:
                seen[charge.request_id] = line
                if not errors:
                    yield charge
        if len(errors) >= MAX_ERRORS:
            errors.append("... (more errors not shown)")
            break
    if errors:
        raise ReconcileFileError(errors)


def _charge(row: list[str]) -> Charge:
    if len(row) != len(HEADER):
        raise ValueError(f"{len(row)} fields, expected {len(HEADER)}")
    request_id, created, model, prompt, completion, cost = row  # checked one by one, inline: this runs per row
    request_id = request_id.strip()
    if not request_id:
        raise ValueError("request_id: empty")
    if len(request_id) > 255:
        raise ValueError("request_id: longer than 255 characters")
    for name, value in (("request_id", request_id), ("model", model)):
        if "\x00" in value:
            raise ValueError(f"{name}: contains a NUL character")
    prompt, completion = prompt.strip(), completion.strip()
    return Charge(
        request_id,
        _moment(created.strip()),
        model.strip()[:320],
        int(prompt) if prompt.isascii() and prompt.isdigit() and len(prompt) < 10 else _tokens("prompt_tokens", prompt),
        int(completion) if completion.isascii() and completion.isdigit() and len(completion) < 10
        else _tokens("completion_tokens", completion),
        _cost(cost.strip()),
    )


def _moment(value: str) -> datetime:
    try:
        if value.replace(".", "", 1).isdigit():
            return datetime.fromtimestamp(float(value), UTC)  # Unix seconds, as some exports give
        moment = datetime.fromisoformat(value)
    except (ValueError, OverflowError, OSError):
        raise ValueError(f"created_at: {value!r} is not an ISO 8601 date-time") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _tokens(name: str, value: str) -> int:
    if not value:
        return 0
    try:
        number = int(value)
    except ValueError:
        raise ValueError(f"{name}: {value!r} is not a whole number") from None
    if number < 0 or number > 2**31 - 1:
        raise ValueError(f"{name}: {number} is out of range")
    return number


def _cost(value: str) -> Decimal:
    try:
        cost = Decimal(value.removeprefix("$"))
    except InvalidOperation:
        raise ValueError(f"cost: {value!r} is not a number") from None
    try:  # rounded first: 9999999999.99999999999 rounds up to 1E10, which the column cannot hold
        cost = cost.quantize(QUANTUM)
    except InvalidOperation:  # infinite, or too large to round to ten decimals
        raise ValueError(f"cost: {value!r} is not an amount in USD") from None
    if not cost.is_finite() or cost < 0 or cost >= MAX_COST:
        raise ValueError(f"cost: {value!r} is not an amount in USD")
    return cost


# --- importing ----------------------------------------------------------------------------------------------


def _batches(items: list[Charge]) -> Iterator[list[Charge]]:
    for start in range(0, len(items), BATCH):
        yield items[start : start + BATCH]


def provider_account_import(*, provider: str, lines: Iterable[str]) -> Reconciliation:
    """Read the provider's CSV and import it (`manage.py reconcile`): the reconciliation of the months the file
    covers, or ReconcileFileError listing the bad lines (then nothing is imported). One transaction."""
    if connection.vendor != "postgresql":
        return provider_charges_import(provider=provider, charges=charges_parse(lines))
    with transaction.atomic(), connection.cursor() as cursor:
        # The statements below sort or hash every row of the file. In memory, not spilled in batches, the ledger's
        # UPDATE gets its rows in id order; in hash-batch order it jumps between the ledger's pages and indexes.
        cursor.execute("SET LOCAL work_mem = '256MB'")
        # The file is read while PostgreSQL takes in the rows (two processes, two cores); a bad line found late
        # aborts the transaction, so nothing of the file stays.
        _charges_copied(cursor, provider, charges_read(lines))
        _staged_store(cursor, provider, concurrent=False)
        cursor.execute(
            "SELECT DISTINCT date_trunc('month', created_at AT TIME ZONE 'UTC')::date FROM reconcile_in ORDER BY 1"
        )
        months = [row[0] for row in cursor.fetchall()]
        cursor.execute("DROP TABLE reconcile_in")
        return reconciliation_of(provider=provider, months=months)


def provider_charges_import(*, provider: str, charges: list[Charge]) -> Reconciliation:
    """Store the provider's rows (new ones added, changed ones updated), match them to the ledger, and return
    the reconciliation of the months the file covers. One transaction: a failure imports nothing."""
    with transaction.atomic():
        charges_record(provider=provider, charges=charges)
        months = sorted({date(m.year, m.month, 1) for m in (c.created_at.astimezone(UTC) for c in charges)})
        return reconciliation_of(provider=provider, months=months)


def charges_record(*, provider: str, charges: list[Charge]) -> None:
    """Store the provider's rows and mark the ledger rows they match (the lookup of one reply's cost right after
    it, and the import on SQLite); call inside a transaction. On PostgreSQL in set-based statements over the rows
    copied into a temporary table; elsewhere in batches through the ORM."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            _charges_copied(cursor, provider, charges)
            _staged_store(cursor, provider, concurrent=True)
            cursor.execute("DROP TABLE reconcile_in")
        return
    for batch in _batches(charges):
        _import_batch(provider, batch)


# Table and column names come from the models; every value is a parameter or comes through COPY.


def _charges_copied(cursor: CursorWrapper, provider: str, charges: Iterable[Charge]) -> None:
    """The temporary table `reconcile_in`: the rows, each with the ledger row it matches (`record_id`)."""
    q = connection.ops.quote_name
    record_table = q(UsageRecord._meta.db_table)
    cursor.execute("DROP TABLE IF EXISTS reconcile_raw, reconcile_in")
    cursor.execute(
        "CREATE TEMPORARY TABLE reconcile_raw (request_id varchar(255) NOT NULL, created_at timestamptz NOT NULL, "
        "model_name varchar(320) NOT NULL, prompt_tokens integer NOT NULL, completion_tokens integer NOT NULL, "
        "cost text NOT NULL) ON COMMIT DROP"
    )
    # Binary, so that PostgreSQL does not parse each date-time from text (it does so more slowly than Python);
    # the cost as text all the same (exact: at most 10 decimals), as psycopg's binary Decimal is slow and this
    # process both reads the file and sends it.
    with cursor.cursor.copy(
        "COPY reconcile_raw (request_id, created_at, model_name, prompt_tokens, completion_tokens, cost) "
        "FROM STDIN (FORMAT BINARY)"
    ) as copy:
        copy.set_types(["varchar", "timestamptz", "varchar", "int4", "int4", "text"])
        write = copy.write_row
        for request_id, created_at, model, prompt, completion, cost in charges:
            write((request_id, created_at, model, prompt, completion, str(cost)))
    # Each id with its ledger row (the first written, should the provider have reused an id).
    cursor.execute(
        "CREATE TEMPORARY TABLE reconcile_in ON COMMIT DROP AS SELECT raw.request_id, raw.created_at, "  # noqa: S608
        "raw.model_name, raw.prompt_tokens, raw.completion_tokens, raw.cost::numeric(20, 10) AS cost, "
        "m.id AS record_id "
        f"FROM reconcile_raw raw LEFT JOIN (SELECT {q('upstream_request_id')} AS request_id, min({q('id')}) AS id "
        f"FROM {record_table} WHERE {q('provider_name')} = %s GROUP BY {q('upstream_request_id')}) m "
        f"ON m.request_id = raw.request_id",
        [provider],
    )
    cursor.execute("DROP TABLE reconcile_raw")
    cursor.execute("ANALYZE reconcile_in")


def _staged_store(cursor: CursorWrapper, provider: str, *, concurrent: bool) -> None:
    """Store the rows of `reconcile_in` (the provider's rows already stored updated where they differ, the others
    added) and set the provider's cost on the ledger rows they match. `concurrent`: another transaction may be
    adding the same ids (a reply's cost lookup); a file's import instead fails on such a race, and is run again."""
    # A million rows through bulk_create / bulk_update (an UPDATE with a 2,000-branch CASE per batch) took many
    # minutes; these three statements take seconds (docs/benchmarks.md, `python -m bench reconcile`).
    q = connection.ops.quote_name
    charge_table, record_table = q(ProviderCharge._meta.db_table), q(UsageRecord._meta.db_table)
    columns = ("created_at", "model_name", "prompt_tokens", "completion_tokens", "cost", "record_id")
    stored = ", ".join(f"c.{q(c)}" for c in columns)
    given = ", ".join(f"i.{c}" for c in columns)
    cursor.execute(
        f"UPDATE {charge_table} c SET ({', '.join(q(c) for c in columns)}) = ({given}) "  # noqa: S608
        f"FROM reconcile_in i WHERE c.{q('provider_name')} = %s AND c.{q('request_id')} = i.request_id "
        f"AND ({stored}) IS DISTINCT FROM ({given})",
        [provider],
    )
    # In ledger id order, as the UPDATE below: the foreign key's check of each new row (at commit) then reads
    # the ledger's pages in order instead of jumping between them.
    on_conflict = f" ON CONFLICT ({q('provider_name')}, {q('request_id')}) DO NOTHING" if concurrent else ""
    cursor.execute(
        f"INSERT INTO {charge_table} ({q('provider_name')}, {q('request_id')}, "  # noqa: S608
        f"{', '.join(q(c) for c in columns)}) SELECT %s, i.request_id, {given} FROM reconcile_in i "
        f"WHERE NOT EXISTS (SELECT 1 FROM {charge_table} c WHERE c.{q('provider_name')} = %s "
        f"AND c.{q('request_id')} = i.request_id) ORDER BY i.record_id{on_conflict}",
        [provider, provider],
    )
    # An updated row whose page has no room for its new version (a full page, as after a bulk load) adds an entry
    # to every index of the ledger, so the rows go in id order, each index then written from one end to the
    # other. The indexed columns are set to themselves: PostgreSQL judges an index's key unchanged by the SET
    # list, and for an unchanged key it first tries, on each full index page, to remove old versions of rows
    # (bottom-up deletion); here there are none to remove (they are this transaction's own), so that work is
    # wasted. The values stay equal, so an update that fits on its page still leaves the indexes alone.
    cursor.execute(
        "SELECT DISTINCT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid "
        "AND a.attnum = ANY(i.indkey) WHERE i.indrelid = %s::regclass AND NOT i.indisprimary ORDER BY 1",
        [UsageRecord._meta.db_table],
    )
    same = "".join(f", {q(c)} = r.{q(c)}" for (c,) in cursor.fetchall() if c not in ("reconciled_cost", "cost_source"))
    cursor.execute(
        f"UPDATE {record_table} r SET {q('reconciled_cost')} = i.cost, {q('cost_source')} = %s{same} "  # noqa: S608
        f"FROM (SELECT record_id, cost FROM reconcile_in WHERE record_id IS NOT NULL ORDER BY record_id) i "
        f"WHERE r.{q('id')} = i.record_id AND (r.{q('reconciled_cost')} IS DISTINCT FROM "
        f"i.cost OR r.{q('cost_source')} <> %s)",
        [UsageRecord.CostSource.RECONCILED, UsageRecord.CostSource.RECONCILED],
    )


def _import_batch(provider: str, batch: list[Charge]) -> None:
    ids = [c.request_id for c in batch]
    known = {c.request_id: c for c in ProviderCharge.objects.filter(provider_name=provider, request_id__in=ids)}
    records: dict[str, UsageRecord] = {}
    for record in UsageRecord.objects.filter(provider_name=provider, upstream_request_id__in=ids).only(
        "pk", "upstream_request_id", "reconciled_cost", "cost_source"
    ):
        records.setdefault(record.upstream_request_id, record)
    new, changed, reconciled = [], [], []
    for c in batch:
        record = records.get(c.request_id)
        record_id = record.pk if record is not None else None
        row = known.get(c.request_id)
        values = {
            "created_at": c.created_at, "model_name": c.model, "prompt_tokens": c.prompt_tokens,
            "completion_tokens": c.completion_tokens, "cost": c.cost, "record_id": record_id,
        }
        if row is None:
            new.append(ProviderCharge(provider_name=provider, request_id=c.request_id, **values))
        elif any(getattr(row, k) != v for k, v in values.items()):
            for k, v in values.items():
                setattr(row, k, v)
            changed.append(row)
        if record is not None and (
            record.reconciled_cost != c.cost or record.cost_source != UsageRecord.CostSource.RECONCILED
        ):
            record.reconciled_cost = c.cost
            record.cost_source = UsageRecord.CostSource.RECONCILED
            reconciled.append(record)
    ProviderCharge.objects.bulk_create(new, batch_size=BATCH)
    ProviderCharge.objects.bulk_update(
        changed,
        ["created_at", "model_name", "prompt_tokens", "completion_tokens", "cost", "record"],
        batch_size=BATCH,
    )
    UsageRecord.objects.bulk_update(reconciled, ["reconciled_cost", "cost_source"], batch_size=BATCH)


# --- reading the result -------------------------------------------------------------------------------------


def _month_q(months: list[date] | None, prefix: str = "") -> Q:
    if months is None:
        return Q()
    q = Q(pk__in=[])
    for m in months:
        end = date(m.year + (m.month == 12), m.month % 12 + 1, 1)
        q |= Q(**{f"{prefix}created_at__gte": _utc(m), f"{prefix}created_at__lt": _utc(end)})
    return q


def _utc(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def reconciliation_of(*, provider: str, months: list[date]) -> Reconciliation:
    """One provider's reconciliation over the given months (UTC), all of them together."""
    result = Reconciliation(provider)
    charges = ProviderCharge.objects.filter(_month_q(months), provider_name=provider).aggregate(
        n=Count("pk"), matched=Count("pk", filter=Q(record__isnull=False)), cost=Sum("cost")
    )
    ledger = UsageRecord.objects.filter(_month_q(months), provider_name=provider).aggregate(
        n=Count("pk"), unmatched=Count("pk", filter=Q(reconciled_cost__isnull=True)), cost=Sum("estimated_cost")
    )
    result.matched = charges["matched"]
    result.only_in_file = charges["n"] - charges["matched"]
    result.only_in_ledger = ledger["unmatched"]
    result.provider_cost = _exact(charges["cost"])
    result.ledger_cost = _exact(ledger["cost"])
    return result


def reconciliation_report() -> list[Reconciliation]:
    """Every provider and month the providers' accounts cover, newest month first, each with the matched rows
    whose two costs differ most (staff's /usage/reconciliation/)."""
    month = TruncMonth("created_at", tzinfo=UTC)
    pairs = (
        ProviderCharge.objects.annotate(month=month).values_list("provider_name", "month").distinct()
        .order_by("-month", "provider_name")
    )
    report = []
    for provider, moment in pairs:
        first = moment.date() if isinstance(moment, datetime) else moment
        result = reconciliation_of(provider=provider, months=[first])
        result.month = first
        result.differences = _differences(provider, first)
        report.append(result)
    return report


def _differences(provider: str, month: date) -> list[dict]:
    money: DecimalField = DecimalField(max_digits=20, decimal_places=10)
    diff = ExpressionWrapper(F("cost") - F("record__estimated_cost"), output_field=money)
    rows = (
        ProviderCharge.objects.filter(_month_q([month]), provider_name=provider, record__isnull=False)
        .annotate(diff=diff, size=Abs(diff))
        .exclude(cost=F("record__estimated_cost"))
        .order_by("-size", "request_id")
        .values("request_id", "created_at", "model_name", "cost", "record_id", "record__estimated_cost")
        [:TOP_DIFFERENCES]
    )
    out = []
    for r in rows:
        billed, charged = _exact(r["record__estimated_cost"]), _exact(r["cost"])
        out.append({
            "request_id": r["request_id"], "created_at": r["created_at"], "model": r["model_name"],
            "record_id": r["record_id"], "ledger": money_text(billed), "provider": money_text(charged),
            "difference": money_text(charged - billed),
        })
    return out


def _exact(value: Decimal | float | None) -> Decimal:
    """A database sum as exact money (SQLite may hand back a float for a decimal sum)."""
    if value is None:
        return Decimal(0)
    return Decimal(str(value)).quantize(QUANTUM)
