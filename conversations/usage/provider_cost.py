"""The provider's own cost of each reply, asked right after it where the provider tells it (OpenRouter's generation
endpoint; the provider setting `cost_lookup`), recorded beside the billed cost as the account's CSV import does."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime

from django.db import transaction
from django.utils import timezone

from conversations import db
from conversations.upstream import client
from conversations.upstream.client import GenerationCost, UpstreamTarget
from conversations.upstream.errors import UpstreamError
from conversations.usage.reconcile import QUANTUM, Charge, charges_record

# OpenRouter writes a generation's stats a moment after the reply: a 404 then means "not yet", asked again after
# these pauses (seconds), then given up (the account's CSV import still reconciles the row later).
RETRY_PAUSES = (0.5, 1.5, 4.0)
log = logging.getLogger(__name__)

_tasks: set[asyncio.Task] = set()


def provider_cost_record(*, provider: str, found: GenerationCost) -> None:
    """Store the provider's figure of one reply and set it on the matching ledger row (`reconciled_cost`, source
    `reconciled`; the billed cost stays), exactly as a CSV row with that id would."""
    try:
        created = datetime.fromisoformat(found.created_at.replace("Z", "+00:00")) if found.created_at else None
    except ValueError:
        created = None
    if created is not None and created.tzinfo is None:
        created = created.replace(tzinfo=UTC)
    charge = Charge(
        found.response_id, created or timezone.now(), found.model[:320], found.prompt_tokens,
        found.completion_tokens, found.cost.quantize(QUANTUM),
    )
    with transaction.atomic():
        charges_record(provider=provider, charges=[charge])


async def provider_cost_lookup(*, target: UpstreamTarget, provider: str, response_id: str) -> GenerationCost | None:
    """Ask the provider what the reply cost and record it; None when it could not say. Never raises: a lookup that
    fails is logged (the provider and the reply's id, never a key) and the reply is not affected."""
    for attempt, pause in enumerate((0.0, *RETRY_PAUSES)):
        if pause:
            await asyncio.sleep(pause)
        try:
            found = await client.generation_cost(target, response_id)
        except UpstreamError as err:
            if err.status == 404 and attempt < len(RETRY_PAUSES):
                continue  # not written yet
            log.warning("cost lookup for %s reply %s failed: %s (%s)", provider, response_id, err.code, err.message)
            return None
        except Exception:  # a bug here must never reach the reply
            log.exception("cost lookup for %s reply %s failed", provider, response_id)
            return None
        try:
            await db.chat.run(provider_cost_record, provider=provider, found=found)
        except Exception:
            log.exception("recording the cost of %s reply %s failed", provider, response_id)
            return None
        return found
    return None


def provider_cost_after_reply(*, target: UpstreamTarget, provider: str, response_id: str | None) -> None:
    """Start the lookup in the background when the provider is set to be asked and the reply has an id; returns at
    once (the reply's `chat.done` / the API's answer never waits for it)."""
    if not target.cost_lookup or not response_id:
        return
    task = asyncio.get_running_loop().create_task(
        provider_cost_lookup(target=target, provider=provider, response_id=response_id)
    )
    _tasks.add(task)
    task.add_done_callback(_tasks.discard)


async def wait_for_cost_lookups(seconds: float = 30) -> None:
    """Wait for this process's lookups (tests)."""
    if _tasks:
        await asyncio.wait_for(asyncio.gather(*_tasks, return_exceptions=True), seconds)
