"""`manage.py rotatekeys`: re-encrypt every stored provider key with the first CHATWEB_ENCRYPTION_KEYS key."""

from cryptography.fernet import InvalidToken
from django.core.management.base import BaseCommand, CommandError
from django.db import connection, transaction

from conversations.audit import CHANGED, audit_record
from conversations.catalog.crypto import rotate
from conversations.models import Provider


class Command(BaseCommand):
    help = "Re-encrypt all provider keys with the first CHATWEB_ENCRYPTION_KEYS key (docs/key-rotation.md)."

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--forget-unreadable",
            action="store_true",
            help="clear the keys no configured key decrypts (a lost encryption key); enter them again after",
        )

    def handle(self, *args, **options) -> None:
        table = Provider._meta.db_table
        rotated = 0
        with transaction.atomic(), connection.cursor() as cursor:
            # Work on the stored tokens directly: MultiFernet.rotate needs no plaintext in Python objects.
            cursor.execute(f"SELECT id, name, api_key FROM {table} WHERE api_key <> ''")  # noqa: S608 - our table
            unreadable: list[tuple[int, str]] = []
            for pk, name, token in cursor.fetchall():
                try:
                    new_token = rotate(token)
                except InvalidToken:
                    unreadable.append((pk, name))
                    continue
                cursor.execute(f"UPDATE {table} SET api_key = %s WHERE id = %s", [new_token, pk])  # noqa: S608
                rotated += 1
            names = ", ".join(sorted(name for _, name in unreadable))
            if unreadable and not options["forget_unreadable"]:
                # All or nothing: raising rolls the transaction back, so no key was rewritten.
                raise CommandError(
                    f"no key in CHATWEB_ENCRYPTION_KEYS decrypts the stored key of provider(s) {names}: "
                    "put the old key back in the list (after the new one) and run rotatekeys again. "
                    "Nothing was changed."
                )
            for pk, _ in unreadable:
                cursor.execute(f"UPDATE {table} SET api_key = '' WHERE id = %s", [pk])  # noqa: S608
                # Only the name is loaded: reading the unreadable key would fail.
                provider = Provider.objects.only("pk", "name").get(pk=pk)
                audit_record(
                    actor=None, action=CHANGED, obj=provider, fields=["api_key"], source="rotatekeys"
                )
        self.stdout.write(f"re-encrypted {rotated} provider key(s) with the first key")
        if unreadable:
            self.stdout.write(f"cleared the unreadable key(s) of provider(s) {names}: enter them again")
