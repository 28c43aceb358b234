"""Providers as code: apply a TOML file of providers and models (idempotent, all or nothing), export the set."""

from __future__ import annotations

import json
import os
import re
import tomllib
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from django.contrib.auth.models import Group
from django.core.exceptions import ValidationError
from django.db import transaction

from conversations.audit import (
    CHANGED,
    CREATED,
    SOURCE_APPLY,
    audit_diff,
    audit_record,
    audit_set_fields,
    audit_snapshot,
)
from conversations.models import Model, Provider, User, validate_base_url
from conversations.upstream.headers import header_problem, is_secret_header

SLUG = re.compile(r"^[-a-zA-Z0-9_]+$")
PROVIDER_KEYS = {
    "name",
    "base_url",
    "api_key",
    "api_key_env",
    "headers",
    "headers_env",
    "model",
    "enabled",
    "send_stream_options",
    "cost_lookup",
    "dropped_params",
    "connect_timeout",
    "first_token_timeout",
    "read_timeout",
    "max_retries",
}
MODEL_KEYS = {
    "id",
    "alias",
    "display_name",
    "description",
    "input_price",
    "output_price",
    "context_length",
    "max_output_tokens",
    "api",
    "vision",
    "image_tokens",
    "enabled",
    "groups",
}


class ProviderFileError(ValueError):
    """A providers file is invalid; the message names the provider, model and field."""


@dataclass
class ApplyResult:
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    models_created: int = 0
    models_updated: int = 0


def parse_providers_file(text: str) -> list[dict[str, Any]]:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ProviderFileError(f"not valid TOML: {exc}") from None
    unknown = set(data) - {"provider"}
    if unknown:
        raise ProviderFileError(f"unknown top-level key(s): {', '.join(sorted(unknown))}")
    providers = data.get("provider", [])
    if not isinstance(providers, list):
        raise ProviderFileError("`provider` must be an array of tables: [[provider]]")
    return providers


def _where(provider: str, model: str | None = None) -> str:
    return f"provider {provider!r}" + (f", model {model!r}" if model else "")


def _price(value: Any, where: str, name: str) -> Decimal | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ProviderFileError(f"{where}: {name} must be a number (USD per 1M tokens)")
    try:
        price = Decimal(str(value))
    except InvalidOperation:
        raise ProviderFileError(f"{where}: {name} must be a number (USD per 1M tokens)") from None
    if price < 0 or not price.is_finite():
        raise ProviderFileError(f"{where}: {name} must be >= 0")
    return price


def _positive_int(value: Any, where: str, name: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ProviderFileError(f"{where}: {name} must be a positive integer")
    return value


def _check_type(value: Any, kind: type | tuple, where: str, name: str, what: str) -> None:
    if isinstance(value, bool) and kind is not bool:
        raise ProviderFileError(f"{where}: {name} must be {what}")
    if not isinstance(value, kind):
        raise ProviderFileError(f"{where}: {name} must be {what}")


def _provider_fields(entry: dict[str, Any], index: int) -> tuple[str, dict[str, Any], list[dict[str, Any]]]:
    name = entry.get("name")
    if not isinstance(name, str) or not SLUG.match(name):
        raise ProviderFileError(f"provider #{index + 1}: name must be a slug (letters, digits, - and _)")
    where = _where(name)
    unknown = set(entry) - PROVIDER_KEYS
    if unknown:
        raise ProviderFileError(f"{where}: unknown field(s): {', '.join(sorted(unknown))}")
    base_url = entry.get("base_url")
    if not isinstance(base_url, str):
        raise ProviderFileError(f"{where}: base_url is required")
    try:
        validate_base_url(base_url)
    except ValidationError:
        raise ProviderFileError(f"{where}: base_url must be an http:// or https:// URL") from None
    fields: dict[str, Any] = {"base_url": base_url.rstrip("/")}
    if "api_key" in entry and "api_key_env" in entry:
        raise ProviderFileError(f"{where}: give api_key or api_key_env, not both")
    if "api_key_env" in entry:
        var = entry["api_key_env"]
        _check_type(var, str, where, "api_key_env", "the name of an environment variable")
        if var not in os.environ:
            raise ProviderFileError(f"{where}: api_key_env: environment variable {var} is not set")
        fields["api_key"] = os.environ[var]
    elif "api_key" in entry:
        _check_type(entry["api_key"], str, where, "api_key", "a string")
        fields["api_key"] = entry["api_key"]
    headers = entry.get("headers", {})
    if not isinstance(headers, dict) or not all(isinstance(v, str) for v in headers.values()):
        raise ProviderFileError(f"{where}: headers must be a table of strings")
    secret = {k: v for k, v in headers.items() if is_secret_header(k)}
    from_env = entry.get("headers_env", {})
    if not isinstance(from_env, dict) or not all(isinstance(v, str) for v in from_env.values()):
        raise ProviderFileError(f"{where}: headers_env must be a table of environment variable names")
    for header, var in from_env.items():
        if var not in os.environ:
            raise ProviderFileError(f"{where}: headers_env: environment variable {var} is not set")
        secret[header] = os.environ[var]  # from the environment: a secret whatever its name
    for header, value in {**headers, **secret}.items():
        if problem := header_problem(header, value):
            raise ProviderFileError(f"{where}: headers: {problem}")
    fields["extra_headers"] = {k: v for k, v in headers.items() if k not in secret}
    if secret:  # none in the file: the stored ones stay, as a key does
        fields["secret_header_values"] = secret
    for flag in ("enabled", "send_stream_options", "cost_lookup"):
        if flag in entry:
            _check_type(entry[flag], bool, where, flag, "true or false")
            fields[flag] = entry[flag]
    if "dropped_params" in entry:
        dropped = entry["dropped_params"]
        if not isinstance(dropped, list) or not all(isinstance(p, str) for p in dropped):
            raise ProviderFileError(f"{where}: dropped_params must be a list of parameter names")
        fields["dropped_params"] = dropped
    for timeout in ("connect_timeout", "first_token_timeout", "read_timeout"):
        if timeout in entry:
            value = entry[timeout]
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise ProviderFileError(f"{where}: {timeout} must be a positive number of seconds")
            fields[timeout] = float(value)
    if "max_retries" in entry:
        value = entry["max_retries"]
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 10:
            raise ProviderFileError(f"{where}: max_retries must be an integer from 0 to 10")
        fields["max_retries"] = value
    models = entry.get("model", [])
    if not isinstance(models, list):
        raise ProviderFileError(f"{where}: model must be an array of tables: [[provider.model]]")
    return name, fields, models


def _model_fields(provider: str, entry: Any, index: int) -> tuple[str, dict[str, Any]]:
    if not isinstance(entry, dict):
        raise ProviderFileError(f"{_where(provider)}: model #{index + 1} must be a table")
    upstream_id = entry.get("id")
    if not isinstance(upstream_id, str) or not upstream_id.strip():
        raise ProviderFileError(f"{_where(provider)}: model #{index + 1}: id is required")
    where = _where(provider, upstream_id)
    unknown = set(entry) - MODEL_KEYS
    if unknown:
        raise ProviderFileError(f"{where}: unknown field(s): {', '.join(sorted(unknown))}")
    alias = entry.get("alias", "")
    _check_type(alias, str, where, "alias", "a string")
    texts = {}
    for key, limit in (("display_name", 200), ("description", 300)):
        value = entry.get(key, "")
        _check_type(value, str, where, key, "a string")
        if len(value) > limit:
            raise ProviderFileError(f"{where}: {key} is longer than {limit} characters")
        texts[key] = value.strip()
    api = entry.get("api", "chat")
    if api not in Model.Api.values:
        raise ProviderFileError(f"{where}: api must be one of {', '.join(Model.Api.values)}")
    fields: dict[str, Any] = {
        "alias": alias,
        **texts,
        "input_price": _price(entry.get("input_price"), where, "input_price"),
        "output_price": _price(entry.get("output_price"), where, "output_price"),
        "context_length": _positive_int(entry.get("context_length"), where, "context_length"),
        "max_output_tokens": _positive_int(entry.get("max_output_tokens"), where, "max_output_tokens"),
        "api": api,
    }
    if "enabled" in entry:
        _check_type(entry["enabled"], bool, where, "enabled", "true or false")
        fields["enabled"] = entry["enabled"]
    if "groups" in entry:  # absent: the model's groups stay as they are (the admin may have set them)
        groups = entry["groups"]
        if not isinstance(groups, list) or not all(isinstance(g, str) and g.strip() for g in groups):
            raise ProviderFileError(f"{where}: groups must be a list of group names (empty: everyone)")
        fields["groups"] = sorted({g.strip() for g in groups})
    vision = entry.get("vision", False)
    _check_type(vision, bool, where, "vision", "true or false")
    fields["vision"] = vision
    rule = entry.get("image_tokens", Model.ImageTokens.OPENAI)
    if rule not in Model.ImageTokens.values:
        raise ProviderFileError(
            f"{where}: image_tokens must be one of {', '.join(repr(v) for v in Model.ImageTokens.values)}"
        )
    fields["image_tokens"] = rule
    return upstream_id, fields


def _audit(actor: User | None, obj: Provider | Model, before: dict[str, Any] | None) -> None:
    if before is None:
        fields = audit_set_fields(obj)
        if isinstance(obj, Model) and obj.allowed_groups.exists():
            fields.append("allowed_groups")
        audit_record(actor=actor, action=CREATED, obj=obj, fields=fields, source=SOURCE_APPLY)
    elif changed := audit_diff(before, audit_snapshot(obj, many_to_many=isinstance(obj, Model))):
        audit_record(actor=actor, action=CHANGED, obj=obj, fields=changed, source=SOURCE_APPLY)


@transaction.atomic
def providers_apply(*, text: str, actor: User | None = None) -> ApplyResult:
    """Create or update (by name) every provider and model in the file; any error changes nothing.

    Every creation and change is written to the audit trail (by `actor`, if given; keys named, never valued).
    """
    result = ApplyResult()
    seen_public: dict[str, str] = {}
    for index, entry in enumerate(parse_providers_file(text)):
        if not isinstance(entry, dict):
            raise ProviderFileError(f"provider #{index + 1} must be a table")
        name, fields, models = _provider_fields(entry, index)
        provider = Provider.objects.filter(name=name).first()
        if provider is None:
            provider, before = Provider(name=name), None
            result.created.append(name)
        else:
            before = audit_snapshot(provider)
            result.updated.append(name)
        for key, value in fields.items():
            setattr(provider, key, value)
        provider.save()
        _audit(actor, provider, before)
        for model_index, model_entry in enumerate(models):
            upstream_id, model_fields = _model_fields(name, model_entry, model_index)
            public = model_fields["alias"] or f"{name}/{upstream_id}"
            if public in seen_public:
                raise ProviderFileError(f"{_where(name, upstream_id)}: public name {public!r} is used twice")
            seen_public[public] = name
            clash = Model.objects.filter(public_name=public).exclude(
                provider=provider, upstream_id=upstream_id
            )
            if clash.exists():
                raise ProviderFileError(
                    f"{_where(name, upstream_id)}: public name {public!r} is taken by another model"
                )
            model = Model.objects.filter(provider=provider, upstream_id=upstream_id).first()
            if model is None:
                model, model_before = Model(provider=provider, upstream_id=upstream_id), None
                result.models_created += 1
            else:
                model_before = audit_snapshot(model, many_to_many=True)
                result.models_updated += 1
            groups = model_fields.pop("groups", None)
            for key, value in model_fields.items():
                setattr(model, key, value)
            model.provider = provider
            model.save()
            if groups is not None:
                model.allowed_groups.set([Group.objects.get_or_create(name=g)[0] for g in groups])
            _audit(actor, model, model_before)
    return result


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Decimal):
        return format(value.normalize(), "f")
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{json.dumps(k)} = {_toml_value(v)}" for k, v in value.items()) + " }"
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return json.dumps(str(value), ensure_ascii=False)  # JSON string escapes are valid TOML basic strings


def providers_export() -> str:
    """The current providers and models as a providers file. Keys are never printed."""
    lines: list[str] = ["# Exported by `manage.py providers export`. API keys and secret headers are not exported."]
    for provider in Provider.objects.prefetch_related("models").order_by("name"):
        lines += [
            "",
            "[[provider]]",
            f"name = {_toml_value(provider.name)}",
            f"base_url = {_toml_value(provider.base_url)}",
        ]
        if provider.api_key:
            lines.append('# an API key is set (not exported): add api_key_env = "..." to set it on apply')
        if provider.extra_headers:
            lines.append(f"headers = {_toml_value(provider.extra_headers)}")
        if provider.secret_headers:
            names = ", ".join(provider.secret_header_names)
            lines.append(f"# secret headers are set (not exported): {names}; add headers_env to set them on apply")
        if not provider.enabled:
            lines.append("enabled = false")
        if not provider.send_stream_options:
            lines.append("send_stream_options = false")
        if provider.cost_lookup:
            lines.append("cost_lookup = true")
        if provider.dropped_params:
            lines.append(f"dropped_params = {_toml_value(provider.dropped_params)}")
        for model in provider.models.order_by("upstream_id"):
            lines += ["", "[[provider.model]]", f"id = {_toml_value(model.upstream_id)}"]
            if model.alias:
                lines.append(f"alias = {_toml_value(model.alias)}")
            for attr in ("display_name", "description"):
                if getattr(model, attr):
                    lines.append(f"{attr} = {_toml_value(getattr(model, attr))}")
            for attr in ("input_price", "output_price", "context_length", "max_output_tokens"):
                value = getattr(model, attr)
                if value is not None:
                    lines.append(f"{attr} = {_toml_value(value)}")
            if model.api != Model.Api.CHAT:
                lines.append(f"api = {_toml_value(model.api)}")
            if model.vision:
                lines.append("vision = true")
            if model.image_tokens != Model.ImageTokens.OPENAI:
                lines.append(f"image_tokens = {_toml_value(model.image_tokens)}")
            if not model.enabled:
                lines.append("enabled = false")
            groups = sorted(g.name for g in model.allowed_groups.all())
            if groups:
                lines.append(f"groups = {_toml_value(groups)}")
    return "\n".join(lines) + "\n"
