"""The hand-written reads on the admission's path give exactly what the ORM's querysets give."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import AnonymousUser, Group

from conversations.accounts.apikeys import api_key_create
from conversations.api.auth import _key_by_prefix
from conversations.catalog.access import model_for_user, models_for_user, usable_model
from conversations.models import ApiKey, Model, Provider

pytestmark = pytest.mark.django_db


@pytest.fixture
def catalog(alice, bob) -> list[Model]:
    staff, other = Group.objects.create(name="staff"), Group.objects.create(name="other")
    alice.groups.add(staff)
    on, off = Provider.objects.create(name="on", base_url="http://127.0.0.1:9/v1"), Provider.objects.create(
        name="off", base_url="http://127.0.0.1:9/v1", enabled=False
    )
    made = [
        Model.objects.create(provider=on, upstream_id="open"),
        Model.objects.create(provider=on, upstream_id="staff-only"),
        Model.objects.create(provider=on, upstream_id="two-groups", api=Model.Api.COMPLETIONS),
        Model.objects.create(provider=on, upstream_id="other-only"),
        Model.objects.create(provider=on, upstream_id="disabled", enabled=False),
        Model.objects.create(provider=off, upstream_id="provider-off"),
    ]
    made[1].allowed_groups.add(staff)
    made[2].allowed_groups.add(staff, other)
    made[3].allowed_groups.add(other)
    return made


def test_usable_models_equal_the_queryset(alice, bob, catalog):
    for user in (alice, bob, AnonymousUser()):
        expected = list(Model.objects.usable_by(user).order_by("public_name"))
        assert models_for_user(user) == expected
        assert models_for_user(user, api=Model.Api.CHAT) == [m for m in expected if m.api == Model.Api.CHAT]
        for model in catalog:
            found = Model.objects.usable_by(user).filter(public_name=model.public_name).first()
            assert model_for_user(user, model.public_name) == found
    assert [m.public_name for m in models_for_user(alice)] == ["on/open", "on/staff-only", "on/two-groups"]
    assert [m.public_name for m in models_for_user(bob)] == ["on/open"]
    for model in catalog:
        assert usable_model(model.public_name) == Model.objects.usable().filter(public_name=model.public_name).first()


def test_the_key_statement_equals_the_queryset(alice):
    _, raw = api_key_create(user=alice)
    found = _key_by_prefix(raw[:12])
    expected = ApiKey.objects.select_related("user").get(prefix=raw[:12])
    assert found == expected and found.user == expected.user and found.hashed == expected.hashed
    assert _key_by_prefix("cw-nothing") is None
