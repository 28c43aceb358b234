"""`manage.py reconcile PROVIDER FILE.csv`: match the provider's own account of its requests to the ledger."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import IntegrityError

from conversations.usage.reconcile import HEADER, ReconcileFileError, provider_account_import


class Command(BaseCommand):
    help = (
        "Import a provider's usage CSV (" + ",".join(HEADER) + "; cost in USD), match it to the ledger by the "
        "upstream response id and report the drift. Importing the same file again changes nothing."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("provider", help="The provider's name (as on the ledger rows).")
        parser.add_argument("file", help="The CSV file; - reads standard input.")

    def handle(self, *args: Any, **options: Any) -> None:
        provider, path = options["provider"], options["file"]
        try:
            if path == "-":
                import sys

                result = provider_account_import(provider=provider, lines=sys.stdin)
            else:
                with open(path, encoding="utf-8-sig", newline="") as handle:
                    result = provider_account_import(provider=provider, lines=handle)
        except OSError as exc:
            raise CommandError(f"cannot read {path}: {exc.strerror or exc}") from None
        except UnicodeDecodeError:
            raise CommandError(f"{path} is not UTF-8 text") from None
        except ReconcileFileError as exc:
            for error in exc.errors:
                self.stderr.write(error)
            raise CommandError(f"{path}: {len(exc.errors)} bad line(s); nothing was imported") from None
        except IntegrityError:  # another import of this provider's rows committed meanwhile
            raise CommandError(
                f"another import of {provider}'s account ran at the same time; nothing of {path} was imported: "
                "run it again"
            ) from None
        self.stdout.write(result.line())
