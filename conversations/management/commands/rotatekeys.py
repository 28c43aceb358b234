"""`manage.py rotatekeys`: re-encrypt every stored provider key with the first CHATWEB_ENCRYPTION_KEYS key."""

from cryptography.fernet import InvalidToken
from django.core.management.base import BaseCommand, CommandError
from django.db import connection, transaction

from conversations.crypto import rotate
from conversations.models import Provider


class Command(BaseCommand):
    help = "Re-encrypt all provider keys with the first CHATWEB_ENCRYPTION_KEYS key (docs/key-rotation.md)."

    def handle(self, *args, **options) -> None:
        table = Provider._meta.db_table
        rotated = 0
        with transaction.atomic(), connection.cursor() as cursor:
            # Work on the stored tokens directly: MultiFernet.rotate needs no plaintext in Python objects.
            cursor.execute(f"SELECT id, name, api_key FROM {table} WHERE api_key <> ''")  # noqa: S608 - our table
            rows = cursor.fetchall()
            unreadable = []
            for pk, name, token in rows:
                try:
                    new_token = rotate(token)
                except InvalidToken:
                    unreadable.append(name)
                    continue
                cursor.execute(f"UPDATE {table} SET api_key = %s WHERE id = %s", [new_token, pk])  # noqa: S608
                rotated += 1
            if unreadable:
                # All or nothing: raising rolls the transaction back, so no key was rewritten.
                raise CommandError(
                    f"no key in CHATWEB_ENCRYPTION_KEYS decrypts the stored key of provider(s) "
                    f"{', '.join(sorted(unreadable))}: put the old key back in the list (after the new one) "
                    "and run rotatekeys again. Nothing was changed."
                )
        self.stdout.write(f"re-encrypted {rotated} provider key(s) with the first key")
