"""Which model answers: the one named, or for `auto` (or no `model`) the documented rule below.

`auto` picks, among the models this user may use whose API kind fits the endpoint (chat models for
/v1/chat/completions, completion-only models for /v1/completions) and whose context length (when known)
holds the prompt plus `max_tokens` (and, when the messages hold images, that take images: `vision = true`):

1. the staff-chosen default, `CHATWEB_DEFAULT_MODEL` (a public name), when it is one of them;
2. else the priced model for which this request's worst case (prompt tokens × input price +
   max_tokens or the model's reply cap × output price) is cheapest, ties broken by public name;
3. else the first unpriced one by public name.

No candidate: 404 `model_not_found`. The response's `model` names the model picked. Images to a named model
without `vision = true`: 400 `attachment_unsupported`, before anything goes upstream.
"""

from __future__ import annotations

import os
from decimal import Decimal

from django.conf import settings

from conversations.api.parsing import AUTO, Endpoint
from conversations.catalog.access import model_for_user, models_for_user
from conversations.errors import AttachmentUnsupported, BadRequest, ModelUnavailable
from conversations.models import Model, User
from conversations.usage.budgets import worst_case_cost

KIND: dict[Endpoint, str] = {"chat": Model.Api.CHAT, "completions": Model.Api.COMPLETIONS}


def default_model_name() -> str:
    """The staff-chosen default for `auto`: settings.CHATWEB_DEFAULT_MODEL, else the environment variable."""
    configured = getattr(settings, "CHATWEB_DEFAULT_MODEL", None)
    if configured is None:
        configured = os.environ.get("CHATWEB_DEFAULT_MODEL", "")
    return (configured or "").strip()


def fits(model: Model, prompt_tokens: int, max_tokens: int | None) -> bool:
    return model.context_length is None or prompt_tokens + (max_tokens or 0) <= model.context_length


def request_cost(model: Model, prompt_tokens: int, max_tokens: int | None, n: int = 1) -> Decimal:
    """The worst case of one request on `model` (what the budget reserves)."""
    return n * worst_case_cost(
        prompt_tokens=prompt_tokens,
        max_tokens=max_tokens or model.max_output_tokens,
        input_price=model.input_price,
        output_price=model.output_price,
    )


def auto_pick(
    candidates: list[Model], *, prompt_tokens: int, max_tokens: int | None, default: str = ""
) -> Model | None:
    """The rule of this module's docstring over already-filtered candidates (pure: testable without a DB)."""
    fitting = [m for m in candidates if fits(m, prompt_tokens, max_tokens)]
    if default:
        for model in fitting:
            if model.public_name == default:
                return model
    priced = [m for m in fitting if m.priced]
    if priced:
        return min(priced, key=lambda m: (request_cost(m, prompt_tokens, max_tokens), m.public_name))
    return min(fitting, key=lambda m: m.public_name, default=None)


def model_resolve(
    *, user: User, requested: str | None, endpoint: Endpoint, prompt_tokens: int, max_tokens: int | None,
    images: bool = False,
) -> Model:
    """The model that will answer, with its provider loaded; ModelUnavailable, BadRequest for a chat model
    on /v1/completions, AttachmentUnsupported for `images` to a model that takes none."""
    if requested is None:
        candidates = models_for_user(user, api=KIND[endpoint])
        if images:
            candidates = [m for m in candidates if m.vision]
        model = auto_pick(
            candidates, prompt_tokens=prompt_tokens, max_tokens=max_tokens, default=default_model_name()
        )
        if model is None:
            raise ModelUnavailable(
                f"No model available to you can serve `{AUTO}` for this request "
                f"({'a chat' if endpoint == 'chat' else 'a completion-only'} model{' taking images' if images else ''} "
                f"whose context holds "
                f"{prompt_tokens} prompt tokens); name a model instead.",
                name=None,
            )
        return model
    model = model_for_user(user, requested)
    if model is None:
        raise ModelUnavailable(f"no model named {requested!r} is available to you", name=requested)
    if endpoint == "completions" and model.api == Model.Api.CHAT:
        raise BadRequest(
            f"`{requested}` is a chat model and not supported on /v1/completions; use /v1/chat/completions.",
            param="model",
        )
    if images and not model.vision:
        raise AttachmentUnsupported(
            f"`{requested}` does not take images (image_url content parts); send them to a model that does, "
            "or send the messages without them."
        )
    return model
