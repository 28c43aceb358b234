"""Request bodies of /v1/chat/completions and /v1/completions, checked into typed values (pure, no I/O).

Every way a body can be wrong ends in ApiError 400 naming the parameter, never in another exception.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal

from conversations.api.errors import ApiError, bad_request
from conversations.upstream.params import PARAM_SPECS, ParamError, validate_params

Endpoint = Literal["chat", "completions"]

MAX_BODY_BYTES = 8 * 1024 * 1024  # a larger body is answered 413
MAX_MESSAGES = 10_000
MAX_MODEL_NAME = 320
AUTO = "auto"

ROLES = {"system", "user", "assistant", "tool", "function", "developer"}
# Sent on to the upstream as given, after a type check (JSON types by name).
PASS_THROUGH: dict[Endpoint, dict[str, tuple[type, ...]]] = {
    "chat": {
        "tools": (list,),
        "tool_choice": (str, dict),
        "parallel_tool_calls": (bool,),
        "response_format": (dict,),
        "reasoning_effort": (str,),
        "functions": (list,),
        "function_call": (str, dict),
    },
    "completions": {"suffix": (str,)},
}
# Accepted and not sent on: OpenAI's own bookkeeping, meaningless for other providers.
IGNORED = {"store", "metadata", "service_tier"}
# Features chatweb cannot relay: accepted only when they ask for nothing.
UNSUPPORTED_UNLESS_OFF: dict[str, object] = {
    "logprobs": False,
    "top_logprobs": 0,
    "echo": False,
    "best_of": 1,
}
STRUCTURE: dict[Endpoint, set[str]] = {
    "chat": {"model", "messages", "stream", "stream_options", "max_completion_tokens"},
    "completions": {"model", "prompt", "stream", "stream_options"},
}


@dataclass(frozen=True)
class ApiRequest:
    """One checked request. `model` None means `auto`; `params` are the validated sampling parameters."""

    endpoint: Endpoint
    model: str | None
    stream: bool
    include_usage: bool
    messages: list[dict[str, Any]] = field(default_factory=list)
    prompt: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def n(self) -> int:
        return self.params.get("n") or 1

    @property
    def max_tokens(self) -> int | None:
        return self.params.get("max_tokens")


def json_body(raw: bytes) -> dict[str, Any]:
    """The body as a JSON object, or ApiError 400."""
    if not raw.strip():
        raise bad_request("The request body is empty; send a JSON object.")
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):
        raise bad_request(
            "We could not parse the JSON body of your request. The API expects a JSON object "
            "(Content-Type: application/json)."
        ) from None
    if not isinstance(body, dict):
        raise bad_request(f"The request body must be a JSON object, not {_kind(body)}.")
    return body


def parse_request(endpoint: Endpoint, body: dict[str, Any]) -> ApiRequest:
    """Check a decoded body for `endpoint`; ApiError 400 (with `param`) on the first problem."""
    model = _model(body.get("model"))
    stream = _bool(body, "stream")
    options = body.get("stream_options")
    if options is not None and not isinstance(options, dict):
        raise bad_request(f"stream_options must be an object, not {_kind(options)}.", "stream_options")
    include_usage = bool(
        stream and options and _bool(options, "include_usage", "stream_options.include_usage")
    )

    sampling: dict[str, Any] = {}
    extras: dict[str, Any] = {}
    for name, value in body.items():
        if not isinstance(name, str):  # cannot happen with JSON, but keeps the contract total
            raise bad_request("Parameter names must be strings.")
        if name in STRUCTURE[endpoint] or name in IGNORED:
            continue
        if name in PASS_THROUGH[endpoint]:
            if value is not None:
                allowed = PASS_THROUGH[endpoint][name]
                if not isinstance(value, allowed) or (bool not in allowed and isinstance(value, bool)):
                    wanted = " or ".join(_JSON_NAMES[t] for t in allowed)
                    raise bad_request(f"{name} must be {wanted}, not {_kind(value)}.", name)
                extras[name] = value
            continue
        if name in UNSUPPORTED_UNLESS_OFF:
            if value is not None and value != UNSUPPORTED_UNLESS_OFF[name]:
                raise bad_request(f"{name} is not supported by this server.", name)
            continue
        if name in PARAM_SPECS:
            sampling[name] = value
            continue
        raise bad_request(f"Unrecognized request argument supplied: {name}", name)

    if endpoint == "chat" and body.get("max_completion_tokens") is not None:
        sampling["max_tokens"] = body["max_completion_tokens"]  # the newer spelling wins
        param_alias = {"max_tokens": "max_completion_tokens"}
    else:
        param_alias = {}
    try:
        params = validate_params(sampling)
    except ParamError as exc:
        param = param_alias.get(exc.param, exc.param)
        raise bad_request(
            str(exc).replace(exc.param, param, 1) if param != exc.param else str(exc), param
        ) from None

    if endpoint == "chat":
        return ApiRequest(
            "chat",
            model,
            stream,
            include_usage,
            messages=_messages(body.get("messages")),
            params=params,
            extras=extras,
        )
    return ApiRequest(
        "completions",
        model,
        stream,
        include_usage,
        prompt=_prompt(body.get("prompt")),
        params=params,
        extras=extras,
    )


# --- fields -----------------------------------------------------------------------------------------

_JSON_NAMES = {list: "an array", dict: "an object", str: "a string", bool: "a boolean"}


def _kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    return _JSON_NAMES.get(type(value), type(value).__name__)


def _model(value: object) -> str | None:
    if value is None or value == "" or value == AUTO:
        return None
    if not isinstance(value, str):
        raise bad_request(f"model must be a string, not {_kind(value)}.", "model")
    if len(value) > MAX_MODEL_NAME:
        raise bad_request(f"model must be at most {MAX_MODEL_NAME} characters.", "model")
    return value


def _bool(body: dict[str, Any], name: str, param: str | None = None) -> bool:
    value = body.get(name)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise bad_request(f"{param or name} must be a boolean, not {_kind(value)}.", param or name)
    return value


def _messages(value: object) -> list[dict[str, Any]]:
    if value is None:
        raise bad_request("Missing required parameter: 'messages'.", "messages")
    if not isinstance(value, list):
        raise bad_request(f"messages must be an array, not {_kind(value)}.", "messages")
    if not value:
        raise bad_request("messages must contain at least one message.", "messages")
    if len(value) > MAX_MESSAGES:
        raise bad_request(f"messages may contain at most {MAX_MESSAGES} messages.", "messages")
    out = []
    for i, message in enumerate(value):
        where = f"messages[{i}]"
        if not isinstance(message, dict):
            raise bad_request(f"{where} must be an object, not {_kind(message)}.", where)
        role = message.get("role")
        if not isinstance(role, str) or role not in ROLES:
            raise bad_request(
                f"{where}.role must be one of {', '.join(sorted(ROLES))} (got {role!r:.40}).", f"{where}.role"
            )
        content = message.get("content")
        if content is None:
            if role in ("user", "system", "developer"):
                raise bad_request(f"Missing required parameter: '{where}.content'.", f"{where}.content")
        elif isinstance(content, list):
            for j, part in enumerate(content):
                if not isinstance(part, dict) or not isinstance(part.get("type"), str):
                    raise bad_request(
                        f"{where}.content[{j}] must be a content part object with a `type`.",
                        f"{where}.content",
                    )
        elif not isinstance(content, str):
            raise bad_request(
                f"{where}.content must be a string or an array of content parts, not {_kind(content)}.",
                f"{where}.content",
            )
        name = message.get("name")
        if name is not None and not isinstance(name, str):
            raise bad_request(f"{where}.name must be a string.", f"{where}.name")
        if role == "developer":  # OpenAI's newer name for system; most other providers know only `system`
            message = {**message, "role": "system"}
        out.append(message)
    return out


def _prompt(value: object) -> str:
    if value is None:
        raise bad_request("Missing required parameter: 'prompt'.", "prompt")
    if isinstance(value, list) and len(value) == 1 and isinstance(value[0], str):
        value = value[0]
    if isinstance(value, list):
        if value and all(isinstance(v, str) for v in value):
            raise bad_request("Batched prompts (an array of several strings) are not supported.", "prompt")
        raise bad_request("prompt must be a string (token arrays are not supported).", "prompt")
    if not isinstance(value, str):
        raise bad_request(f"prompt must be a string, not {_kind(value)}.", "prompt")
    return value


def too_large(size: int) -> ApiError:
    return ApiError(
        413,
        f"The request body is {size} bytes; at most {MAX_BODY_BYTES} bytes are accepted.",
        code="request_too_large",
    )
