"""Partial and failed replies on the ledger: billed for what was produced, marked, exported, and reconciled."""

from __future__ import annotations

import asyncio
import csv
import io

import pytest
from channels.db import database_sync_to_async
from django.core.management import call_command

from conversations.chat import generation
from conversations.models import UsageRecord
from tests.chat_helpers import chat_send, connect, make_model, send, until

db = database_sync_to_async
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("upstream_http")]


async def reply_row(
    user, base_url: str, *, stop_after_delta: bool = False, provider: str = "dev"
) -> tuple[dict, UsageRecord]:
    """Send one message to the upstream at `base_url` (a new provider's model; stopped after its first delta when
    asked) and return `chat.done` with the reply's ledger row."""
    model = await db(make_model)(base_url, name=provider)
    ws = await connect(user)
    await send(ws, chat_send(model.public_name))
    started, _ = await until(ws, "chat.started")
    if stop_after_delta:
        await until(ws, "chat.delta")
        await asyncio.sleep(0.1)
        await send(ws, {"type": "chat.stop", "message_id": started["message_id"]})
    done, _ = await until(ws, "chat.done")
    await generation.wait_for_replies()
    await ws.disconnect()
    return done, await db(UsageRecord.objects.get)(message_id=started["message_id"])


async def test_a_complete_reply_is_marked_complete(alice, dev_upstream, nonce):
    done, row = await reply_row(alice, dev_upstream.v1(key=nonce, tokens=6))
    assert done["status"] == "complete"
    assert (row.outcome, row.finish_reason, row.usage_estimated) == ("complete", "stop", False)


async def test_a_stopped_reply_is_billed_for_what_was_produced_and_keeps_the_upstream_id(
    alice, dev_upstream, nonce
):
    done, row = await reply_row(alice, dev_upstream.v1(key=nonce, tokens=400, delay=0.02), stop_after_delta=True)
    assert done["status"] == "stopped"
    assert row.outcome == "stopped" and row.finish_reason == "stopped"
    # No usage came (the stream was closed first): counted offline, marked, priced, and the id of its first chunk.
    assert row.usage_estimated and 0 < row.completion_tokens < 400 and row.estimated_cost > 0
    assert row.upstream_request_id.startswith("chatcmpl-")


async def test_a_cut_stream_is_marked_cut(alice, dev_upstream, nonce):
    done, row = await reply_row(alice, dev_upstream.v1(key=nonce, tokens=40, drop_after=5))
    assert done["status"] == "error"
    assert row.outcome == "cut" and row.completion_tokens > 0 and row.usage_estimated
    assert row.upstream_request_id.startswith("chatcmpl-")
    _, ended = await reply_row(alice, dev_upstream.v1(key=nonce + "e", tokens=40, eof_after=5), provider="dev2")
    assert ended.outcome == "cut" and ended.completion_tokens > 0


async def test_an_upstream_error_after_some_tokens_is_marked_failed(alice, dev_upstream, nonce):
    done, row = await reply_row(alice, dev_upstream.v1(key=nonce, tokens=40, error_after=5))
    assert done["status"] == "error"
    assert row.outcome == "failed" and row.finish_reason == "error"
    assert row.completion_tokens > 0 and row.estimated_cost > 0  # what it produced before failing
    assert row.upstream_request_id.startswith("chatcmpl-")


async def test_an_upstream_refusal_is_failed_and_costs_nothing(alice, dev_upstream, nonce):
    _, row = await reply_row(alice, dev_upstream.v1(key=nonce, fail=400))
    assert row.outcome == "failed" and row.estimated_cost == 0


async def test_partial_rows_are_exported_and_reconcile_like_any_other(alice, client, dev_upstream, nonce, tmp_path):
    _, stopped = await reply_row(alice, dev_upstream.v1(key=nonce, tokens=400, delay=0.02), stop_after_delta=True)
    _, failed = await reply_row(alice, dev_upstream.v1(key=nonce + "f", tokens=40, error_after=5), provider="dev2")
    await db(client.force_login)(alice)
    response = await db(client.get)("/usage/export.csv")
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert {r["upstream_request_id"]: r["outcome"] for r in rows} == {
        stopped.upstream_request_id: "stopped", failed.upstream_request_id: "failed"
    }
    # Each provider's account lists its reply by the id the stream sent.
    header = "request_id,created_at,model,prompt_tokens,completion_tokens,cost\n"
    for provider, row, cost in (("dev", stopped, "0.5"), ("dev2", failed, "0.25")):
        path = tmp_path / f"{provider}.csv"
        path.write_text(header + f"{row.upstream_request_id},{row.created_at.isoformat()},dev-chat,1,1,{cost}\n")
        out = io.StringIO()
        await db(call_command)("reconcile", provider, str(path), stdout=out)
        assert out.getvalue().strip().splitlines()[-1].startswith("matched 1, only in file 0, only in ledger 0")
    reconciled = await db(lambda: dict(UsageRecord.objects.values_list("outcome", "reconciled_cost")))()
    assert {k: str(v) for k, v in reconciled.items()} == {"stopped": "0.5000000000", "failed": "0.2500000000"}
