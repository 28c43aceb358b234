"""Which model a new chat opens with, and what the model picker says about each model."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from itertools import groupby

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from conversations.models import Model, User
from conversations.money import money


def staff_default_names() -> list[str]:
    """The public names staff configured, in order: CHATWEB_DEFAULT_CHAT_MODEL, then /v1's CHATWEB_DEFAULT_MODEL
    (so one setting can serve both when the chat needs no other)."""
    names = [getattr(settings, "CHATWEB_DEFAULT_CHAT_MODEL", ""), getattr(settings, "CHATWEB_DEFAULT_MODEL", "")]
    return [n.strip() for n in names if n and n.strip()]


def chat_default_model(user: User, models: list[Model]) -> Model | None:
    """The model a new chat opens with, among `models` (those the user may use): the user's own choice if still
    usable, else the one staff flagged in the admin, else the environment's, else the first usable one."""
    if not models:
        return None
    if user.default_model_id is not None:
        for model in models:
            if model.pk == user.default_model_id:
                return model
    for model in models:
        if model.is_default:
            return model
    by_name = {m.public_name: m for m in models}
    for name in staff_default_names():
        if name in by_name:
            return by_name[name]
    return models[0]


def model_default_set(model: Model | None) -> None:
    """Make `model` staff's default for new chats (None: no flagged default); at most one model carries it."""
    with transaction.atomic():
        Model.objects.filter(is_default=True).exclude(pk=getattr(model, "pk", None)).update(is_default=False)
        if model is not None and not model.is_default:
            Model.objects.filter(pk=model.pk).update(is_default=True)
            model.is_default = True


def _per_million(price: object) -> str:
    return "free" if price is not None and price == 0 else money(price)  # type: ignore[arg-type]


@dataclass(frozen=True)
class PickerEntry:
    """One model as the picker shows it; `value` stays the public name (what every request names)."""

    value: str
    label: str
    api: str
    description: str
    details: str  # prices and context, e.g. "$0.50 / $1.50 per 1M tokens · 32,768 tokens of context"
    unreachable: bool
    vision: bool = False  # takes images (attachments)

    @property
    def title(self) -> str:
        parts = [self.value, self.description, self.details]
        if self.unreachable:
            parts.append("chatweb could not connect to this provider recently")
        return " · ".join(p for p in parts if p)


@dataclass(frozen=True)
class PickerGroup:
    provider: str
    unreachable: bool
    entries: list[PickerEntry]


def model_details(model: Model) -> str:
    parts = []
    if model.input_price is not None or model.output_price is not None:
        parts.append(f"{_per_million(model.input_price)} / {_per_million(model.output_price)} per 1M tokens")
    if model.context_length:
        parts.append(f"{model.context_length:,} tokens of context")
    return " · ".join(parts)


def provider_unreachable(unreachable_at: object) -> bool:
    """Whether a provider's last failed connection is recent enough to flag (no upstream call: a stored time)."""
    if unreachable_at is None:
        return False
    window = timedelta(minutes=getattr(settings, "CHATWEB_UNREACHABLE_MINUTES", 10))
    return bool(unreachable_at >= timezone.now() - window)  # type: ignore[operator]


def picker_groups(models: list[Model]) -> list[PickerGroup]:
    """The usable models grouped by provider (providers by name, models by the order given)."""
    ordered = sorted(models, key=lambda m: m.provider.name)
    groups = []
    for name, grouped in groupby(ordered, key=lambda m: m.provider.name):
        members = list(grouped)
        unreachable = provider_unreachable(members[0].provider.unreachable_at)
        entries = [
            PickerEntry(m.public_name, m.label, m.api, m.description, model_details(m), unreachable, m.vision)
            for m in members
        ]
        groups.append(PickerGroup(name, unreachable, entries))
    return groups
