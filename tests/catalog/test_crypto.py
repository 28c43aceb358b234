"""API keys encrypted at rest: ciphertext in the database, decrypt after adding a key, rotation."""

import pytest
from cryptography.fernet import Fernet
from django.core.management import call_command
from django.db import connection

from conversations import crypto
from conversations.models import Provider

PLAINTEXT = "sk-live-0123456789abcdefSECRET"


def stored_token(provider: Provider) -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT api_key FROM conversations_provider WHERE id = %s", [provider.pk])
        return cursor.fetchone()[0]


@pytest.fixture
def keys(settings):
    first, second = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    settings.CHATWEB_ENCRYPTION_KEYS = [first]
    return first, second


def test_database_holds_ciphertext_and_python_the_plaintext(db, keys):
    provider = Provider.objects.create(name="p", base_url="https://x.test/v1", api_key=PLAINTEXT)
    token = stored_token(provider)
    assert PLAINTEXT not in token and token.startswith("gAAAA")
    provider.refresh_from_db()
    assert provider.api_key == PLAINTEXT
    assert PLAINTEXT not in repr(provider.api_key) and PLAINTEXT not in repr(provider.__dict__)
    assert provider.api_key_last4 == "CRET"


def test_blank_key_stays_blank(db, keys):
    provider = Provider.objects.create(name="p", base_url="https://x.test/v1")
    assert stored_token(provider) == ""
    provider.refresh_from_db()
    assert provider.api_key == ""


def test_a_second_key_still_decrypts_and_rotation_moves_to_the_new_first_key(db, keys, settings):
    old, new = keys
    provider = Provider.objects.create(name="p", base_url="https://x.test/v1", api_key=PLAINTEXT)
    settings.CHATWEB_ENCRYPTION_KEYS = [new, old]  # new key first: encrypts; old still decrypts
    provider.refresh_from_db()
    assert provider.api_key == PLAINTEXT
    call_command("rotatekeys", stdout=open("/dev/null", "w"))  # noqa: SIM115
    settings.CHATWEB_ENCRYPTION_KEYS = [new]  # the old key removed
    provider.refresh_from_db()
    assert provider.api_key == PLAINTEXT
    assert Fernet(new.encode()).decrypt(stored_token(provider).encode()).decode() == PLAINTEXT


def test_a_missing_key_fails_loudly(db, keys, settings):
    provider = Provider.objects.create(name="p", base_url="https://x.test/v1", api_key=PLAINTEXT)
    settings.CHATWEB_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
    with pytest.raises(Exception, match="cannot be decrypted"):
        provider.refresh_from_db()
    assert crypto.Secret("x").__repr__() == "Secret('****')"
