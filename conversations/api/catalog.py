"""The model list of /v1/models: what a key's user may call, as OpenAI model objects (plus `auto`)."""

from __future__ import annotations

from typing import Any

from conversations.api.auth import api_key_authenticate, rate_limit_check
from conversations.api.parsing import AUTO
from conversations.catalog.access import model_for_user, models_for_user
from conversations.errors import ModelUnavailable
from conversations.models import Model

AUTO_OBJECT_CREATED = 0


def _model_object(model: Model) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "id": model.public_name,
        "object": "model",
        "created": int(model.created_at.timestamp()),
        "owned_by": model.provider.name,
    }
    if model.context_length:
        obj["context_length"] = model.context_length
    return obj


def _auto_object() -> dict[str, Any]:
    return {"id": AUTO, "object": "model", "created": AUTO_OBJECT_CREATED, "owned_by": "chatweb"}


def models_list(*, authorization: str | None, address: str | None = None) -> dict[str, Any]:
    """`{"object": "list", "data": [...]}` of the caller's models, `auto` first when there is any."""
    key = api_key_authenticate(authorization, address=address)
    rate_limit_check(key)
    data = [_model_object(m) for m in models_for_user(key.user)]
    return {"object": "list", "data": ([_auto_object()] if data else []) + data}


def model_retrieve(*, authorization: str | None, name: str, address: str | None = None) -> dict[str, Any]:
    key = api_key_authenticate(authorization, address=address)
    rate_limit_check(key)
    if name == AUTO:
        if models_for_user(key.user):
            return _auto_object()
        raise ModelUnavailable(f"no model named {name!r} is available to you", name=name)
    model = model_for_user(key.user, name)
    if model is None:
        raise ModelUnavailable(f"no model named {name!r} is available to you", name=name)
    return _model_object(model)
