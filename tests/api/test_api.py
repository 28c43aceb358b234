"""The /v1/ API in-process (Django's AsyncClient) against the dev upstream over real HTTP: shapes, errors."""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from decimal import Decimal
from io import StringIO
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth.models import Group
from django.core.management import CommandError, call_command
from django.db import connections
from django.test import AsyncClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conversations.accounts import throttle
from conversations.accounts.apikeys import api_key_create, api_key_revoke
from conversations.api import auth as api_auth
from conversations.api import relay
from conversations.api.auth import SlidingWindow, bearer_token
from conversations.api.encoding import ChunkEncoder, finish_reason, usage_json
from conversations.api.errors import ApiError
from conversations.api.parsing import MAX_BODY_BYTES, json_body, parse_request
from conversations.api.relay import api_call_admit
from conversations.api.routing import auto_pick
from conversations.models import ApiKey, BudgetReservation, Model, Provider, UsageRecord
from conversations.upstream.events import ContentDelta, Finish

HELLO = [{"role": "user", "content": "Say hello to the API."}]


@pytest.fixture(autouse=True)
async def _close_thread_connections() -> AsyncIterator[None]:
    """The async ORM calls of a test run in asgiref's shared thread: close its connection afterwards."""
    yield
    await sync_to_async(connections.close_all)()


# --- fixtures shared with test_api_client.py ----------


@dataclass
class ApiWorld:
    """A provider on the dev upstream, its three models, and a key of alice."""

    provider: Provider
    chat: Model
    reasoner: Model
    complete: Model
    key: ApiKey
    raw: str
    nonce: str

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.raw}"}


def make_provider(upstream: Any, name: str, **switches: Any) -> Provider:
    return Provider.objects.create(
        name=name,
        base_url=upstream.v1(**switches),
        max_retries=0,
        first_token_timeout=5,
        read_timeout=5,
    )


def make_models(provider: Provider) -> tuple[Model, Model, Model]:
    chat = Model.objects.create(
        provider=provider,
        upstream_id="dev-chat",
        input_price=Decimal("0.50"),
        output_price=Decimal("1.50"),
        context_length=32768,
        max_output_tokens=1024,
    )
    reasoner = Model.objects.create(
        provider=provider,
        upstream_id="dev-reasoner",
        input_price=Decimal("1.00"),
        output_price=Decimal("3.00"),
        context_length=32768,
        max_output_tokens=1024,
    )
    complete = Model.objects.create(
        provider=provider,
        upstream_id="dev-complete",
        api=Model.Api.COMPLETIONS,
        input_price=Decimal("0.20"),
        output_price=Decimal("0.60"),
        context_length=8192,
        max_output_tokens=1024,
    )
    return chat, reasoner, complete


@pytest.fixture
def world(transactional_db, dev_upstream, nonce, alice) -> ApiWorld:
    provider = make_provider(dev_upstream, "dev", key=nonce)
    chat, reasoner, complete = make_models(provider)
    key, raw = api_key_create(user=alice, name="tests")
    throttle.clear(throttle.API_ADDRESS, "127.0.0.1")  # the test client's address: no failures carried over
    return ApiWorld(provider, chat, reasoner, complete, key, raw, nonce)


def sse_events(body: bytes) -> list[str]:
    """The `data:` payloads of an SSE body, checking the framing on the way."""
    text = body.decode()
    assert text.endswith("\n\n")
    out = []
    for block in text.split("\n\n")[:-1]:
        assert block.startswith("data: "), block
        out.append(block[len("data: ") :])
    return out


async def post(client: AsyncClient, path: str, body: Any, headers: dict[str, str]) -> Any:
    data = body if isinstance(body, bytes | str) else json.dumps(body)
    return await client.post(path, data=data, content_type="application/json", headers=headers)


async def streamed(response: Any) -> bytes:
    return b"".join([part async for part in response.streaming_content])


def assert_error(response: Any, status: int, code: str | None = None, param: str | None = None) -> dict:
    assert response.status_code == status, response.content[:500]
    assert response["Content-Type"] == "application/json"
    body = json.loads(response.content)
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    if code is not None:
        assert body["error"]["code"] == code
    if param is not None:
        assert body["error"]["param"] == param
    return body["error"]


# --- pure parts ----------


def test_bearer_token_parsing():
    assert bearer_token("Bearer cw-abc") == "cw-abc"
    assert bearer_token("bearer   cw-abc ") == "cw-abc"
    assert bearer_token("Basic abc") is None
    assert bearer_token("Bearer") is None
    assert bearer_token("") is None
    assert bearer_token(None) is None


def test_sliding_window_counts_the_last_minute_only():
    window = SlidingWindow(window=60)
    assert window.admit(1, 2, now=0) is None
    assert window.admit(1, 2, now=10) is None
    assert window.admit(1, 2, now=20) == pytest.approx(40)  # the first hit leaves the window at 60
    assert window.admit(2, 2, now=20) is None  # per key
    assert window.admit(1, 2, now=60.5) is None
    assert window.admit(1, 2, now=61) == pytest.approx(9)


def test_usage_json_writes_the_cost_as_an_exact_number():
    text = usage_json(
        {
            "prompt_tokens": 15,
            "completion_tokens": 16,
            "total_tokens": 31,
            "estimated_cost": Decimal("0.0000268000"),
        }
    )
    assert text == '{"prompt_tokens":15,"completion_tokens":16,"total_tokens":31,"estimated_cost":0.0000268}'
    assert json.loads(text, parse_float=Decimal)["estimated_cost"] == Decimal("0.0000268")
    assert json.loads(usage_json({"estimated_cost": Decimal(0)})) == {"estimated_cost": 0}


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("stop", "stop"),
        ("length", "length"),
        ("eos", "stop"),
        ("max_tokens", "length"),
        ("tool_use", "tool_calls"),
        ("", "stop"),
        ("weird", "stop"),
        ("content_filter", "content_filter"),
    ],
)
def test_finish_reasons_are_openais(raw, expected):
    assert finish_reason(raw) == expected


def test_chunks_are_valid_json_even_with_a_lone_surrogate():
    encoder = ChunkEncoder("chat", "dev/dev-chat", include_usage=False)
    first = encoder.encode(ContentDelta("Hi \ud800 there"))
    again = encoder.encode(ContentDelta("more"))
    done = encoder.encode(Finish("eos"))
    for chunk in (first, again, done):
        assert chunk.startswith(b"data: ") and chunk.endswith(b"\n\n")
        chunk.decode("utf-8")  # valid UTF-8
    assert json.loads(first[6:])["choices"][0]["delta"] == {"role": "assistant", "content": "Hi \ud800 there"}
    assert json.loads(again[6:])["choices"][0]["delta"] == {"content": "more"}
    assert json.loads(done[6:])["choices"][0]["finish_reason"] == "stop"


def _model(name: str, inp: str | None, out: str | None, ctx: int | None = None) -> Model:
    return Model(
        public_name=name,
        input_price=Decimal(inp) if inp else None,
        output_price=Decimal(out) if out else None,
        context_length=ctx,
        max_output_tokens=100,
    )


def test_auto_rule():
    cheap = _model("b-cheap", "0.1", "0.2", ctx=1000)
    dear = _model("a-dear", "5", "15", ctx=100_000)
    free = _model("c-unpriced", None, None)
    assert auto_pick([dear, cheap, free], prompt_tokens=10, max_tokens=None) is cheap
    # The prompt no longer fits the cheap one's context: the next priced one.
    assert auto_pick([dear, cheap, free], prompt_tokens=950, max_tokens=100) is dear
    # The staff default wins when it fits.
    assert auto_pick([dear, cheap, free], prompt_tokens=10, max_tokens=None, default="a-dear") is dear
    assert auto_pick([dear, cheap, free], prompt_tokens=10, max_tokens=None, default="gone") is cheap
    # Nothing priced: the first unpriced by name; nothing at all: None.
    assert auto_pick([free], prompt_tokens=10, max_tokens=None) is free
    assert auto_pick([], prompt_tokens=10, max_tokens=None) is None


# --- malformed bodies: always a 4xx in OpenAI's shape, never a 500 ----------

MALFORMED = [
    # (endpoint, raw body, status, code, param)
    ("chat/completions", b"", 400, None, None),
    ("chat/completions", b"{not json", 400, None, None),
    ("chat/completions", b"\xff\xfe\x00", 400, None, None),
    ("chat/completions", b"[1, 2]", 400, None, None),
    ("chat/completions", b"null", 400, None, None),
    ("chat/completions", b"[" * 100_000 + b"]" * 100_000, 400, None, None),
    ("chat/completions", {"model": 7, "messages": HELLO}, 400, None, "model"),
    ("chat/completions", {"model": "x" * 1000, "messages": HELLO}, 400, None, "model"),
    ("chat/completions", {"model": "dev/dev-chat"}, 400, None, "messages"),
    ("chat/completions", {"messages": "hello"}, 400, None, "messages"),
    ("chat/completions", {"messages": []}, 400, None, "messages"),
    ("chat/completions", {"messages": ["hello"]}, 400, None, "messages[0]"),
    ("chat/completions", {"messages": [{"role": "wizard", "content": "hi"}]}, 400, None, "messages[0].role"),
    ("chat/completions", {"messages": [{"role": "user", "content": 5}]}, 400, None, "messages[0].content"),
    ("chat/completions", {"messages": [{"role": "user"}]}, 400, None, "messages[0].content"),
    ("chat/completions", {"messages": [{"role": "user", "content": [1]}]}, 400, None, "messages[0].content"),
    ("chat/completions", {"messages": HELLO, "temperature": "hot"}, 400, None, "temperature"),
    ("chat/completions", {"messages": HELLO, "temperature": 9}, 400, None, "temperature"),
    ("chat/completions", {"messages": HELLO, "temperature": True}, 400, None, "temperature"),
    ("chat/completions", {"messages": HELLO, "max_tokens": 0}, 400, None, "max_tokens"),
    (
        "chat/completions",
        {"messages": HELLO, "max_completion_tokens": -1},
        400,
        None,
        "max_completion_tokens",
    ),
    ("chat/completions", {"messages": HELLO, "n": 99}, 400, None, "n"),
    ("chat/completions", {"messages": HELLO, "stop": ["a", "b", "c", "d", "e"]}, 400, None, "stop"),
    ("chat/completions", {"messages": HELLO, "logit_bias": {"x": 1}}, 400, None, "logit_bias"),
    ("chat/completions", {"messages": HELLO, "stream": "yes"}, 400, None, "stream"),
    (
        "chat/completions",
        {"messages": HELLO, "stream": True, "stream_options": 3},
        400,
        None,
        "stream_options",
    ),
    (
        "chat/completions",
        {"messages": HELLO, "stream": True, "stream_options": {"include_usage": "y"}},
        400,
        None,
        "stream_options.include_usage",
    ),
    ("chat/completions", {"messages": HELLO, "frobnicate": 1}, 400, None, "frobnicate"),
    ("chat/completions", {"messages": HELLO, "logprobs": True}, 400, None, "logprobs"),
    ("chat/completions", {"messages": HELLO, "tools": {"not": "a list"}}, 400, None, "tools"),
    ("chat/completions", {"messages": HELLO, "model": "nope/nothing"}, 404, "model_not_found", "model"),
    ("chat/completions", {"messages": HELLO, "model": "dev/dev-complete", "tools": []}, 400, None, "tools"),
    ("completions", {"model": "dev/dev-complete"}, 400, None, "prompt"),
    ("completions", {"model": "dev/dev-complete", "prompt": [1, 2, 3]}, 400, None, "prompt"),
    ("completions", {"model": "dev/dev-complete", "prompt": ["a", "b"]}, 400, None, "prompt"),
    ("completions", {"model": "dev/dev-complete", "prompt": {"a": 1}}, 400, None, "prompt"),
    ("completions", {"model": "dev/dev-chat", "prompt": "Once"}, 400, None, "model"),
    (
        "completions",
        {"model": "dev/dev-complete", "prompt": "Once", "messages": HELLO},
        400,
        None,
        "messages",
    ),
    ("completions", {"model": "dev/dev-complete", "prompt": "Once", "echo": True}, 400, None, "echo"),
]


async def test_malformed_bodies_get_an_openai_error(world):
    # One test over the whole table: a transactional test's set-up costs more than all the requests together.
    client = AsyncClient()
    for endpoint, body, status, code, param in MALFORMED:
        response = await post(client, f"/v1/{endpoint}", body, world.auth)
        error = assert_error(response, status, code, param)
        if status == 400:
            assert error["type"] == "invalid_request_error", (body, error)
    assert await UsageRecord.objects.acount() == 0  # nothing reached the ledger
    assert dev_upstream_requests(world) == 0


def dev_upstream_requests(world: ApiWorld) -> int:
    import urllib.request
    from urllib.parse import urlsplit

    base = urlsplit(world.provider.base_url)
    with urllib.request.urlopen(
        f"{base.scheme}://{base.netloc}/_stats?key={world.nonce}", timeout=5
    ) as response:
        return json.loads(response.read())["requests"]


async def test_oversized_body_is_413(world):
    big = json.dumps({"messages": [{"role": "user", "content": "x" * (MAX_BODY_BYTES + 10)}]})
    response = await post(AsyncClient(), "/v1/chat/completions", big, world.auth)
    assert_error(response, 413, "request_too_large")


async def test_wrong_method_and_unknown_path(world):
    client = AsyncClient()
    response = await client.get("/v1/chat/completions", headers=world.auth)
    assert_error(response, 405)
    assert response["Allow"] == "POST"
    response = await client.post(
        "/v1/embeddings", data="{}", content_type="application/json", headers=world.auth
    )
    assert_error(response, 404)


JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=True)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)
FIELDS = [
    "model",
    "messages",
    "prompt",
    "stream",
    "stream_options",
    "temperature",
    "top_p",
    "max_tokens",
    "max_completion_tokens",
    "n",
    "stop",
    "seed",
    "logit_bias",
    "tools",
    "tool_choice",
    "user",
    "logprobs",
]
MESSAGE = st.fixed_dictionaries(
    {"role": st.sampled_from(["user", "system", "assistant", "tool", "x"]) | JSON_VALUES},
    optional={"content": JSON_VALUES | st.text(max_size=30), "name": JSON_VALUES},
)
BODIES = st.dictionaries(
    st.sampled_from(FIELDS) | st.text(max_size=8),
    JSON_VALUES | st.lists(MESSAGE, max_size=3),
    max_size=6,
)


@settings(max_examples=200, deadline=None)
@given(body=BODIES, endpoint=st.sampled_from(["chat", "completions"]))
def test_parsing_never_fails_other_than_with_a_400(body, endpoint):
    try:
        request = parse_request(endpoint, json_body(json.dumps(body).encode()))
    except ApiError as error:
        assert error.status == 400
        assert error.body()["error"]["message"]
    else:
        assert request.endpoint == endpoint


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=BODIES, endpoint=st.sampled_from(["chat", "completions"]))
def test_admission_never_fails_other_than_with_a_4xx(api_admission, body, endpoint):
    raw_key = api_admission
    try:
        call = api_call_admit(
            authorization=f"Bearer {raw_key}", endpoint=endpoint, raw_body=json.dumps(body).encode()
        )
    except ApiError as error:
        assert 400 <= error.status < 500
    else:
        assert call.model_name.startswith("dev/")


@pytest.fixture
def api_admission(db, alice) -> str:
    provider = Provider.objects.create(name="dev", base_url="http://127.0.0.1:9/v1")
    make_models(provider)
    return api_key_create(user=alice)[1]


# --- authentication, rate limit, last use ----------


async def test_missing_wrong_and_revoked_keys_are_401(world, bob):
    client = AsyncClient()
    for headers in (
        {},
        {"Authorization": "Basic abc"},
        {"Authorization": "Bearer "},
        {"Authorization": "Bearer cw-wrongwrongwrongwrong"},
        {"Authorization": "Bearer sk-openai-key"},
        {"Authorization": "Bearer " + world.raw[:-1] + ("A" if world.raw[-1] != "A" else "B")},
        {"Authorization": "Bearer " + "x" * 10_000},
    ):
        response = await post(client, "/v1/chat/completions", {"messages": HELLO}, headers)
        error = assert_error(response, 401, "invalid_api_key")
        assert world.raw not in error["message"]
        assert response["WWW-Authenticate"].startswith("Bearer")
    assert (await client.get("/v1/models", headers=world.auth)).status_code == 200  # its objects now cached
    await api_key_revoke_async(world)
    response = await client.get("/v1/models", headers=world.auth)
    assert "revoked" in assert_error(response, 401, "invalid_api_key")["message"]


async def test_wrong_keys_are_throttled_per_address(world, settings):
    settings.CHATWEB_THROTTLE_ADDRESS_FAILURES = 4  # two free failures, then a pause, then the lock
    client = AsyncClient()
    wrong = {"Authorization": "Bearer cw-wrongwrongwrongwrong"}
    for _ in range(2):
        assert_error(await client.get("/v1/models", headers=wrong), 401, "invalid_api_key")
    assert (await client.get("/v1/models", headers=world.auth)).status_code == 200  # not blocked yet
    assert_error(await client.get("/v1/models", headers=wrong), 401, "invalid_api_key")  # now paused
    response = await client.get("/v1/models", headers=world.auth)  # even a right key waits out the pause
    error = assert_error(response, 429, "too_many_failed_keys")
    assert error["type"] == "rate_limit_error" and int(response["Retry-After"]) >= 1
    assert response["x-should-retry"] == "false"
    response = await post(client, "/v1/chat/completions", {"messages": HELLO}, world.auth)
    assert_error(response, 429, "too_many_failed_keys")
    # Another address is not affected; missing keys do not count as guesses.
    other = await sync_to_async(api_auth.api_key_authenticate)(f"Bearer {world.raw}", address="192.0.2.7")
    assert other.pk == world.key.pk
    throttle.clear(throttle.API_ADDRESS, "127.0.0.1")
    for _ in range(5):
        assert_error(await client.get("/v1/models"), 401, "invalid_api_key")
    assert (await client.get("/v1/models", headers=world.auth)).status_code == 200


async def api_key_revoke_async(world: ApiWorld) -> None:
    await sync_to_async(api_key_revoke)(user=world.key.user, key_id=world.key.pk)


async def test_a_disabled_account_cannot_use_its_key(world):
    """At once, though the key and its user were just used (their objects are cached per row, never stale)."""
    users = type(world.key.user).objects.filter(pk=world.key.user_id)
    assert (await AsyncClient().get("/v1/models", headers=world.auth)).status_code == 200
    await users.aupdate(is_active=False)
    assert_error(await AsyncClient().get("/v1/models", headers=world.auth), 401, "invalid_api_key")
    await users.aupdate(is_active=True)
    assert (await AsyncClient().get("/v1/models", headers=world.auth)).status_code == 200


async def test_rpm_limit(world):
    await ApiKey.objects.filter(pk=world.key.pk).aupdate(rpm_limit=2)
    api_auth._window._hits.pop(world.key.pk, None)
    client = AsyncClient()
    assert (await client.get("/v1/models", headers=world.auth)).status_code == 200
    assert (await client.get("/v1/models", headers=world.auth)).status_code == 200
    response = await client.get("/v1/models", headers=world.auth)
    error = assert_error(response, 429, "rate_limit_exceeded")
    assert error["type"] == "rate_limit_error"
    assert 1 <= int(response["Retry-After"]) <= 60
    assert response["x-should-retry"] == "true"


async def test_last_used_at_is_written_at_most_once_a_minute(world):
    client = AsyncClient()
    assert (await ApiKey.objects.aget(pk=world.key.pk)).last_used_at is None
    await client.get("/v1/models", headers=world.auth)
    first = (await ApiKey.objects.aget(pk=world.key.pk)).last_used_at
    assert first is not None
    await client.get("/v1/models", headers=world.auth)
    assert (await ApiKey.objects.aget(pk=world.key.pk)).last_used_at == first


# --- models ----------


async def test_models_lists_what_the_user_may_use(world, bob):
    secret_group = await Group.objects.acreate(name="secret")
    secret = await Model.objects.acreate(provider=world.provider, upstream_id="secret-model")
    await secret.allowed_groups.aset([secret_group])
    await secret_group.user_set.aadd(bob)
    response = await AsyncClient().get("/v1/models", headers=world.auth)
    assert response.status_code == 200
    body = json.loads(response.content)
    assert body["object"] == "list"
    assert [m["id"] for m in body["data"]] == ["auto", "dev/dev-chat", "dev/dev-complete", "dev/dev-reasoner"]
    assert all(m["object"] == "model" and isinstance(m["created"], int) for m in body["data"])
    assert body["data"][1]["owned_by"] == "dev"
    # bob's group model is invisible to alice, by list, by retrieve and by use.
    assert_error(
        await AsyncClient().get("/v1/models/dev/secret-model", headers=world.auth), 404, "model_not_found"
    )
    response = await post(
        AsyncClient(), "/v1/chat/completions", {"model": "dev/secret-model", "messages": HELLO}, world.auth
    )
    assert_error(response, 404, "model_not_found")
    one = json.loads((await AsyncClient().get("/v1/models/dev/dev-chat", headers=world.auth)).content)
    assert one["id"] == "dev/dev-chat" and one["context_length"] == 32768


# --- completions, streamed and not ----------


async def test_chat_completion_whole(world, upstream_http):
    response = await post(
        AsyncClient(),
        "/v1/chat/completions",
        {"model": "dev/dev-chat", "messages": HELLO, "max_tokens": 20},
        world.auth,
    )
    assert response.status_code == 200, response.content
    assert response["Content-Type"] == "application/json"
    body = json.loads(response.content, parse_float=Decimal)
    assert body["id"].startswith("chatcmpl-")
    assert body["object"] == "chat.completion"
    assert body["model"] == "dev/dev-chat"
    choice = body["choices"][0]
    assert choice["message"]["role"] == "assistant" and choice["message"]["content"]
    assert choice["finish_reason"] in ("stop", "length")
    record = await UsageRecord.objects.aget()
    assert (
        record.source == "api" and record.api_key_id == world.key.pk and record.user_id == world.key.user_id
    )
    assert record.model_name == "dev/dev-chat" and record.provider_name == "dev"
    assert record.usage_estimated is False and record.completion_tokens <= 20
    assert record.upstream_request_id.startswith("chatcmpl-")  # the upstream's id: reconciliation matches by it
    assert record.outcome == "complete"
    usage = body["usage"]
    assert usage["prompt_tokens"] == record.prompt_tokens and usage["total_tokens"] == record.total_tokens
    assert usage["estimated_cost"] == record.estimated_cost.normalize() and usage["estimated_cost"] > 0
    assert await BudgetReservation.objects.acount() == 0


async def test_chat_completion_streamed_without_and_with_usage(world, upstream_http):
    client = AsyncClient()
    request = {"model": "dev/dev-chat", "messages": HELLO, "stream": True, "max_tokens": 30}
    response = await post(client, "/v1/chat/completions", request, world.auth)
    assert response.status_code == 200
    assert response["Content-Type"] == "text/event-stream"
    events = sse_events(await streamed(response))
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert all(c["object"] == "chat.completion.chunk" and c["model"] == "dev/dev-chat" for c in chunks)
    assert len({c["id"] for c in chunks}) == 1
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert all(c["choices"] for c in chunks), "no usage chunk unless asked"
    assert "usage" not in chunks[0]
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)
    assert text and chunks[-1]["choices"][0]["finish_reason"] in ("stop", "length")

    response = await post(
        client, "/v1/chat/completions", {**request, "stream_options": {"include_usage": True}}, world.auth
    )
    events = sse_events(await streamed(response))
    last = json.loads(events[-2], parse_float=Decimal)
    assert last["choices"] == [] and last["usage"]["total_tokens"] > 0
    assert all(json.loads(e)["usage"] is None for e in events[:-2])
    records = [r async for r in UsageRecord.objects.order_by("id")]
    assert len(records) == 2
    assert last["usage"]["estimated_cost"] == records[1].estimated_cost.normalize()
    assert last["usage"]["completion_tokens"] == records[1].completion_tokens
    ids = [r.upstream_request_id for r in records]
    assert all(i.startswith("chatcmpl-") for i in ids) and ids[0] != ids[1]


async def test_reasoning_passes_through(world, upstream_http):
    client = AsyncClient()
    body = {"model": "dev/dev-reasoner", "messages": HELLO, "max_tokens": 60}
    whole = json.loads((await post(client, "/v1/chat/completions", body, world.auth)).content)
    assert whole["choices"][0]["message"]["reasoning_content"]
    events = sse_events(
        await streamed(await post(client, "/v1/chat/completions", {**body, "stream": True}, world.auth))
    )
    deltas = [json.loads(e)["choices"][0]["delta"] for e in events[:-1]]
    assert any(d.get("reasoning_content") for d in deltas)


async def test_text_completions(world, upstream_http):
    client = AsyncClient()
    body = {"model": "dev/dev-complete", "prompt": "Once upon a time", "max_tokens": 15}
    whole = json.loads((await post(client, "/v1/completions", body, world.auth)).content)
    assert whole["object"] == "text_completion" and whole["id"].startswith("cmpl-")
    assert whole["choices"][0]["text"] and whole["usage"]["completion_tokens"] <= 15
    events = sse_events(
        await streamed(await post(client, "/v1/completions", {**body, "stream": True}, world.auth))
    )
    chunks = [json.loads(e) for e in events[:-1]]
    assert events[-1] == "[DONE]"
    assert all(c["object"] == "text_completion" for c in chunks)
    assert (
        "".join(c["choices"][0]["text"] for c in chunks) == whole["choices"][0]["text"]
    )  # the dev replies are seeded


async def test_completion_only_model_behind_the_chat_endpoint(world, upstream_http):
    body = {"model": "dev/dev-complete", "messages": HELLO, "max_tokens": 10}
    whole = json.loads((await post(AsyncClient(), "/v1/chat/completions", body, world.auth)).content)
    assert whole["object"] == "chat.completion" and whole["choices"][0]["message"]["content"]


async def test_auto_picks_the_cheapest_then_the_staff_default(world, upstream_http, settings):
    client = AsyncClient()
    for model in (None, "auto", ""):
        body = {"messages": HELLO, "max_tokens": 5} | ({"model": model} if model is not None else {})
        whole = json.loads((await post(client, "/v1/chat/completions", body, world.auth)).content)
        assert whole["model"] == "dev/dev-chat"
    whole = json.loads(
        (await post(client, "/v1/completions", {"prompt": "Hi", "max_tokens": 5}, world.auth)).content
    )
    assert whole["model"] == "dev/dev-complete"
    settings.CHATWEB_DEFAULT_MODEL = "dev/dev-reasoner"
    events = sse_events(
        await streamed(
            await post(
                client,
                "/v1/chat/completions",
                {"messages": HELLO, "max_tokens": 5, "stream": True},
                world.auth,
            )
        )
    )
    assert json.loads(events[0])["model"] == "dev/dev-reasoner"
    assert [r.model_name async for r in UsageRecord.objects.order_by("id")][-1] == "dev/dev-reasoner"


# --- budgets and upstream failures ----------


async def test_budget_refused_before_anything_goes_upstream(world, dev_upstream):
    await type(world.key.user).objects.filter(pk=world.key.user_id).aupdate(monthly_budget=Decimal("0.0001"))
    response = await post(
        AsyncClient(), "/v1/chat/completions", {"model": "dev/dev-chat", "messages": HELLO}, world.auth
    )
    error = assert_error(response, 429, "budget_exceeded")
    assert error["type"] == "insufficient_quota"
    assert response["x-should-retry"] == "false"
    assert dev_upstream.stats(world.nonce)["requests"] == 0
    assert await UsageRecord.objects.acount() == 0 and await BudgetReservation.objects.acount() == 0


async def test_budget_allows_and_settles(world, upstream_http):
    await type(world.key.user).objects.filter(pk=world.key.user_id).aupdate(monthly_budget=Decimal("5"))
    response = await post(
        AsyncClient(),
        "/v1/chat/completions",
        {"model": "dev/dev-chat", "messages": HELLO, "max_tokens": 10},
        world.auth,
    )
    assert response.status_code == 200
    assert await BudgetReservation.objects.acount() == 0 and await UsageRecord.objects.acount() == 1


async def test_a_request_abandoned_during_admission_releases_its_reservation(world):
    await type(world.key.user).objects.filter(pk=world.key.user_id).aupdate(monthly_budget=Decimal(5))
    body = json.dumps({"model": "dev/dev-chat", "messages": HELLO}).encode()
    task = asyncio.create_task(
        relay.admit(authorization=f"Bearer {world.raw}", endpoint="chat", raw_body=body)
    )
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    seen = False  # the shielded admission still takes its reservation in its thread, then it is released
    for i in range(200):
        await asyncio.sleep(0.02)
        held = await BudgetReservation.objects.acount()
        seen = seen or held > 0 or bool(relay._recording)
        if (seen or i >= 50) and not relay._recording and held == 0:  # held and released between two looks
            break
    assert await BudgetReservation.objects.acount() == 0
    # The same path, step by step: an admission that completed after its client left.
    call = await relay.admit(authorization=f"Bearer {world.raw}", endpoint="chat", raw_body=body)
    assert call.reservation_id is not None and await BudgetReservation.objects.acount() == 1
    finished = asyncio.get_running_loop().create_future()
    finished.set_result(call)
    relay._release_abandoned(finished)
    await asyncio.gather(*relay._recording)
    assert await BudgetReservation.objects.acount() == 0


UPSTREAM_FAILURES = [
    ({"fail": 503}, 502, "upstream_unavailable"),
    ({"fail": 401}, 502, "upstream_auth"),
    ({"fail": 429}, 502, "upstream_rate_limited"),
    ({"fail": 400}, 400, "upstream_bad_request"),
    ({"first_delay": 3}, 504, "upstream_timeout"),
]


async def test_upstream_failures_before_any_output(world, dev_upstream, nonce, upstream_http):
    client = AsyncClient()
    for i, (switches, status, code) in enumerate(UPSTREAM_FAILURES):
        provider = await Provider.objects.acreate(
            name=f"failing{i}",
            base_url=dev_upstream.v1(key=f"{nonce}f{i}", **switches),
            max_retries=0,
            first_token_timeout=1,
            read_timeout=1,
        )
        await Model.objects.acreate(
            provider=provider, upstream_id="dev-chat", input_price=Decimal(1), output_price=Decimal(1)
        )
        for stream in (False, True):
            response = await post(
                client,
                "/v1/chat/completions",
                {"model": f"failing{i}/dev-chat", "messages": HELLO, "stream": stream},
                world.auth,
            )
            assert_error(response, status, code)
            assert response["x-should-retry"] == "false"
    records = [r async for r in UsageRecord.objects.all()]
    assert len(records) == 2 * len(UPSTREAM_FAILURES)
    assert all(r.finish_reason == "error" and r.estimated_cost == 0 and r.source == "api" for r in records)
    assert await BudgetReservation.objects.acount() == 0


async def test_mid_stream_error_is_an_error_event_and_recorded(world, dev_upstream, nonce, upstream_http):
    provider = await Provider.objects.acreate(
        name="flaky", base_url=dev_upstream.v1(key=nonce + "m", error_after=3), max_retries=0
    )
    await Model.objects.acreate(
        provider=provider, upstream_id="dev-chat", input_price=Decimal(1), output_price=Decimal(1)
    )
    response = await post(
        AsyncClient(),
        "/v1/chat/completions",
        {"model": "flaky/dev-chat", "messages": HELLO, "stream": True},
        world.auth,
    )
    assert response.status_code == 200
    events = sse_events(await streamed(response))
    assert events[-1] == "[DONE]"
    error = json.loads(events[-2])["error"]
    assert error["code"] == "upstream_stream_broken" and error["message"]
    record = await UsageRecord.objects.aget()
    assert record.finish_reason == "error" and record.completion_tokens > 0


# --- isolation ----------


async def test_a_key_of_alice_never_touches_bobs_usage(world, bob, upstream_http):
    _, bob_raw = await sync_to_async(api_key_create)(user=bob)
    client = AsyncClient()
    await post(client, "/v1/chat/completions", {"messages": HELLO, "max_tokens": 5}, world.auth)
    await post(
        client,
        "/v1/chat/completions",
        {"messages": HELLO, "max_tokens": 5},
        {"Authorization": f"Bearer {bob_raw}"},
    )
    alice_rows = [r async for r in UsageRecord.objects.for_user(world.key.user)]
    bob_rows = [r async for r in UsageRecord.objects.for_user(bob)]
    assert len(alice_rows) == 1 and len(bob_rows) == 1
    assert alice_rows[0].api_key_id == world.key.pk and bob_rows[0].api_key_id != world.key.pk


# --- the OpenAPI document and the command ----------


async def test_openapi_document(db):
    response = await AsyncClient().get("/v1/openapi.json")
    assert response.status_code == 200
    doc = json.loads(response.content)
    assert doc["openapi"] == "3.1.0"
    assert set(doc["paths"]) == {
        "/models",
        "/models/{model}",
        "/chat/completions",
        "/completions",
        "/openapi.json",
    }
    assert doc["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    refs = {v for v in _walk(doc) if isinstance(v, str) and v.startswith("#/components/schemas/")}
    assert {r.rsplit("/", 1)[1] for r in refs} <= set(doc["components"]["schemas"])


def _walk(value: Any) -> Iterator[Any]:
    if isinstance(value, dict):
        for v in value.values():
            yield from _walk(v)
    elif isinstance(value, list):
        for v in value:
            yield from _walk(v)
    else:
        yield value


def test_createapikey_prints_the_key_on_its_last_line(alice):
    out = StringIO()
    call_command("createapikey", "alice", "--rpm", "30", stdout=out)
    raw = out.getvalue().rstrip("\n").splitlines()[-1]
    assert raw.startswith("cw-") and " " not in raw
    key = ApiKey.objects.get(user=alice)
    assert key.hashed == ApiKey.hash(raw) and raw not in (key.hashed, key.prefix) and key.rpm_limit == 30
    assert api_auth.api_key_authenticate(f"Bearer {raw}").pk == key.pk
    with pytest.raises(CommandError):
        call_command("createapikey", "nobody", stdout=StringIO())


def _closed_port() -> int:
    import socket

    with socket.socket() as s:  # bound, never listening: a connection there is refused
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


UNREACHABLE = {"refused": lambda: f"http://127.0.0.1:{_closed_port()}/v1", "dns": lambda: "http://nonexistent.invalid/v1"}


@pytest.mark.parametrize("where", sorted(UNREACHABLE))
async def test_a_request_that_never_reached_the_provider_costs_nothing(world, where, upstream_http, fast_backoff):
    provider = await Provider.objects.acreate(name="gone", base_url=UNREACHABLE[where](), max_retries=1)
    await Model.objects.acreate(provider=provider, upstream_id="m", input_price=Decimal(1), output_price=Decimal(1))
    client = AsyncClient()
    for stream in (False, True):
        response = await post(
            client, "/v1/chat/completions", {"model": "gone/m", "messages": HELLO, "stream": stream}, world.auth
        )
        error = assert_error(response, 502, "upstream_unreachable")
        assert "could not connect" in error["message"]
    records = [r async for r in UsageRecord.objects.all()]
    assert len(records) == 2
    for r in records:
        assert (r.prompt_tokens, r.completion_tokens, r.total_tokens, r.estimated_cost) == (0, 0, 0, 0)
        assert not r.usage_estimated and r.finish_reason == "upstream_unreachable"
    await provider.arefresh_from_db()
    assert provider.unreachable_at is not None


def test_an_admission_reads_the_key_its_user_and_their_budgets_in_one_statement(api_admission, alice):
    """Two statements admit a call of a user without a budget: the key (with its user and whether a budget applies)
    and the model; nothing is written (the key's last use was recorded by a call before, under a minute ago), and the
    key's objects are made once per version of its row."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    models = list(Model.objects.values_list("provider__name", "upstream_id"))
    body = json.dumps({"model": f"{models[0][0]}/{models[0][1]}", "messages": [{"role": "user", "content": "Hi"}]})
    admit = functools.partial(api_call_admit, authorization=f"Bearer {api_admission}", endpoint="chat",
                              raw_body=body.encode())
    admit()  # records the key's use: its row changes
    admit()  # makes the objects of the row as it is now
    with CaptureQueriesContext(connection) as queries:
        call = admit()
    assert len(queries.captured_queries) == 2, "\n".join(q["sql"][:150] for q in queries.captured_queries)
    assert call.reservation_id is None
    alice.monthly_budget = Decimal("5")
    alice.save(update_fields=["monthly_budget"])
    assert admit().reservation_id is not None  # the key's row unchanged, the budget read anew with it


def test_the_ledger_row_counts_on_the_owners_day_without_asking_for_their_time_zone(api_admission, alice):
    """The admission reads the owner's time zone with the key's row; the ledger write asks nothing more of it."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from conversations.models import UsageDay, User
    from conversations.upstream.events import Usage

    User.objects.filter(pk=alice.pk).update(timezone="America/Anchorage")
    models = list(Model.objects.values_list("provider__name", "upstream_id"))
    body = {"model": f"{models[0][0]}/{models[0][1]}", "messages": [{"role": "user", "content": "Hi"}]}
    call = api_call_admit(authorization=f"Bearer {api_admission}", endpoint="chat", raw_body=json.dumps(body).encode())
    assert call.owner_tz == "America/Anchorage"
    with CaptureQueriesContext(connection) as queries:
        relay.api_call_record(call=call, usage=Usage(3, 2, 5), completion_text="Hello", finish_reason="stop",
                              ttft_ms=5, duration_ms=9)
    users = connection.ops.quote_name(User._meta.db_table)
    assert not [q["sql"] for q in queries.captured_queries if f"FROM {users}" in q["sql"]]
    assert UsageDay.objects.get(user=alice).tz == "America/Anchorage"
