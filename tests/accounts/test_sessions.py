"""The websocket's sign-in in two statements (conversations/accounts/sessions.py) answers as channels' own `get_user`
through the ORM, for every kind of session: signed in, stale hash, inactive user, expired, unknown, tampered."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from channels.auth import get_user
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
from django.contrib.sessions.backends.db import SessionStore
from django.contrib.sessions.models import Session
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from conversations.accounts.sessions import session_user, user_by_pk
from conversations.models import User

pytestmark = pytest.mark.django_db

MODEL_BACKEND = "django.contrib.auth.backends.ModelBackend"
OIDC_BACKEND = "conversations.accounts.oidc.OidcBackend"
channels_get_user = get_user.func  # the synchronous lookup under channels' database_sync_to_async


def signed_in(user: User, *, backend: str = MODEL_BACKEND, **overrides: object) -> str:
    """A stored session of `user`, as Django's login() leaves it; `overrides` replace or (None) drop its keys."""
    session = SessionStore()
    values = {SESSION_KEY: str(user.pk), BACKEND_SESSION_KEY: backend, HASH_SESSION_KEY: user.get_session_auth_hash()}
    for key, value in {**values, **overrides}.items():
        if value is not None:
            session[key] = value
    session.create()
    return session.session_key


def both(session_key: str | None) -> tuple[int | None, int | None]:
    """(channels' answer, ours) as user ids (None: anonymous), each on a fresh session store of the same key."""
    theirs = channels_get_user({"session": SessionStore(session_key)})
    ours = session_user(SessionStore(session_key))
    return (theirs.pk if theirs.is_authenticated else None), (ours.pk if ours is not None else None)


def test_a_signed_in_session_is_its_user_with_every_field_as_the_orm_reads_it(alice):
    alice.monthly_budget = Decimal("12.5000")
    alice.timezone = "Europe/Paris"
    alice.save()
    key = signed_in(alice)
    assert both(key) == (alice.pk, alice.pk)
    with CaptureQueriesContext(connection) as queries:
        ours = session_user(SessionStore(key))
    assert len(queries.captured_queries) == 2
    orm = User.objects.get(pk=alice.pk)
    assert ours is not None and not ours._state.adding and ours._state.db == "default"
    for field in User._meta.concrete_fields:
        assert getattr(ours, field.attname) == getattr(orm, field.attname), field.name
        assert type(getattr(ours, field.attname)) is type(getattr(orm, field.attname)), field.name
    assert user_by_pk(alice.pk + 1000) is None


def test_a_session_of_the_single_sign_on_backend_signs_in_too(alice):
    assert both(signed_in(alice, backend=OIDC_BACKEND)) == (alice.pk, alice.pk)


def test_a_stale_hash_signs_nobody_in_and_flushes_the_session(alice):
    key = signed_in(alice)
    alice.set_password("a new password, elsewhere")
    alice.save()
    assert session_user(SessionStore(key)) is None
    assert not Session.objects.filter(session_key=key).exists()  # flushed, as channels does
    key = signed_in(alice, **{HASH_SESSION_KEY: "not the hash"})
    assert both(key) == (None, None)


@pytest.mark.parametrize("overrides", [
    {SESSION_KEY: None}, {BACKEND_SESSION_KEY: None}, {HASH_SESSION_KEY: None},
    {BACKEND_SESSION_KEY: "django.contrib.auth.backends.RemoteUserBackend"},  # not one of ours
])
def test_an_incomplete_session_signs_nobody_in(alice, overrides):
    assert both(signed_in(alice, **overrides)) == (None, None)


def test_an_inactive_user_is_refused(alice):
    key = signed_in(alice)
    User.objects.filter(pk=alice.pk).update(is_active=False)
    assert both(key) == (None, None)
    # channels' lookup through the single sign-on backend would let them in (its get_user skips the check): ours not.
    assert session_user(SessionStore(signed_in(alice, backend=OIDC_BACKEND))) is None


def test_expired_unknown_tampered_and_deleted_sign_nobody_in(alice, bob):
    expired = signed_in(alice)
    Session.objects.filter(session_key=expired).update(expire_date=timezone.now() - timedelta(seconds=1))
    tampered = signed_in(alice)
    Session.objects.filter(session_key=tampered).update(session_data="x" + Session.objects.get(
        session_key=tampered).session_data)
    deleted = signed_in(bob)
    User.objects.filter(pk=bob.pk).delete()
    for key in (expired, "no-such-session-key", tampered, deleted, None):
        assert both(key) == (None, None), key
