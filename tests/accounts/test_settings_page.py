"""/settings/: personal API keys created (shown once), listed by prefix and last use, revoked (own only)."""

from __future__ import annotations

import re

import pytest
from django.test import Client

from conversations.accounts.apikeys import api_key_create
from conversations.api.auth import api_key_authenticate
from conversations.errors import InvalidApiKey
from conversations.models import ApiKey

pytestmark = pytest.mark.django_db

KEY_RE = re.compile(r'value="(cw-[A-Za-z0-9_\-]+)"')


def signed_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_anonymous_is_sent_to_sign_in():
    response = Client().get("/settings/")
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")
    assert Client().post("/settings/", {"action": "create_key"}).status_code == 302
    assert ApiKey.objects.count() == 0


def test_create_shows_the_key_once_then_only_its_prefix(alice):
    client = signed_in(alice)
    assert "You have no API keys yet" in client.get("/settings/").content.decode()
    created = client.post("/settings/", {"action": "create_key", "name": "laptop", "rpm_limit": "60"})
    assert created.status_code == 302 and created["Location"] == "/settings/"  # a reload creates no second key
    assert KEY_RE.search(created.content.decode()) is None
    response = client.get("/settings/")
    assert response.status_code == 200
    assert response["Cache-Control"] == "no-store"
    raw = KEY_RE.search(response.content.decode()).group(1)
    key = ApiKey.objects.get(user=alice)
    assert key.name == "laptop" and key.rpm_limit == 60
    assert key.hashed == ApiKey.hash(raw) and raw.startswith(key.prefix)

    page = client.get("/settings/").content.decode()
    assert raw not in page and KEY_RE.search(page) is None
    assert f"{key.prefix}…" in page and "laptop" in page and "never" in page

    assert api_key_authenticate(f"Bearer {raw}").pk == key.pk  # the key shown works
    key.refresh_from_db()
    assert key.last_used_at is not None
    assert "never" not in client.get("/settings/").content.decode()


def test_invalid_create_form_is_a_400(alice):
    response = signed_in(alice).post("/settings/", {"action": "create_key", "rpm_limit": "-3"})
    assert response.status_code == 400 and ApiKey.objects.count() == 0
    assert signed_in(alice).post("/settings/", {"action": "nonsense"}).status_code == 400


def test_revoke_own_key(alice):
    key, raw = api_key_create(user=alice, name="old")
    client = signed_in(alice)
    response = client.post("/settings/", {"action": "revoke_key", "key_id": key.pk}, follow=True)
    assert response.redirect_chain[-1][0] == "/settings/"
    assert "revoked" in response.content.decode()
    key.refresh_from_db()
    assert key.revoked_at is not None
    with pytest.raises(InvalidApiKey):
        api_key_authenticate(f"Bearer {raw}")
    # Revoking again changes nothing and is no error.
    revoked_at = key.revoked_at
    assert client.post("/settings/", {"action": "revoke_key", "key_id": key.pk}).status_code == 302
    key.refresh_from_db()
    assert key.revoked_at == revoked_at


def test_another_users_key_is_404_and_untouched(alice, bob):
    bobs, raw = api_key_create(user=bob)
    client = signed_in(alice)
    assert client.post("/settings/", {"action": "revoke_key", "key_id": bobs.pk}).status_code == 404
    assert client.post("/settings/", {"action": "revoke_key", "key_id": "abc"}).status_code == 404
    assert client.post("/settings/", {"action": "revoke_key", "key_id": 999999}).status_code == 404
    bobs.refresh_from_db()
    assert bobs.revoked_at is None
    assert bobs.prefix not in client.get("/settings/").content.decode()
    assert api_key_authenticate(f"Bearer {raw}").pk == bobs.pk


def test_forms_are_csrf_protected(alice):
    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)
    assert client.post("/settings/", {"action": "create_key"}).status_code == 403
    page = client.get("/settings/").content.decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
    assert (
        client.post("/settings/", {"action": "create_key", "csrfmiddlewaretoken": token}).status_code == 302
    )
