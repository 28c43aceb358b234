"""`manage.py rotatekeys`: re-encrypt every stored provider key and secret header set with the first
CHATWEB_ENCRYPTION_KEYS key."""

from cryptography.fernet import InvalidToken
from django.core.management.base import BaseCommand, CommandError
from django.db import connection, transaction

from conversations.audit import CHANGED, audit_record
from conversations.crypto import rotate
from conversations.models import Provider

ENCRYPTED_COLUMNS = ("api_key", "secret_headers")


class Command(BaseCommand):
    help = (
        "Re-encrypt all provider keys and secret headers with the first CHATWEB_ENCRYPTION_KEYS key "
        "(docs/key-rotation.md)."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--forget-unreadable",
            action="store_true",
            help="clear the keys no configured key decrypts (a lost encryption key); enter them again after",
        )

    def handle(self, *args, **options) -> None:
        table = Provider._meta.db_table
        rotated = dict.fromkeys(ENCRYPTED_COLUMNS, 0)
        with transaction.atomic(), connection.cursor() as cursor:
            unreadable: list[tuple[int, str, str]] = []
            for column in ENCRYPTED_COLUMNS:
                # Work on the stored tokens directly: MultiFernet.rotate needs no plaintext in Python objects.
                cursor.execute(f"SELECT id, name, {column} FROM {table} WHERE {column} <> ''")  # noqa: S608 - ours
                for pk, name, token in cursor.fetchall():
                    try:
                        new_token = rotate(token)
                    except InvalidToken:
                        unreadable.append((pk, name, column))
                        continue
                    cursor.execute(f"UPDATE {table} SET {column} = %s WHERE id = %s", [new_token, pk])  # noqa: S608
                    rotated[column] += 1
            names = ", ".join(sorted({name if column == "api_key" else f"{name} (secret headers)"
                                      for _, name, column in unreadable}))
            if unreadable and not options["forget_unreadable"]:
                # All or nothing: raising rolls the transaction back, so no secret was rewritten.
                raise CommandError(
                    f"no key in CHATWEB_ENCRYPTION_KEYS decrypts the stored key of provider(s) {names}: "
                    "put the old key back in the list (after the new one) and run rotatekeys again. "
                    "Nothing was changed."
                )
            for pk, _, column in unreadable:
                cursor.execute(f"UPDATE {table} SET {column} = '' WHERE id = %s", [pk])  # noqa: S608
                # Only the name is loaded: reading the unreadable secret would fail.
                provider = Provider.objects.only("pk", "name").get(pk=pk)
                audit_record(
                    actor=None, action=CHANGED, obj=provider, fields=[column], source="rotatekeys"
                )
        keys, headers = rotated["api_key"], rotated["secret_headers"]
        self.stdout.write(f"re-encrypted {keys} provider key(s) and {headers} set(s) of secret headers "
                          "with the first key")
        if unreadable:
            self.stdout.write(f"cleared the unreadable key(s) of provider(s) {names}: enter them again")
