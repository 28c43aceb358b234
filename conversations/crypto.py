"""Encryption of provider API keys at rest: MultiFernet over CHATWEB_ENCRYPTION_KEYS, and the model field."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import models


class Secret(str):
    """A string whose repr never shows its value, so it cannot leak through logs or debug pages."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "Secret('****')" if self else "Secret('')"

    @property
    def last4(self) -> str:
        return str.__str__(self)[-4:]


@lru_cache(maxsize=4)
def _fernet(keys: tuple[str, ...]) -> MultiFernet:
    if not keys:
        raise ImproperlyConfigured("CHATWEB_ENCRYPTION_KEYS is empty.")
    try:
        return MultiFernet([Fernet(key.strip().encode()) for key in keys])
    except ValueError as exc:
        raise ImproperlyConfigured(f"CHATWEB_ENCRYPTION_KEYS holds an invalid Fernet key: {exc}") from None


def fernet() -> MultiFernet:
    """The MultiFernet for the current settings: the first key encrypts, all keys decrypt."""
    return _fernet(tuple(settings.CHATWEB_ENCRYPTION_KEYS))


def encrypt(plaintext: str) -> str:
    return fernet().encrypt(plaintext.encode()).decode()


def decrypt(token: str) -> Secret:
    try:
        return Secret(fernet().decrypt(token.encode()).decode())
    except InvalidToken:
        raise ImproperlyConfigured(
            "A stored API key cannot be decrypted with CHATWEB_ENCRYPTION_KEYS "
            "(was a key removed before `manage.py rotatekeys` ran?)."
        ) from None


def rotate(token: str) -> str:
    """Re-encrypt a stored token with the first key."""
    return fernet().rotate(token.encode()).decode()


class EncryptedTextField(models.TextField):
    """Holds a secret: plaintext (a `Secret`) in Python, a Fernet token in the database; blank stays blank."""

    def from_db_value(self, value: str | None, expression: Any, connection: Any) -> Secret | None:
        if value is None:
            return None
        return decrypt(value) if value else Secret("")

    def to_python(self, value: Any) -> Secret | None:
        if value is None or isinstance(value, Secret):
            return value
        return Secret(value)

    def get_prep_value(self, value: Any) -> str | None:
        if value is None:
            return None
        plaintext = str.__str__(value)
        return encrypt(plaintext) if plaintext else ""

    def value_to_string(self, obj: Any) -> str:
        # Serialisation (dumpdata, admin history) never carries the secret.
        return ""
