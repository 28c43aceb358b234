"""Server time of /usage/, summary.json and export.csv over a million ledger rows, beside a COUNT(*) baseline.

    python bench/bench_dashboard.py [--rows 1000000] [--users 20] [--runs 7]

Runs on SQLite (var/bench-usage.sqlite3) and, when DATABASE_URL is set, on that PostgreSQL database too; each
in a child process with production settings (DEBUG off). Seeds with `manage.py seedusage` unless the database
already holds exactly that many seeded rows. Times are in-process (Django's test client: middleware, session,
queries, template; no network), the median of --runs after one warm-up request.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # runnable as `python bench/bench_dashboard.py` from anywhere

TARGET_MS = 150


def _median_ms(fn, runs: int) -> float:
    fn()  # warm-up: caches, prepared plans, the session row
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def child(rows: int, users: int, runs: int) -> dict:
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatweb.settings")
    django.setup()
    from django.core.management import call_command
    from django.db import connection
    from django.test import Client

    from conversations.models import ConversationDay, ConversationTotal, UsageDay, UsageRecord, User
    from conversations.usage.days import local_today, month_first, zone_named

    call_command("migrate", verbosity=0)
    seeded = UsageRecord.objects.filter(user__username__startswith="seed-").count()
    seed_seconds = None
    if seeded != rows:
        started = time.perf_counter()
        call_command("seedusage", rows=rows, users=users, stdout=open(os.devnull, "w"))  # noqa: SIM115
        seed_seconds = time.perf_counter() - started
    if connection.vendor == "postgresql":  # what autovacuum does after a migration rewrote them (it is off here)
        with connection.cursor() as cursor:
            for model in (UsageDay, ConversationDay, ConversationTotal):
                cursor.execute(f"VACUUM ANALYZE {connection.ops.quote_name(model._meta.db_table)}")
    staff, _ = User.objects.get_or_create(username="bench-staff", defaults={"is_staff": True})
    heavy = User.objects.get(username="seed-001")  # the heaviest user (about a sixth of all rows)
    typical = User.objects.get(username=f"seed-{max(1, users // 2):03d}")

    clients: dict[int, Client] = {}

    def get(user, url: str, params: dict | None = None):
        if user.pk not in clients:  # one session per user, signed in before the clock starts
            clients[user.pk] = Client()
            clients[user.pk].force_login(user)
        client = clients[user.pk]

        def run():
            response = client.get(url, params or {}, secure=True)  # production settings redirect http
            assert response.status_code == 200, (url, response.status_code)
            if response.streaming:
                b"".join(response.streaming_content)
        return run

    table = connection.ops.quote_name(UsageRecord._meta.db_table)

    def count_rows(user):
        def run():
            with connection.cursor() as cursor:
                cursor.execute(f"SELECT count(*) FROM {table} WHERE user_id = %s", [user.pk])  # noqa: S608
                cursor.fetchone()
        return run

    results: dict = {"vendor": connection.vendor, "rows": UsageRecord.objects.count(), "seed_s": seed_seconds}
    for label, user in (("heavy", heavy), ("typical", typical)):
        zone = zone_named(user.timezone)
        today = local_today(zone)
        month = {"from": month_first(today).isoformat(), "to": today.isoformat()}
        year = {"from": (today - timedelta(days=364)).isoformat(), "to": today.isoformat()}
        rows_of_user = UsageRecord.objects.filter(user=user).count()
        get(user, "/usage/")()
        month_summary = clients[user.pk].get("/usage/summary.json", month, secure=True).json()
        month_rows = month_summary["totals"]["requests"]
        results[label] = {
            "user": user.username,
            "user_rows": rows_of_user,
            "month_rows": month_rows,
            "baseline SELECT count(*) of the user's rows": _median_ms(count_rows(user), runs),
            "/usage/ (this month)": _median_ms(get(user, "/usage/"), runs),
            "/usage/summary.json (this month)": _median_ms(get(user, "/usage/summary.json", month), runs),
            "/usage/summary.json (a year)": _median_ms(get(user, "/usage/summary.json", year), runs),
            "/usage/?from..to (a year)": _median_ms(get(user, "/usage/", year), runs),
            "/usage/export.csv (this month)": _median_ms(get(user, "/usage/export.csv", month), runs),
        }
    today = local_today(zone_named(staff.timezone))
    year = {"from": (today - timedelta(days=364)).isoformat(), "to": today.isoformat(), "user": "all"}
    results["staff"] = {
        "/usage/?user=all (this month)": _median_ms(get(staff, "/usage/", {"user": "all"}), runs),
        "/usage/summary.json?user=all (a year)": _median_ms(get(staff, "/usage/summary.json", year), runs),
        "/usage/?user=all (a year)": _median_ms(get(staff, "/usage/", year), runs),
    }
    return results


def report(result: dict) -> None:
    print(f"\n== {result['vendor']}: {result['rows']:,} ledger rows"
          + (f" (seeded in {result['seed_s']:.0f} s)" if result["seed_s"] else " (reused)"))
    for label in ("heavy", "typical"):
        part = result[label]
        print(f"  {part['user']} ({label}): {part['user_rows']:,} rows, {part['month_rows']:,} this month")
        for name, ms in part.items():
            if isinstance(ms, float):
                over = ms > TARGET_MS and "baseline" not in name and "export" not in name
                flag = f"  > {TARGET_MS} ms" if over else ""
                print(f"    {name:<48} {ms:8.1f} ms{flag}")
    print("  staff, every user:")
    for name, ms in result["staff"].items():
        print(f"    {name:<48} {ms:8.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--users", type=int, default=20)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.rows, args.users, args.runs)))
        return
    from cryptography.fernet import Fernet

    base_env = {
        **os.environ, "DEBUG": "false", "SECRET_KEY": "bench-" + "x" * 50,
        "CHATWEB_ENCRYPTION_KEYS": Fernet.generate_key().decode(), "LOG_LEVEL": "WARNING",
    }
    targets = [("sqlite", f"sqlite:///{ROOT / 'var' / 'bench-usage.sqlite3'}")]
    if os.environ.get("DATABASE_URL", "").startswith(("postgres://", "postgresql://")):
        targets.append(("postgresql", os.environ["DATABASE_URL"]))
    (ROOT / "var").mkdir(exist_ok=True)
    print(f"usage dashboard bench: {args.rows:,} rows over {args.users} users, median of {args.runs} runs")
    for _name, url in targets:
        out = subprocess.run(
            [sys.executable, __file__, "--child", f"--rows={args.rows}", f"--users={args.users}",
             f"--runs={args.runs}"],
            env={**base_env, "DATABASE_URL": url}, cwd=ROOT, capture_output=True, text=True, check=False,
        )
        if out.returncode != 0:
            print(out.stdout, out.stderr, file=sys.stderr)
            raise SystemExit(f"bench child failed on {url.split('@')[-1]}")
        report(json.loads(out.stdout.strip().splitlines()[-1]))


if __name__ == "__main__":
    main()
