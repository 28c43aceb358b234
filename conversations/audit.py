"""The audit trail: who created, changed or deleted which provider, key, price, model or budget, and when."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any

from django.db import models

from conversations.models import AuditLog, Model, ModelPrice, Provider, Team, User

CREATED, CHANGED, DELETED, IMPORTED = "created", "changed", "deleted", "imported"
SOURCE_ADMIN = "admin"
SOURCE_APPLY = "providers apply"

SECRET_FIELDS = frozenset({"api_key", "secret_headers"})  # named in the trail ("api_key changed"), never valued

AUDITED_FIELDS: dict[type[models.Model], tuple[str, ...]] = {
    Provider: (
        "name",
        "base_url",
        "api_key",
        "extra_headers",
        "secret_headers",
        "send_stream_options",
        "dropped_params",
        "connect_timeout",
        "first_token_timeout",
        "read_timeout",
        "max_retries",
        "enabled",
    ),
    Model: (
        "provider",
        "upstream_id",
        "alias",
        "input_price",
        "output_price",
        "context_length",
        "max_output_tokens",
        "api",
        "vision",
        "image_tokens",
        "enabled",
        "is_default",
        "display_name",
        "description",
        "allowed_groups",
    ),
    User: ("monthly_budget", "attachment_quota"),
    Team: ("monthly_budget", "managers"),
}


def audited_fields(model_class: type[models.Model]) -> tuple[str, ...]:
    """The fields whose changes the trail records for this model (none: not audited)."""
    return AUDITED_FIELDS.get(model_class, ())


def _field(obj: models.Model, name: str) -> models.Field:
    """An audited field: always a concrete field of the model, never a reverse relation."""
    field = obj._meta.get_field(name)
    if not isinstance(field, models.Field):
        raise TypeError(f"{type(obj).__name__}.{name} is not a field of its own and cannot be audited")
    return field


def _value(obj: models.Model, name: str) -> Any:
    field = _field(obj, name)
    if field.many_to_many:
        return sorted(getattr(obj, name).values_list("pk", flat=True)) if obj.pk else []
    if field.is_relation:
        return getattr(obj, field.attname)
    value = getattr(obj, name)
    if name in SECRET_FIELDS:
        # A digest is enough to tell "changed" from "same"; the snapshot never holds the secret itself.
        return hashlib.sha256(str.__str__(value).encode()).hexdigest() if value else ""
    return value


def audit_snapshot(obj: models.Model, *, many_to_many: bool = False) -> dict[str, Any]:
    """The audited values of `obj` (a secret only as a digest), to compare with after a change.

    Many-to-many fields cost a query each, so they are read only when asked for.
    """
    return {
        name: _value(obj, name)
        for name in audited_fields(type(obj))
        if many_to_many or not obj._meta.get_field(name).many_to_many
    }


def audit_diff(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """The names of the fields whose values differ between two snapshots."""
    return [name for name in after if before.get(name) != after[name]]


def audit_set_fields(obj: models.Model) -> list[str]:
    """For a new object: the audited fields that hold something other than the field's default."""
    names = []
    for name in audited_fields(type(obj)):
        field = _field(obj, name)
        if field.many_to_many:
            continue
        value = getattr(obj, field.attname)
        if value not in (None, "", [], {}) and (field.is_relation or value != field.get_default()):
            names.append(name)
    return names


def _entry(
    *, actor: User | None, action: str, obj: models.Model, fields: Iterable[str], source: str
) -> AuditLog:
    return AuditLog(
        actor=actor if actor is not None and actor.is_authenticated else None,
        action=action,
        object_type=obj._meta.model_name or "",
        object_id=str(obj.pk or ""),
        object_repr=str(obj)[:320],
        fields=sorted(set(fields)),
        source=source,
    )


def audit_record(
    *, actor: User | None, action: str, obj: models.Model, fields: Iterable[str] = (), source: str
) -> AuditLog:
    """Write one entry: `actor` did `action` to `obj` touching `fields` (names only) through `source`; a model's
    new prices also go to its price history."""
    fields = list(fields)
    entry = _entry(actor=actor, action=action, obj=obj, fields=fields, source=source)
    entry.save()
    if isinstance(obj, Model) and action in (CREATED, CHANGED) and PRICE_FIELDS.intersection(fields):
        model_price_record(model=obj, actor=actor, source=source)
    return entry


PRICE_FIELDS = frozenset({"input_price", "output_price"})


def model_price_record(*, model: Model, actor: User | None, source: str) -> ModelPrice:
    """Add the model's current prices to its history, in force from now (earlier ledger rows keep theirs)."""
    return ModelPrice.objects.create(
        model=model,
        input_price=model.input_price,
        output_price=model.output_price,
        changed_by=actor if actor is not None and actor.is_authenticated else None,
        source=source,
    )


def audit_record_many(
    *, actor: User | None, action: str, objs: Iterable[models.Model], source: str
) -> list[AuditLog]:
    """One entry per object, written in one query (imports, bulk deletions)."""
    entries = [
        _entry(
            actor=actor,
            action=action,
            obj=obj,
            fields=audit_set_fields(obj) if action in (CREATED, IMPORTED) else (),
            source=source,
        )
        for obj in objs
    ]
    return AuditLog.objects.bulk_create(entries)


def audit_describe(entry: AuditLog) -> str:
    """One line for people: "api_key changed", "input_price, output_price changed", "created (name, ...)"."""
    if not entry.fields:
        return entry.action
    if entry.action == CHANGED:
        return f"{', '.join(entry.fields)} changed"
    return f"{entry.action} ({', '.join(entry.fields)})"
