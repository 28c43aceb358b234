"""The /v1 API's admission, as a `check` / `do` pair like the chat's (conversations/chat/admission.py).

- `check_api_key` (conversations/api/auth.py) and `rate_limit_check`: who calls, within their requests a minute.
- `check_api_call(key=..., request=...)` only reads: the model that answers (named or `auto`), the upstream
  request it gets, the prompt's size when `auto` or a budget needs it.
- `do_api_call(check=...)` writes: the key's last use, and the worst case reserved against the budget, decided
  under the user's lock (budget_reserve); it returns the admitted call.

Every refusal is a domain error (conversations/errors.py); the edge (conversations/api/relay.py
`api_call_admit`) runs the steps in one thread hop, the body parsed between the key and the model, and answers
refusals in OpenAI's shape (conversations/api/errors.py `api_error`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from conversations.api.auth import api_key_touch
from conversations.api.parsing import ApiRequest
from conversations.api.routing import model_resolve, request_cost
from conversations.catalog.targets import upstream_target
from conversations.chat.prompting import upstream_request
from conversations.errors import BadRequest
from conversations.models import ApiKey, Model
from conversations.upstream.client import UpstreamTarget
from conversations.upstream.params import drop_unsupported
from conversations.upstream.tokens import DEFAULT_IMAGE_RULE, count_prompt_tokens, count_tokens
from conversations.usage.budgets import budget_reserve, budgets_apply
from conversations.usage.ledger import Priced


@dataclass(frozen=True)
class ApiCall:
    """An admitted call: everything the relay needs, resolved from the database once."""

    request: ApiRequest
    user_id: int
    api_key_id: int
    model_name: str  # the public name in every response
    target: UpstreamTarget
    path: str
    body: dict[str, Any]
    prompt_messages: list[dict[str, Any]]
    priced: Priced
    reservation_id: int | None
    owner_tz: str | None = None  # the owner's time zone setting, read with the key (their ledger row's day)


@dataclass(frozen=True)
class ApiCheck:
    key: ApiKey
    request: ApiRequest
    model: Model
    path: str
    body: dict[str, Any]
    prompt_messages: list[dict[str, Any]]
    prompt_tokens: int  # counted only when `auto` or a budget needs the worst case (else 0)
    budgeted: bool = False  # a budget (the user's own or a group's) limits this user


def check_api_call(*, key: ApiKey, request: ApiRequest) -> ApiCheck:
    """The call may be made: the model that answers and the upstream request it gets (ModelUnavailable,
    BadRequest)."""
    user = key.user
    chat = request.endpoint == "chat"
    prompt_messages = request.messages if chat else [{"role": "user", "content": request.prompt}]
    prompt_tokens = 0
    images = chat and has_images(prompt_messages)
    budgeted = key.budgeted if key.budgeted is not None else budgets_apply(user_id=user.pk)
    if request.model is None or budgeted:
        prompt_tokens = count_prompt_tokens(prompt_messages) if chat else count_tokens(request.prompt or "")
    model = model_resolve(
        user=user,
        requested=request.model,
        endpoint=request.endpoint,
        prompt_tokens=prompt_tokens,
        max_tokens=request.max_tokens,
        images=images,
    )
    if prompt_tokens and images and model.image_tokens != DEFAULT_IMAGE_RULE:
        prompt_tokens = count_prompt_tokens(prompt_messages, image_rule=model.image_tokens)  # the model's own rule
    path, body = _upstream_request(model, request)
    return ApiCheck(key=key, request=request, model=model, path=path, body=body, prompt_messages=prompt_messages,
                    prompt_tokens=prompt_tokens, budgeted=budgeted)


def do_api_call(*, check: ApiCheck) -> ApiCall:
    """Record the key's use and reserve the call's worst case (BudgetExceeded); the admitted call. A user without
    a budget has nothing to reserve: no transaction is opened (on SQLite it would take the write lock)."""
    key, model, request = check.key, check.model, check.request
    api_key_touch(key=key)
    reservation_id = None
    if check.budgeted:  # budget_reserve's own first test, without taking the write lock
        reservation_id = budget_reserve(
            user_id=key.user.pk,
            amount=request_cost(model, check.prompt_tokens, request.max_tokens, request.n),
        )
    return ApiCall(
        request=request,
        user_id=key.user.pk,
        api_key_id=key.pk,
        model_name=model.public_name,
        target=upstream_target(model.provider),
        path=check.path,
        body=check.body,
        prompt_messages=check.prompt_messages,
        priced=Priced.of(model),
        reservation_id=reservation_id,
        owner_tz=key.user.timezone,
    )


def has_images(messages: list[dict[str, Any]]) -> bool:
    """Whether any message holds an `image_url` content part."""
    return any(
        isinstance(part, dict) and part.get("type") == "image_url"
        for message in messages if isinstance(message.get("content"), list)
        for part in message["content"]
    )


def _upstream_request(model: Model, request: ApiRequest) -> tuple[str, dict[str, Any]]:
    params = drop_unsupported(request.params, model.provider.dropped_params or [])
    if request.endpoint == "completions":
        return "/completions", {
            "model": model.upstream_id,
            "prompt": request.prompt,
            **params,
            **request.extras,
        }
    if model.api == Model.Api.COMPLETIONS:
        # A completion-only model behind the chat endpoint: the transcript template chat uses (prompting.py).
        plain = all(
            m["role"] in ("system", "user", "assistant") and isinstance(m.get("content"), str)
            for m in request.messages
        )
        if not plain or request.extras:
            raise BadRequest(
                f"`{model.public_name}` is a completion-only model: it takes plain text messages "
                "(system, user, assistant) and no tools.",
                param="messages" if not plain else next(iter(request.extras)),
            )
        return upstream_request(
            model, [{"role": m["role"], "content": m["content"]} for m in request.messages], params
        )
    return "/chat/completions", {
        "model": model.upstream_id,
        "messages": request.messages,
        **params,
        **request.extras,
    }
