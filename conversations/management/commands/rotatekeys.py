"""`manage.py rotatekeys`: re-encrypt every stored provider key with the first CHATWEB_ENCRYPTION_KEYS key."""

from django.core.management.base import BaseCommand
from django.db import connection, transaction

from conversations.crypto import rotate
from conversations.models import Provider


class Command(BaseCommand):
    help = "Re-encrypt all provider API keys with the first key of CHATWEB_ENCRYPTION_KEYS."

    def handle(self, *args, **options) -> None:
        table = Provider._meta.db_table
        rotated = 0
        with transaction.atomic(), connection.cursor() as cursor:
            # Work on the stored tokens directly: MultiFernet.rotate needs no plaintext in Python objects.
            cursor.execute(f"SELECT id, api_key FROM {table} WHERE api_key <> ''")  # noqa: S608 - table name is ours
            for pk, token in cursor.fetchall():
                cursor.execute(f"UPDATE {table} SET api_key = %s WHERE id = %s", [rotate(token), pk])  # noqa: S608
                rotated += 1
        self.stdout.write(f"re-encrypted {rotated} provider key(s) with the first key")
