"""`manage.py reconcile` importing a provider's account of 1,000,000 requests on PostgreSQL. Goal: ≤ 60 s.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/cost_db python -m bench.bench_reconcile [--rows 1000000]

Uses the database of DATABASE_URL (PostgreSQL only; it is emptied of this bench's provider first, so give it a
database of its own). In a child process with production settings: migrates, writes --rows ledger rows of the
provider `bench-acme` straight into the table (COPY; not timed), and a CSV of the provider's account: 99 % of the
rows match a ledger row (1 in 50 of them at a cost 3 % higher), 1 % are only in the file, and 1 % of the ledger is
only in the ledger. Then times `manage.py reconcile bench-acme FILE` (parsing and checking the whole file,
storing the provider's rows, matching, the summary), then the same file again (nothing changes), and checks the
summary line's counts.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TARGET_S = 60.0
PROVIDER = "bench-acme"


def seed_ledger(rows: int) -> None:
    """`rows` ledger rows of PROVIDER over the last 28 days, by COPY (a bench's setup, not what it measures)."""
    from django.db import connection

    from conversations.models import ProviderCharge, UsageRecord, User

    user, _ = User.objects.get_or_create(username="bench-reconcile", defaults={"password": "!"})
    ProviderCharge.objects.filter(provider_name=PROVIDER).delete()
    UsageRecord.objects.filter(provider_name=PROVIDER).delete()
    table = connection.ops.quote_name(UsageRecord._meta.db_table)
    columns = ("user_id", "source", "provider_name", "model_name", "prompt_tokens", "completion_tokens",
               "total_tokens", "estimated_cost", "cost_source", "usage_estimated", "finish_reason", "outcome",
               "created_at", "upstream_request_id", "input_price", "output_price")
    start = datetime.now(UTC) - timedelta(days=28)
    with connection.cursor() as cursor, cursor.cursor.copy(
        f"COPY {table} ({', '.join(columns)}) FROM STDIN"
    ) as copy:
        for i in range(rows):
            prompt, completion = 100 + i % 900, 20 + i % 400
            cost = (Decimal(prompt) * Decimal("0.5") + Decimal(completion) * Decimal("1.5")) / 1_000_000
            copy.write_row((
                user.pk, "api", PROVIDER, f"{PROVIDER}/m", prompt, completion, prompt + completion, cost, "price",
                False, "stop", "complete", start + timedelta(seconds=i * 2), f"gen-{i:09d}", Decimal("0.5"),
                Decimal("1.5"),
            ))
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {table}")


def write_account(path: Path, rows: int) -> dict[str, int]:
    """The provider's CSV: the ledger's first 99 % (each 50th costing 3 % more), plus 1 % only in the file."""
    matched = rows * 99 // 100
    only_file = rows - matched
    start = datetime.now(UTC) - timedelta(days=28)
    with open(path, "w", newline="") as handle:
        out = csv.writer(handle)
        out.writerow(["request_id", "created_at", "model", "prompt_tokens", "completion_tokens", "cost"])
        for i in range(matched):
            prompt, completion = 100 + i % 900, 20 + i % 400
            cost = (Decimal(prompt) * Decimal("0.5") + Decimal(completion) * Decimal("1.5")) / 1_000_000
            if i % 50 == 0:
                cost = cost * Decimal("1.03")
            at = (start + timedelta(seconds=i * 2)).isoformat()
            out.writerow([f"gen-{i:09d}", at, "m", prompt, completion, format(cost.normalize(), "f")])
        for j in range(only_file):
            at = (start + timedelta(seconds=j * 2 + 1)).isoformat()
            out.writerow([f"gen-x{j:09d}", at, "m", 10, 10, "0.00002"])
    return {"matched": matched, "only_in_file": only_file, "only_in_ledger": rows - matched}


def child(rows: int) -> dict:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatweb.settings")
    import django

    django.setup()
    from io import StringIO

    from django.core.management import call_command
    from django.db import connection

    if connection.vendor != "postgresql":
        raise SystemExit("this benchmark runs on PostgreSQL: set DATABASE_URL=postgres://...")
    call_command("migrate", interactive=False, verbosity=0)
    started = time.perf_counter()
    seed_ledger(rows)
    seed_s = time.perf_counter() - started
    with tempfile.TemporaryDirectory(prefix="bench-reconcile-") as tmp:
        path = Path(tmp) / "account.csv"
        expected = write_account(path, rows)
        runs = []
        for _ in range(2):  # the import, then the same file again
            out = StringIO()
            started = time.perf_counter()
            call_command("reconcile", PROVIDER, str(path), stdout=out)
            runs.append({"seconds": time.perf_counter() - started, "line": out.getvalue().strip().splitlines()[-1]})
    want = (f"matched {expected['matched']}, only in file {expected['only_in_file']}, "
            f"only in ledger {expected['only_in_ledger']},")
    for run in runs:
        if not run["line"].startswith(want):
            raise SystemExit(f"unexpected summary: {run['line']!r}, expected it to start with {want!r}")
    return {"rows": rows, "seed_s": seed_s, "runs": runs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.rows)))
        return
    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith(("postgres://", "postgresql://")):
        raise SystemExit("set DATABASE_URL to a PostgreSQL database of this benchmark's own")
    from cryptography.fernet import Fernet

    env = {**os.environ, "DEBUG": "false", "SECRET_KEY": "bench-" + "x" * 50, "LOG_LEVEL": "WARNING",
           "CHATWEB_ENCRYPTION_KEYS": Fernet.generate_key().decode()}
    out = subprocess.run([sys.executable, "-m", "bench.bench_reconcile", "--child", f"--rows={args.rows}"],
                         cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise SystemExit(f"bench child failed:\n{out.stdout[-2000:]}\n{out.stderr[-3000:]}")
    result = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"manage.py reconcile, {result['rows']:,} rows on PostgreSQL (ledger seeded in {result['seed_s']:.0f} s), "
          f"goal ≤ {TARGET_S:g} s")
    for name, run in zip(("import", "the same file again"), result["runs"], strict=True):
        flag = "" if run["seconds"] <= TARGET_S else f"   > {TARGET_S:g} s"
        print(f"  {name:<22} {run['seconds']:7.1f} s{flag}")
    print(f"  summary: {result['runs'][0]['line']}")


if __name__ == "__main__":
    main()
