"""Rows on the path to the first token: writes with SQL compiled once per model, reads turned into objects once.

`Model.objects.create()`, `save(update_fields=...)` and a queryset's `get()` build their SQL anew on every call:
for the chat's admission (a conversation, two messages, the active leaf) that is two thirds of its time, for
the API's key lookup nine tenths (docs/benchmarks.md). `insert` and `update` write the same rows through the same fields
(defaults, `auto_now`, database conversions), so the stored values are those the ORM would store; only the
statement text is cached. No signals are sent: nothing in chatweb listens to these models' saves.
`RowObjects` lets a hand-written SELECT read fresh rows on every call and keep only the objects made of them.
"""

from __future__ import annotations

import functools
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from django.db import connection, models

M = TypeVar("M", bound=models.Model)
T = TypeVar("T")


@functools.cache
def _insert_sql(model: type[models.Model]) -> tuple[str, tuple[models.Field, ...], bool]:
    fields = tuple(f for f in model._meta.concrete_fields if not f.primary_key)
    quote = connection.ops.quote_name
    returning = connection.features.can_return_columns_from_insert
    sql = (  # names from the model's own metadata: every value is a parameter
        f"INSERT INTO {quote(model._meta.db_table)} ({', '.join(quote(f.column) for f in fields)}) "  # noqa: S608
        f"VALUES ({', '.join(['%s'] * len(fields))})"
        + (f" RETURNING {quote(model._meta.pk.column)}" if returning else "")
    )
    return sql, fields, returning


def insert(obj: M) -> M:
    """INSERT a new instance (as `obj.save()` would, without signals) and set its primary key."""
    sql, fields, returning = _insert_sql(type(obj))
    values = [f.get_db_prep_save(f.pre_save(obj, add=True), connection) for f in fields]
    with connection.cursor() as cursor:
        cursor.execute(sql, values)
        obj.pk = cursor.fetchone()[0] if returning else cursor.lastrowid
    obj._state.adding = False
    obj._state.db = connection.alias
    return obj


def _column_field(model: type[models.Model], name: str) -> models.Field:
    """The field stored in a column of the model's own table: a relation's reverse side, a generic foreign key
    or a many-to-many field has none to update."""
    field = model._meta.get_field(name)
    if not isinstance(field, models.Field) or not field.concrete or field.column is None:
        raise ValueError(f"{model.__name__}.{name} is not a column of {model._meta.db_table}")
    return field


@functools.cache
def _update_sql(model: type[models.Model], names: tuple[str, ...]) -> tuple[str, tuple[models.Field, ...]]:
    fields = tuple(_column_field(model, name) for name in names)
    quote = connection.ops.quote_name
    sql = (  # names from the model's own metadata: every value is a parameter
        f"UPDATE {quote(model._meta.db_table)} SET {', '.join(f'{quote(f.column)} = %s' for f in fields)} "  # noqa: S608
        f"WHERE {quote(model._meta.pk.column)} = %s"
    )
    return sql, fields


def update(obj: models.Model, names: tuple[str, ...]) -> None:
    """UPDATE these fields of a stored instance (as `obj.save(update_fields=names)` would, without signals)."""
    sql, fields = _update_sql(type(obj), names)
    values = [f.get_db_prep_save(f.pre_save(obj, add=False), connection) for f in fields]
    with connection.cursor() as cursor:
        cursor.execute(sql, [*values, obj.pk])


def select_columns(alias: str, model: type[models.Model]) -> list[str]:
    """`alias."column"` for each concrete field of a model, in field order (for a hand-written SELECT)."""
    return [f"{alias}.{connection.ops.quote_name(f.column)}" for f in model._meta.concrete_fields]


def raw_rows(query: models.QuerySet) -> list[tuple[Any, ...]]:
    """The rows of a `values_list` query as the database driver gives them, without Django's converter call per
    value (thousands of rows of sums: the converters cost more than the query). The caller knows the types:
    a date column comes as text from SQLite."""
    sql, params = query.query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


class RowObjects(Generic[T]):
    """Objects made from rows, cached by the row's values themselves: a row read again unchanged gives the same
    objects without the ORM; a row changed in any column is a new key and `load` makes its objects anew. So
    nothing cached is ever stale, and the rows are still read on every call. The objects are shared by every
    caller of the process (and its threads): read them, never change them."""

    def __init__(self, load: Callable[[tuple[Any, ...]], T], size: int = 512) -> None:
        self.load = load
        self.size = size
        self._objects: OrderedDict[str, T] = OrderedDict()  # repr: PostgreSQL gives JSON columns as dicts
        self._lock = threading.Lock()

    def get(self, row: tuple[Any, ...]) -> T:
        key = repr(row)
        found = self._objects.get(key)
        if found is not None:
            return found
        made = self.load(row)
        with self._lock:
            self._objects[key] = made
            while len(self._objects) > self.size:
                self._objects.popitem(last=False)
        return made
