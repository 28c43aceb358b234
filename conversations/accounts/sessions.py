"""Who a session is signed in as, in two hand-written statements: the sign-in of every new websocket."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
from django.contrib.sessions.backends.base import SessionBase
from django.contrib.sessions.models import Session
from django.core.exceptions import ValidationError
from django.db import connection
from django.utils import timezone
from django.utils.crypto import constant_time_compare

from conversations.models import User

Converter = Callable[[Any, Any, Any], Any]


@functools.cache
def _statements() -> tuple[str, str, list[str], list[tuple[list[Converter], Any]]]:
    # Raw SQL: the ORM spent ~1 ms of a burst's one core per socket building two primary-key reads (the session's,
    # then the user's; docs/benchmarks.md), more than the handshake itself. tests/accounts/test_sessions.py holds
    # the answer equal to channels' own sign-in through the ORM.
    quote = connection.ops.quote_name
    session = (
        f"SELECT {quote('session_data')} FROM {quote(Session._meta.db_table)} "  # noqa: S608
        f"WHERE {quote('session_key')} = %s AND {quote('expire_date')} > %s"
    )
    fields = User._meta.concrete_fields
    user = (  # names from the models' own metadata, quoted: nothing here comes from a request
        f"SELECT {', '.join(quote(f.column) for f in fields)} FROM {quote(User._meta.db_table)} "  # noqa: S608
        f"WHERE {quote(User._meta.pk.column)} = %s"
    )
    # The ORM's own conversions of each column's database value (SQLite's text dates, integers for booleans, ...).
    converters = []
    for field in fields:
        column = field.get_col(User._meta.db_table)
        own = field.get_db_converters(connection)  # type: ignore[attr-defined]  # Django's, not in its stubs
        converters.append((connection.ops.get_db_converters(column) + own, column))
    return session, user, [f.attname for f in fields], converters


def _session_data(session_key: str) -> str | None:
    session_sql = _statements()[0]
    with connection.cursor() as cursor:
        cursor.execute(session_sql, [session_key, connection.ops.adapt_datetimefield_value(timezone.now())])
        row = cursor.fetchone()
    return None if row is None else row[0]


def user_by_pk(user_id: Any) -> User | None:
    """The user of that primary key, every field loaded (as `User.objects.filter(pk=user_id).first()`)."""
    _, user_sql, names, converters = _statements()
    with connection.cursor() as cursor:
        cursor.execute(user_sql, [user_id])
        row = cursor.fetchone()
    if row is None:
        return None
    values = []
    for value, (functions, column) in zip(row, converters, strict=True):
        for convert in functions:
            value = convert(value, column, connection)
        values.append(value)
    return User.from_db(connection.alias, names, values)


def session_user(session: SessionBase) -> User | None:
    """The user `session` is signed in as, or None: channels' `get_user` (an unexpired session naming a configured
    backend, the user's session hash verified; a session whose hash no longer matches, after a password change,
    is flushed), except that an inactive user is refused whichever backend signed them in."""
    if not session.session_key:
        return None
    data = _session_data(session.session_key)
    if data is None:
        return None
    decoded = session.decode(data)
    try:
        user_id = User._meta.pk.to_python(decoded[SESSION_KEY])
        backend = decoded[BACKEND_SESSION_KEY]
    except (KeyError, ValidationError):
        return None
    if backend not in settings.AUTHENTICATION_BACKENDS:
        return None
    user = user_by_pk(user_id)
    if user is None or not user.is_active:
        return None
    session_hash = decoded.get(HASH_SESSION_KEY)
    if not (session_hash and constant_time_compare(session_hash, user.get_session_auth_hash())):
        session.flush()
        return None
    return user
