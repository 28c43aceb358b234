"""The provider's own cost of each reply, asked right after it (OpenRouter's generation endpoint, here the
development upstream's over real HTTP) when the provider is set to, and recorded beside the billed cost."""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request
from decimal import Decimal

import pytest
from channels.db import database_sync_to_async
from django.test import AsyncClient

from conversations.accounts.apikeys import api_key_create
from conversations.catalog.targets import upstream_target
from conversations.chat import generation
from conversations.models import Provider, ProviderCharge, UsageRecord
from conversations.usage import provider_cost
from tests.chat_helpers import chat_send, connect, make_model, send, until

db = database_sync_to_async
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("upstream_http")]


async def chat_reply(user, model) -> UsageRecord:
    ws = await connect(user)
    await send(ws, chat_send(model.public_name))
    started, _ = await until(ws, "chat.started")
    done, _ = await until(ws, "chat.done")
    assert done["status"] == "complete"
    await generation.wait_for_replies()
    await provider_cost.wait_for_cost_lookups()
    await ws.disconnect()
    return await db(UsageRecord.objects.get)(message_id=started["message_id"])


def generation_of(base_url: str, response_id: str, key: str = "") -> dict:
    request = urllib.request.Request(f"{base_url}/generation?id={response_id}",
                                     headers={"Authorization": f"Bearer {key}"} if key else {})
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.loads(response.read())["data"]


async def test_a_reply_is_reconciled_right_after_it_when_the_provider_is_set_to(alice, dev_upstream, nonce):
    base = dev_upstream.v1(key=nonce, tokens=10, charge_factor=1.1, require_key="sk-or-test")
    model = await db(make_model)(base, name="openrouter", cost_lookup=True, api_key="sk-or-test")
    row = await chat_reply(alice, model)
    account = await database_sync_to_async(generation_of)(base, row.upstream_request_id, "sk-or-test")
    assert account["id"] == row.upstream_request_id and account["tokens_completion"] == row.completion_tokens
    assert account["tokens_prompt"] == row.prompt_tokens
    # The billed cost stays; the provider's (10 % more, switch charge_factor) is beside it, as the CSV import does.
    billed = (row.prompt_tokens * Decimal("0.5") + row.completion_tokens * Decimal("1.5")) / 1_000_000
    assert row.estimated_cost == billed.quantize(Decimal("1E-10")) and row.cost_source == "reconciled"
    assert row.reconciled_cost == Decimal(str(account["total_cost"])).quantize(Decimal("1E-10"))
    assert abs(row.reconciled_cost - billed * Decimal("1.1")) < Decimal("1E-9")
    charge = await db(ProviderCharge.objects.get)(provider_name="openrouter", request_id=row.upstream_request_id)
    assert charge.record_id == row.pk and charge.cost == row.reconciled_cost


async def test_off_by_default(alice, dev_upstream, nonce):
    model = await db(make_model)(dev_upstream.v1(key=nonce, tokens=10))
    assert not (await db(Provider.objects.get)(pk=model.provider_id)).cost_lookup
    row = await chat_reply(alice, model)
    assert row.reconciled_cost is None and row.cost_source == "price"
    assert not await db(ProviderCharge.objects.exists)()


async def test_an_api_call_is_reconciled_too(alice, dev_upstream, nonce):
    await db(make_model)(dev_upstream.v1(key=nonce, tokens=10), name="openrouter", cost_lookup=True)
    _, raw = await db(api_key_create)(user=alice, name="tests")
    response = await AsyncClient().post(
        "/v1/chat/completions", data=json.dumps({"model": "openrouter/dev-chat", "messages": [
            {"role": "user", "content": "hi"}]}),
        content_type="application/json", headers={"Authorization": f"Bearer {raw}"},
    )
    assert response.status_code == 200
    await provider_cost.wait_for_cost_lookups()
    row = await db(UsageRecord.objects.get)(source="api")
    assert row.upstream_request_id.startswith("chatcmpl-")  # the upstream's id (chatweb answers with its own)
    assert row.cost_source == "reconciled" and row.reconciled_cost == row.estimated_cost  # charge_factor 1


async def test_a_failed_lookup_is_logged_without_the_key_and_changes_nothing(
    alice, dev_upstream, nonce, caplog, monkeypatch
):
    monkeypatch.setattr(provider_cost, "RETRY_PAUSES", (0.01, 0.01))
    model = await db(make_model)(dev_upstream.v1(key=nonce, require_key="sk-secret-1"), name="openrouter",
                                 cost_lookup=True, api_key="sk-secret-1")
    target = upstream_target(await db(Provider.objects.get)(pk=model.provider_id))
    with caplog.at_level(logging.WARNING):
        found = await provider_cost.provider_cost_lookup(target=target, provider="openrouter", response_id="gen-nope")
    assert found is None
    assert "cost lookup for openrouter reply gen-nope failed" in caplog.text and "sk-secret-1" not in caplog.text
    wrong_key = upstream_target(Provider(base_url=model.provider.base_url, api_key="sk-wrong-2"))
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        assert await provider_cost.provider_cost_lookup(
            target=wrong_key, provider="openrouter", response_id="gen-nope") is None
    assert "upstream_auth" in caplog.text and "sk-wrong-2" not in caplog.text
    assert not await db(ProviderCharge.objects.exists)()
    with pytest.raises(urllib.error.HTTPError) as unknown:
        await database_sync_to_async(generation_of)(model.provider.base_url, "gen-nope", "sk-secret-1")
    assert unknown.value.code == 404
