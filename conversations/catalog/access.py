"""Which models a user may call: `Model.objects.usable_by(user)`, read on the admission's path in one raw query.

Resolving a model on every chat message and API call was a DISTINCT join over models, providers and groups
costing ~2 ms of ORM work, the largest single part of admission. Here one hand-written statement (`_rows`,
held equal to the queryset `Model.objects.usable_by(user)` / `.usable()` by tests/catalog/test_access.py)
returns the usable rows (model and provider columns side by side, the group rule in SQL) and the database
answers it in a fraction of that. Nothing is stale: every change (the admin, `manage.py providers apply`, a
queryset update, another process) is seen by the next call. What is cached per process (`rows.RowObjects`) is
only the turning of a row into objects (decoding JSON, decrypting the provider's key), keyed by the row's values
themselves: a row that changed in any column is a new key and is loaded again through the ORM.

The models handed out are shared by every caller of the process: read them, never change them.
"""

from __future__ import annotations

import functools
from typing import Any

from django.db import connection

from conversations.models import Model, Provider, User
from conversations.rows import RowObjects, select_columns


@functools.cache
def _usable_sql(by_name: bool, any_group: bool = False) -> str:
    """Usable models (enabled, on an enabled provider) open to everyone or to one of the user's groups
    (`any_group`: whatever their groups, for work chatweb does for itself)."""
    quote = connection.ops.quote_name
    links = Model.allowed_groups.through
    memberships = User.groups.through
    selected = select_columns("m", Model) + select_columns("p", Provider)
    # Table and column names from the models' own metadata, quoted: nothing here comes from a request.
    open_to_user = (
        f"AND (NOT EXISTS (SELECT 1 FROM {quote(links._meta.db_table)} l WHERE l.model_id = m.id) "  # noqa: S608
        f"OR EXISTS (SELECT 1 FROM {quote(links._meta.db_table)} l JOIN {quote(memberships._meta.db_table)} g "
        "ON g.group_id = l.group_id WHERE l.model_id = m.id AND g.user_id = %s))"
    )
    return (
        f"SELECT {', '.join(selected)} FROM {quote(Model._meta.db_table)} m "  # noqa: S608
        f"JOIN {quote(Provider._meta.db_table)} p ON p.id = m.provider_id "
        "WHERE m.enabled AND p.enabled "
        + ("" if any_group else open_to_user)
        + (" AND m.public_name = %s" if by_name else " ORDER BY m.public_name")
    )


def _rows(user: User | None, public_name: str | None, *, any_group: bool = False) -> list[tuple[Any, ...]]:
    params: list[Any] = [] if public_name is None else [public_name]
    if not any_group:  # the user's id for the group rule (anonymous: models open to everyone only)
        params.insert(0, user.pk if user is not None and user.is_authenticated else None)
    with connection.cursor() as cursor:
        cursor.execute(_usable_sql(public_name is not None, any_group=any_group), params)
        return cursor.fetchall()


def _load(row: tuple[Any, ...]) -> Model:
    return Model.objects.select_related("provider").get(pk=row[0])  # the first column: Model's id


_models = RowObjects(_load)
_model = _models.get


def model_for_user(user: User, public_name: str) -> Model | None:
    """The enabled model of that public name (its enabled provider loaded), if this user may use it: a model
    open to no group in particular is open to everyone, else to members of its groups."""
    rows = _rows(user, public_name)
    return _model(rows[0]) if rows else None


def models_for_user(user: User, *, api: str | None = None) -> list[Model]:
    """Every model this user may use (of one API kind when given), by public name."""
    models = [_model(row) for row in _rows(user, None)]
    return [m for m in models if api is None or m.api == api]


def usable_model(public_name: str) -> Model | None:
    """The enabled model of that name, whatever its groups (work chatweb does for itself, such as titles)."""
    rows = _rows(None, public_name, any_group=True)
    return _model(rows[0]) if rows else None
