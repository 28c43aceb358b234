"""Migration 0008: credential headers already stored in plaintext `extra_headers` move to the encrypted store."""

from __future__ import annotations

import json

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

BEFORE = ("conversations", "0007_usageday_without_conversation")
AFTER = ("conversations", "0008_provider_secret_headers")


@pytest.mark.django_db(transaction=True)
def test_existing_credential_headers_are_encrypted_and_back_on_reverse() -> None:
    executor = MigrationExecutor(connection)
    executor.migrate([BEFORE])
    old = executor.loader.project_state([BEFORE]).apps.get_model("conversations", "Provider")
    old.objects.create(name="azure", base_url="https://a.test/v1",
                       extra_headers={"X-Title": "chatweb", "api-key": "plain-7731", "X-Auth-Token": "t-1"})
    old.objects.create(name="plain", base_url="https://p.test/v1", extra_headers={"X-Title": "x"})
    try:
        executor = MigrationExecutor(connection)
        executor.migrate([AFTER])
        # The model as of 0008 (later migrations add columns the live model would ask for).
        Provider = executor.loader.project_state([AFTER]).apps.get_model("conversations", "Provider")

        def secret(provider) -> dict:  # the encrypted field decrypts on read, as the live model's property does
            return json.loads(str.__str__(provider.secret_headers)) if provider.secret_headers else {}

        azure, plain = Provider.objects.get(name="azure"), Provider.objects.get(name="plain")
        assert azure.extra_headers == {"X-Title": "chatweb"}
        assert secret(azure) == {"api-key": "plain-7731", "X-Auth-Token": "t-1"}
        assert plain.extra_headers == {"X-Title": "x"} and secret(plain) == {}
        with connection.cursor() as cursor:
            cursor.execute("SELECT extra_headers, secret_headers FROM conversations_provider WHERE name = 'azure'")
            assert "plain-7731" not in "".join(cursor.fetchone())

        executor = MigrationExecutor(connection)
        executor.migrate([BEFORE])
        old = executor.loader.project_state([BEFORE]).apps.get_model("conversations", "Provider")
        assert old.objects.get(name="azure").extra_headers == {
            "X-Title": "chatweb", "api-key": "plain-7731", "X-Auth-Token": "t-1"}
    finally:
        executor = MigrationExecutor(connection)
        executor.loader.build_graph()
        executor.migrate(executor.loader.graph.leaf_nodes())
