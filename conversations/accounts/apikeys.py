"""Services for personal API keys: create (the raw key returned once, only its hash stored) and revoke."""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from conversations.models import ApiKey, User

MAX_ACTIVE_KEYS = 50


class ApiKeyLimit(Exception):
    """The user already has MAX_ACTIVE_KEYS active keys."""


@transaction.atomic
def api_key_create(*, user: User, name: str = "", rpm_limit: int | None = None) -> tuple[ApiKey, str]:
    """A new key for `user`: (the stored row, the raw key to show once)."""
    if ApiKey.objects.for_user(user).active().count() >= MAX_ACTIVE_KEYS:
        raise ApiKeyLimit(f"You have {MAX_ACTIVE_KEYS} active keys; revoke one first.")
    raw, prefix, hashed = ApiKey.generate()
    key = ApiKey.objects.create(
        user=user, name=name.strip(), prefix=prefix, hashed=hashed, rpm_limit=rpm_limit
    )
    return key, raw


def api_key_revoke(*, user: User, key_id: int) -> ApiKey:
    """Revoke one of `user`'s keys (idempotent). ApiKey.DoesNotExist when the key is not theirs."""
    key = ApiKey.objects.for_user(user).get(pk=key_id)
    if key.revoked_at is None:
        key.revoked_at = timezone.now()
        ApiKey.objects.filter(pk=key.pk, revoked_at__isnull=True).update(revoked_at=key.revoked_at)
    return key
