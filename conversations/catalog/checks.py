"""For the admin: test a provider's connection (list models, a one-token reply) and import its models."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from asgiref.sync import async_to_sync
from django.db import transaction
from django.utils import timezone

from conversations.audit import IMPORTED, SOURCE_ADMIN, audit_record_many
from conversations.catalog.targets import upstream_target
from conversations.models import Model, Provider, User
from conversations.upstream import client
from conversations.upstream.client import UpstreamTarget
from conversations.upstream.errors import ErrorCode, UpstreamError, admin_advice
from conversations.upstream.events import ContentDelta, Finish, StreamError, Usage

logger = logging.getLogger(__name__)

CHECK_TIMEOUT = 20.0  # seconds: a check answers quickly or says why not; no retries either
TEST_PROMPT = "Reply with the single word OK."
CONTEXT_KEYS = ("context_length", "max_model_len", "context_window", "max_context_length")


@dataclass(frozen=True)
class CheckStep:
    """One step of a connection test; on failure our error code, our message and the upstream's own words."""

    name: str
    ok: bool
    latency_ms: int
    summary: str
    error_code: str = ""
    error_message: str = ""
    upstream_message: str = ""
    status: int | None = None

    @property
    def advice(self) -> str:
        """What to check, in plain words (the URL, the network, DNS, the key...)."""
        return admin_advice(self.error_code) if self.error_code else ""


@dataclass(frozen=True)
class ConnectionCheck:
    """What testing one provider found."""

    provider_id: int
    provider: str
    base_url: str
    steps: tuple[CheckStep, ...]
    model_ids: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return all(step.ok for step in self.steps)

    @property
    def unreachable(self) -> bool:
        """No step could open a connection to the provider."""
        return any(step.error_code == ErrorCode.UPSTREAM_UNREACHABLE for step in self.steps)


@dataclass
class ImportResult:
    """Ids from an upstream's /models: created (disabled, unpriced), already known, or not importable."""

    created: list[str] = field(default_factory=list)
    existing: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def _check_target(provider: Provider) -> UpstreamTarget:
    target = upstream_target(provider)
    return dataclasses.replace(
        target,
        max_retries=0,
        connect_timeout=min(target.connect_timeout, CHECK_TIMEOUT),
        first_token_timeout=min(target.first_token_timeout, CHECK_TIMEOUT),
        read_timeout=min(target.read_timeout, CHECK_TIMEOUT),
    )


def _candidates(provider: Provider) -> list[tuple[str, str]]:
    """(upstream id, api) of the provider's own models to try a reply with: enabled chat models first."""
    models = sorted(
        provider.models.all(), key=lambda m: (not m.enabled, m.api != Model.Api.CHAT, m.upstream_id)
    )
    return [(m.upstream_id, m.api) for m in models]


def _ms(start: float) -> int:
    return round((time.perf_counter() - start) * 1000)


async def _list_step(target: UpstreamTarget) -> tuple[CheckStep, list[str]]:
    start = time.perf_counter()
    try:
        items = await client.list_models(target)
    except UpstreamError as err:
        return CheckStep(
            "list models (GET /models)",
            False,
            _ms(start),
            "the upstream refused or failed",
            error_code=err.code,
            error_message=err.message,
            upstream_message=err.detail or "",
            status=err.status,
        ), []
    ids = [m["id"] for m in items if isinstance(m.get("id"), str)]
    shown = ", ".join(ids[:8]) + (f" and {len(ids) - 8} more" if len(ids) > 8 else "")
    return CheckStep("list models (GET /models)", True, _ms(start), f"{len(ids)} model(s): {shown}"), ids


async def _reply_step(target: UpstreamTarget, model_id: str, api: str) -> CheckStep:
    if api == Model.Api.COMPLETIONS:
        path, body = "/completions", {"model": model_id, "prompt": TEST_PROMPT, "max_tokens": 1}
    else:
        path = "/chat/completions"
        body = {"model": model_id, "messages": [{"role": "user", "content": TEST_PROMPT}], "max_tokens": 1}
    name = f"one-token reply from {model_id} (POST {path}, streamed)"
    start = time.perf_counter()
    first_ms: int | None = None
    text, finish, usage = "", "", None
    async with contextlib.aclosing(client.stream(target, path, body)) as events:
        async for event in events:
            if isinstance(event, StreamError):
                return CheckStep(
                    name,
                    False,
                    _ms(start),
                    "the upstream refused or failed",
                    error_code=event.code,
                    error_message=event.message,
                    upstream_message=getattr(event, "detail", None) or "",
                    status=event.status,
                )
            if isinstance(event, ContentDelta):
                first_ms = _ms(start) if first_ms is None else first_ms
                text += event.text
            elif isinstance(event, Finish):
                finish = event.reason
            elif isinstance(event, Usage):
                usage = event
    reported = (
        f"usage reported ({usage.prompt_tokens} prompt + {usage.completion_tokens} completion tokens)"
        if usage is not None
        else "no usage reported (chatweb will estimate tokens; see send_stream_options)"
    )
    first = f", first token after {first_ms} ms" if first_ms is not None else ""
    return CheckStep(
        name, True, _ms(start), f"answered {text!r} (finish: {finish or 'none'}{first}); {reported}"
    )


async def _check(
    provider_id: int, name: str, target: UpstreamTarget, candidates: list[tuple[str, str]]
) -> ConnectionCheck:
    listed, ids = await _list_step(target)
    steps = [listed]
    known = candidates or [(model_id, Model.Api.CHAT) for model_id in ids[:1]]
    if known:
        steps.append(await _reply_step(target, *known[0]))
    else:
        steps.append(CheckStep("one-token reply", False, 0, "no model to try: add one or import them first"))
    return ConnectionCheck(provider_id, name, target.base_url, tuple(steps), tuple(ids))


async def _check_all(
    jobs: list[tuple[int, str, UpstreamTarget, list[tuple[str, str]]]],
) -> list[ConnectionCheck]:
    try:
        return list(await asyncio.gather(*(_check(*job) for job in jobs)))
    finally:
        await client.close_client()  # this loop is ours alone (force_new_loop): close its pool with it


def provider_test_connections(*, providers: Iterable[Provider]) -> list[ConnectionCheck]:
    """Test each provider concurrently: GET /models, then a streamed one-token reply, with latencies.

    Runs from sync code (admin views) in an event loop of its own. Changes only each provider's
    `unreachable_at` (what the model picker flags): set when no connection opened, cleared when one did.
    Pass providers with `models` prefetched.
    """
    jobs = [(p.pk, p.name, _check_target(p), _candidates(p)) for p in providers]
    checks = async_to_sync(_check_all, force_new_loop=True)(jobs)
    provider_reachability(
        unreachable=[c.provider_id for c in checks if c.unreachable],
        reachable=[c.provider_id for c in checks if not c.unreachable],
    )
    return checks


def provider_reachability(*, unreachable: Iterable[int] = (), reachable: Iterable[int] = ()) -> None:
    """Record what a check found: providers chatweb could not connect to, and ones it could."""
    if unreachable := list(unreachable):
        Provider.objects.filter(pk__in=unreachable).update(unreachable_at=timezone.now())
    if reachable := list(reachable):
        Provider.objects.filter(pk__in=reachable, unreachable_at__isnull=False).update(unreachable_at=None)


async def _list_models(target: UpstreamTarget) -> list[dict[str, Any]]:
    try:
        return await client.list_models(target)
    finally:
        await client.close_client()


def _context_length(item: dict[str, Any]) -> int | None:
    for key in CONTEXT_KEYS:
        value = item.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


def provider_import_models(
    *, provider: Provider, actor: User | None, source: str = SOURCE_ADMIN
) -> ImportResult:
    """Add the upstream's models chatweb does not know yet: disabled and unpriced until an admin prices them.

    Raises UpstreamError when the upstream's /models cannot be read.
    """
    try:
        items = async_to_sync(_list_models, force_new_loop=True)(_check_target(provider))
    except UpstreamError as err:
        if err.code == ErrorCode.UPSTREAM_UNREACHABLE:
            provider_reachability(unreachable=[provider.pk])
        raise
    provider_reachability(reachable=[provider.pk])
    result = ImportResult()
    listed: dict[str, dict[str, Any]] = {}
    for item in items:
        model_id = item.get("id")
        if isinstance(model_id, str) and model_id.strip() and len(model_id) <= 255:
            listed.setdefault(model_id, item)
        else:
            result.skipped.append(str(model_id)[:80])
    with transaction.atomic():
        known = set(Model.objects.filter(provider=provider).values_list("upstream_id", flat=True))
        # The default public name, as Model.save() would give it (bulk_create does not call save()).
        public = {model_id: f"{provider.name}/{model_id}" for model_id in listed if model_id not in known}
        taken = set(
            Model.objects.filter(public_name__in=public.values()).values_list("public_name", flat=True)
        )
        new = []
        for model_id in listed:
            if model_id in known:
                result.existing.append(model_id)
            elif public[model_id] in taken or len(public[model_id]) > 320:
                result.skipped.append(model_id)
            else:
                new.append(
                    Model(
                        provider=provider,
                        upstream_id=model_id,
                        public_name=public[model_id],
                        enabled=False,
                        context_length=_context_length(listed[model_id]),
                    )
                )
        Model.objects.bulk_create(new)
        audit_record_many(actor=actor, action=IMPORTED, objs=new, source=source)
    result.created = [m.upstream_id for m in new]
    return result
