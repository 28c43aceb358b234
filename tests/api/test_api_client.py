"""The official `openai` client (sync and async) against a live Daphne serving /v1/, dev upstream behind."""

from __future__ import annotations

import time
from decimal import Decimal

import httpx
import openai
import pytest
from asgiref.sync import sync_to_async

from conversations.accounts.apikeys import api_key_revoke
from conversations.models import BudgetReservation, Model, Provider, UsageRecord, User
from tests.api.test_api import HELLO, ApiWorld, make_provider
from tests.api.test_api import world as world

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def client(world: ApiWorld, live_server) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{live_server.url}/v1", api_key=world.raw, max_retries=0, timeout=30)


@pytest.fixture
def aclient(world: ApiWorld, live_server) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{live_server.url}/v1", api_key=world.raw, max_retries=0, timeout=30)


def wait_for_record(timeout: float = 10, **filters) -> UsageRecord:
    """The ledger row the server writes as the call ends (a moment after a client hung up)."""
    deadline = time.monotonic() + timeout
    while True:
        record = UsageRecord.objects.filter(**filters).first()
        if record is not None or time.monotonic() > deadline:
            assert record is not None, f"no usage record matching {filters}"
            return record
        time.sleep(0.05)


def wait_for_records(count: int, timeout: float = 10) -> list[UsageRecord]:
    """The ledger once it holds `count` rows: a stream's row is written just after its [DONE], with the numbers
    its usage chunk gave (conversations/api/relay.py)."""
    deadline = time.monotonic() + timeout
    while len(records := list(UsageRecord.objects.order_by("id"))) < count:
        assert time.monotonic() < deadline, f"{len(records)} usage records, not {count}"
        time.sleep(0.02)
    assert len(records) == count
    return records


def test_list_and_retrieve_models(client):
    ids = [m.id for m in client.models.list()]
    assert ids == ["auto", "dev/dev-chat", "dev/dev-complete", "dev/dev-reasoner"]
    assert client.models.retrieve("dev/dev-chat").owned_by == "dev"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("dev/nothing")


def test_chat_whole(client, world):
    reply = client.chat.completions.create(model="dev/dev-chat", messages=HELLO, max_tokens=20)
    assert reply.object == "chat.completion" and reply.id.startswith("chatcmpl-")
    assert reply.model == "dev/dev-chat"
    assert reply.choices[0].message.role == "assistant" and reply.choices[0].message.content
    assert reply.choices[0].finish_reason in ("stop", "length")
    record = UsageRecord.objects.get()
    assert (record.source, record.api_key_id, record.user_id) == ("api", world.key.pk, world.key.user_id)
    assert reply.usage.prompt_tokens == record.prompt_tokens
    assert reply.usage.completion_tokens == record.completion_tokens
    assert Decimal(str(reply.usage.model_extra["estimated_cost"])) == record.estimated_cost


def test_chat_streamed_usage_chunk_only_when_asked(client):
    chunks = list(
        client.chat.completions.create(model="dev/dev-chat", messages=HELLO, max_tokens=25, stream=True)
    )
    assert chunks and all(c.choices for c in chunks) and all(c.usage is None for c in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks)
    assert chunks[-1].choices[0].finish_reason in ("stop", "length")

    chunks = list(
        client.chat.completions.create(
            model="dev/dev-chat",
            messages=HELLO,
            max_tokens=25,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    last = chunks[-1]
    assert (
        last.choices == []
        and last.usage.total_tokens == last.usage.prompt_tokens + last.usage.completion_tokens
    )
    assert last.usage.model_extra["estimated_cost"] > 0
    record = wait_for_records(2)[-1]
    assert last.usage.completion_tokens == record.completion_tokens and record.usage_estimated is False
    assert Decimal(str(last.usage.model_extra["estimated_cost"])) == record.estimated_cost


def test_reasoning_content_reaches_the_client(client):
    reply = client.chat.completions.create(model="dev/dev-reasoner", messages=HELLO, max_tokens=60)
    assert reply.choices[0].message.model_extra["reasoning_content"]
    chunks = list(
        client.chat.completions.create(model="dev/dev-reasoner", messages=HELLO, max_tokens=60, stream=True)
    )
    assert any((c.choices[0].delta.model_extra or {}).get("reasoning_content") for c in chunks if c.choices)
    # A stream without a usage chunk is recorded just after [DONE]: wait for it, so that this test's end (the
    # tables truncated) never races the server's ledger write (a deadlock on PostgreSQL, seen once in CI).
    assert [r.model_name for r in wait_for_records(2)] == ["dev/dev-reasoner"] * 2


def test_completions_whole_and_streamed(client):
    whole = client.completions.create(model="dev/dev-complete", prompt="Once upon a time", max_tokens=15)
    assert whole.object == "text_completion" and whole.choices[0].text and whole.usage.completion_tokens <= 15
    chunks = list(
        client.completions.create(
            model="dev/dev-complete",
            prompt="Once upon a time",
            max_tokens=15,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert "".join(c.choices[0].text for c in chunks if c.choices) == whole.choices[0].text
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == whole.usage.completion_tokens
    assert wait_for_records(2)[-1].completion_tokens == whole.usage.completion_tokens


def test_auto_names_the_model_that_answered(client, live_server, world):
    assert client.chat.completions.create(model="auto", messages=HELLO, max_tokens=5).model == "dev/dev-chat"
    # `model` left out altogether (the openai client always sends one, so plain HTTP here).
    response = httpx.post(
        f"{live_server.url}/v1/chat/completions",
        json={"messages": HELLO, "max_tokens": 5},
        headers=world.auth,
    )
    assert response.status_code == 200 and response.json()["model"] == "dev/dev-chat"
    assert set(UsageRecord.objects.values_list("model_name", flat=True)) == {"dev/dev-chat"}


def test_errors_are_the_clients_own_exceptions(client, live_server, world):
    bad_key = openai.OpenAI(base_url=f"{live_server.url}/v1", api_key="cw-not-a-real-key", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as caught:
        bad_key.chat.completions.create(model="dev/dev-chat", messages=HELLO)
    assert caught.value.code == "invalid_api_key"

    with pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.create(model="dev/no-such-model", messages=HELLO)
    assert caught.value.code == "model_not_found"

    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="dev/dev-chat", messages=HELLO, temperature=5)
    assert caught.value.param == "temperature" and caught.value.type == "invalid_request_error"

    User.objects.filter(pk=world.key.user_id).update(monthly_budget=Decimal("0.00001"))
    with pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(model="dev/dev-chat", messages=HELLO, stream=True)
    assert (caught.value.type, caught.value.code) == ("insufficient_quota", "budget_exceeded")
    assert UsageRecord.objects.count() == 0

    api_key_revoke(user=world.key.user, key_id=world.key.pk)
    with pytest.raises(openai.AuthenticationError):
        client.models.list()


def test_upstream_failure_is_a_5xx_the_client_does_not_retry(live_server, world, dev_upstream, nonce):
    provider = make_provider(dev_upstream, "down", fail=503, key=nonce + "down")
    Model.objects.create(provider=provider, upstream_id="dev-chat")
    retrying = openai.OpenAI(base_url=f"{live_server.url}/v1", api_key=world.raw, max_retries=2)
    with pytest.raises(openai.InternalServerError) as caught:
        retrying.chat.completions.create(model="down/dev-chat", messages=HELLO)
    assert caught.value.status_code == 502 and caught.value.code == "upstream_unavailable"
    assert dev_upstream.stats(nonce + "down")["requests"] == 1  # x-should-retry: false


def test_disconnect_mid_stream_cancels_upstream_and_is_recorded(live_server, world, dev_upstream, nonce):
    User.objects.filter(pk=world.key.user_id).update(monthly_budget=Decimal(10))
    key = nonce + "slow"
    provider = make_provider(dev_upstream, "slow", delay=0.05, tokens=400, key=key)
    Model.objects.create(
        provider=provider, upstream_id="dev-chat", input_price=Decimal(1), output_price=Decimal(2)
    )
    client = openai.OpenAI(base_url=f"{live_server.url}/v1", api_key=world.raw, max_retries=0)
    stream = client.chat.completions.create(model="slow/dev-chat", messages=HELLO, stream=True)
    received = ""
    for chunk in stream:
        received += chunk.choices[0].delta.content or ""
        if len(received) > 20:
            break
    stream.close()

    stats = dev_upstream.wait_for(key, disconnected=1, timeout=10)
    assert stats["disconnected"] == 1 and stats["completed"] == 0
    record = wait_for_record(model_name="slow/dev-chat")
    assert record.finish_reason == "stopped" and record.usage_estimated is True
    assert 0 < record.completion_tokens < 400 and record.estimated_cost > 0
    assert BudgetReservation.objects.count() == 0


def test_disconnect_before_the_first_token(live_server, world, dev_upstream, nonce):
    key = nonce + "think"
    provider = make_provider(dev_upstream, "think", first_delay=3, key=key)
    Model.objects.create(
        provider=provider, upstream_id="dev-chat", input_price=Decimal(1), output_price=Decimal(2)
    )
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(
            f"{live_server.url}/v1/chat/completions",
            headers=world.auth,
            timeout=httpx.Timeout(5, read=0.5),
            json={"model": "think/dev-chat", "messages": HELLO, "stream": True},
        )
    assert dev_upstream.wait_for(key, disconnected=1, timeout=10)["disconnected"] == 1
    record = wait_for_record(model_name="think/dev-chat")
    assert record.finish_reason == "stopped" and record.completion_tokens == 0


async def test_async_client(aclient, world):
    reply = await aclient.chat.completions.create(model="dev/dev-chat", messages=HELLO, max_tokens=10)
    assert reply.choices[0].message.content
    stream = await aclient.chat.completions.create(
        model="dev/dev-chat",
        messages=HELLO,
        max_tokens=10,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [chunk async for chunk in stream]
    assert chunks[-1].usage is not None and chunks[-1].choices == []
    text = await aclient.completions.create(model="dev/dev-complete", prompt="Hello", max_tokens=5)
    assert text.choices[0].text
    with pytest.raises(openai.NotFoundError):
        await aclient.chat.completions.create(model="nope", messages=HELLO)
    records = await sync_to_async(wait_for_records)(3)
    assert {r.api_key_id for r in records} == {world.key.pk}
    await sync_to_async(Provider.objects.filter(pk=world.provider.pk).update)(enabled=False)
    with pytest.raises(openai.NotFoundError):
        await aclient.chat.completions.create(model="dev/dev-chat", messages=HELLO)
