"""The data model: public names, for_user isolation, the ledger's shape."""

from decimal import Decimal

import pytest
from django.contrib.auth.models import Group

from conversations.catalog.access import model_for_user, models_for_user, usable_model
from conversations.models import ApiKey, Conversation, Message, Model, Provider, UsageRecord


@pytest.fixture
def provider(db):
    return Provider.objects.create(
        name="deepinfra", base_url="https://api.deepinfra.com/v1/openai", api_key="k-123"
    )


def test_public_name_defaults_to_provider_slash_id_and_keeps_odd_ids(provider):
    model = Model.objects.create(provider=provider, upstream_id="meta-llama/Llama-3.1:8b.q4=x")
    assert model.public_name == "deepinfra/meta-llama/Llama-3.1:8b.q4=x"
    aliased = Model.objects.create(provider=provider, upstream_id="01-ai/Yi-34B-Chat", alias="yi-34b")
    assert aliased.public_name == "yi-34b"


def test_prices_are_exact_decimals(provider):
    model = Model.objects.create(provider=provider, upstream_id="m", input_price=Decimal("0.600001"))
    model.refresh_from_db()
    assert model.input_price == Decimal("0.600001")
    assert not model.priced


def test_conversations_messages_and_usage_are_isolated_per_user(alice, bob, provider):
    mine = Conversation.objects.create(owner=alice, title="alice's")
    theirs = Conversation.objects.create(owner=bob, title="bob's")
    Message.objects.create(conversation=mine, role="user", content="hi")
    Message.objects.create(conversation=theirs, role="user", content="secret")
    UsageRecord.objects.create(
        user=bob, source="chat", provider_name="p", model_name="m", cost_source="price"
    )
    assert list(Conversation.objects.for_user(alice)) == [mine]
    assert list(Message.objects.for_user(alice).values_list("content", flat=True)) == ["hi"]
    assert not UsageRecord.objects.for_user(alice).exists()
    assert not ApiKey.objects.for_user(alice).exists()


def test_for_user_of_anonymous_is_empty(alice):
    from django.contrib.auth.models import AnonymousUser

    Conversation.objects.create(owner=alice)
    assert not Conversation.objects.for_user(AnonymousUser()).exists()
    assert not Message.objects.for_user(AnonymousUser()).exists()


def test_models_restricted_to_groups(alice, bob, provider):
    open_model = Model.objects.create(provider=provider, upstream_id="open")
    team_model = Model.objects.create(provider=provider, upstream_id="team")
    Model.objects.create(provider=provider, upstream_id="off", enabled=False)
    team = Group.objects.create(name="team")
    team_model.allowed_groups.add(team)
    alice.groups.add(team)
    assert set(models_for_user(alice)) == {open_model, team_model}
    assert set(models_for_user(bob)) == {open_model}
    assert model_for_user(bob, team_model.public_name) is None
    assert model_for_user(alice, team_model.public_name) == team_model
    # chatweb's own work (titles) may use any enabled model, whatever its groups; never a disabled one.
    assert usable_model(team_model.public_name) == team_model
    assert usable_model("deepinfra/off") is None
    provider.enabled = False
    provider.save()
    assert usable_model(open_model.public_name) is None


def test_catalog_sees_every_change_at_once(alice, provider, django_assert_num_queries):
    """The per-process snapshot is checked against the tables before each use: no stale model survives a save,
    a delete, a group change or a provider switched off."""
    model = Model.objects.create(provider=provider, upstream_id="m1")
    assert model_for_user(alice, model.public_name) == model
    with django_assert_num_queries(1):  # unchanged: the fingerprint query alone
        assert model_for_user(alice, model.public_name) == model
    model.enabled = False
    model.save()
    assert model_for_user(alice, model.public_name) is None
    model.enabled = True
    model.save()
    team = Group.objects.create(name="team")
    model.allowed_groups.add(team)
    assert model_for_user(alice, model.public_name) is None  # restricted to a group alice is not in
    alice.groups.add(team)
    assert model_for_user(alice, model.public_name) == model
    model.allowed_groups.remove(team)
    provider.enabled = False
    provider.save()
    assert models_for_user(alice) == []
    provider.enabled = True
    provider.save()
    other = Model.objects.create(provider=provider, upstream_id="m2", alias="another")
    assert [m.public_name for m in models_for_user(alice)] == ["another", model.public_name]
    other.delete()
    assert model_for_user(alice, "another") is None


def test_ledger_cost_keeps_ten_decimal_places(alice):
    record = UsageRecord.objects.create(
        user=alice,
        source="api",
        provider_name="p",
        model_name="m",
        cost_source="reported",
        estimated_cost=Decimal("0.0000000268"),
    )
    record.refresh_from_db()
    assert record.estimated_cost == Decimal("0.0000000268")


def test_api_key_is_stored_as_a_hash(alice):
    raw, prefix, hashed = ApiKey.generate()
    key = ApiKey.objects.create(user=alice, prefix=prefix, hashed=hashed)
    assert raw.startswith(prefix) and raw not in (key.prefix, key.hashed)
    assert ApiKey.hash(raw) == key.hashed


def test_rows_insert_and_update_store_what_the_orm_stores(alice, provider, django_assert_num_queries):
    """conversations/rows.py writes with cached SQL: each write one statement, the stored values the ORM's own."""
    from django.forms.models import model_to_dict

    from conversations import rows

    model = Model.objects.create(provider=provider, upstream_id="m")
    values = {"owner": alice, "model": model, "title": "Straße ✓", "params": {"temperature": 0.5, "stop": ["\n"]}}
    by_orm = Conversation.objects.create(**values)
    with django_assert_num_queries(1):
        by_rows = rows.insert(Conversation(**values))
    assert by_rows.pk and by_rows.pk != by_orm.pk and not by_rows._state.adding
    fresh_orm, fresh_rows = Conversation.objects.get(pk=by_orm.pk), Conversation.objects.get(pk=by_rows.pk)
    assert model_to_dict(fresh_rows, exclude=["id"]) == model_to_dict(fresh_orm, exclude=["id"])
    assert fresh_rows.created_at and fresh_rows.updated_at >= fresh_orm.updated_at

    reply = rows.insert(Message(conversation=by_rows, role="assistant", status="streaming", model=model,
                                heartbeat_at=fresh_rows.created_at))
    stored = Message.objects.get(pk=reply.pk)
    assert (stored.conversation_id, stored.role, stored.status, stored.content, stored.seq, stored.heartbeat_at) == (
        by_rows.pk, "assistant", "streaming", "", 0, fresh_rows.created_at
    )
    by_rows.active_leaf, by_rows.params, by_rows.title = reply, {"top_p": 1}, "changed"
    before = fresh_rows.updated_at
    with django_assert_num_queries(1):
        rows.update(by_rows, ("active_leaf", "params", "updated_at"))
    fresh_rows = Conversation.objects.get(pk=by_rows.pk)
    assert (fresh_rows.active_leaf_id, fresh_rows.params, fresh_rows.title) == (reply.pk, {"top_p": 1}, "Straße ✓")
    assert fresh_rows.updated_at > before
