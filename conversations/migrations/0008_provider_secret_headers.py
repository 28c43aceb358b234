"""Credential headers (`api-key`, `Authorization`, ...) move from the plaintext `extra_headers` into `secret_headers`,
encrypted at rest like the API key."""

import json

from django.db import migrations

import conversations.crypto

# The rule of this migration's day (conversations/upstream/headers.py may change; a migration does not).
SECRET_NAMES = {"authorization", "proxy-authorization", "cookie", "api-key", "x-api-key"}
SECRET_WORDS = ("key", "token", "secret", "password", "authorization", "credential", "signature")


def _secret(name):
    lowered = name.strip().lower()
    return lowered in SECRET_NAMES or any(word in lowered for word in SECRET_WORDS)


def encrypt_secret_headers(apps, schema_editor):
    Provider = apps.get_model("conversations", "Provider")
    for provider in Provider.objects.only("pk", "extra_headers", "secret_headers"):
        headers = provider.extra_headers or {}
        secret = {k: v for k, v in headers.items() if _secret(k)}
        if not secret:
            continue
        provider.extra_headers = {k: v for k, v in headers.items() if not _secret(k)}
        provider.secret_headers = json.dumps(secret, ensure_ascii=False)  # the field encrypts it
        provider.save(update_fields=["extra_headers", "secret_headers"])


def decrypt_secret_headers(apps, schema_editor):
    Provider = apps.get_model("conversations", "Provider")
    for provider in Provider.objects.exclude(secret_headers="").only("pk", "extra_headers", "secret_headers"):
        provider.extra_headers = {**(provider.extra_headers or {}), **json.loads(str.__str__(provider.secret_headers))}
        provider.save(update_fields=["extra_headers"])


class Migration(migrations.Migration):

    dependencies = [
        ("conversations", "0007_usageday_without_conversation"),
    ]

    operations = [
        migrations.AddField(
            model_name="provider",
            name="secret_headers",
            field=conversations.crypto.EncryptedTextField(
                blank=True, default="", help_text="Credential headers (JSON), encrypted at rest; never shown again."
            ),
        ),
        migrations.RunPython(encrypt_secret_headers, decrypt_secret_headers),
    ]
