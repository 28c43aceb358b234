"""`manage.py providers apply FILE.toml` / `providers export` (docs/admin.md)."""

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from conversations.catalog.providers_file import ProviderFileError, providers_apply, providers_export


class Command(BaseCommand):
    help = "Apply a providers TOML file (idempotent, all or nothing) or export the current providers."

    def add_arguments(self, parser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        apply = sub.add_parser("apply", help="create or update providers and models from FILE")
        apply.add_argument("file")
        sub.add_parser("export", help="print the providers and models (keys never printed)")

    def handle(self, *args, **options) -> None:
        if options["action"] == "export":
            self.stdout.write(providers_export(), ending="")
            return
        path = Path(options["file"])
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise CommandError(f"cannot read {path}: {exc.strerror}") from None
        try:
            result = providers_apply(text=text)
        except ProviderFileError as exc:
            raise CommandError(f"{path}: {exc} (nothing was changed)") from None
        self.stdout.write(
            f"providers: {len(result.created)} created, {len(result.updated)} updated; "
            f"models: {result.models_created} created, {result.models_updated} updated"
        )
