"""Which model a new chat opens with (the user's, staff's, the environment's, the first), and the picker."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.contrib.auth.models import Group
from django.utils import timezone

from conversations.catalog.defaults import model_default_set
from conversations.models import Model, Provider

pytestmark = pytest.mark.django_db


def selected(html: str) -> str:
    """The public name of the picker's selected option."""
    picker = html[html.index('id="model-select"') : html.index("</select>", html.index('id="model-select"'))]
    before = picker[: picker.index(" selected>")]
    return before[before.rindex('value="') + 7 :].split('"', 1)[0]


@pytest.fixture
def catalog(db):
    provider = Provider.objects.create(name="zeta", base_url="http://127.0.0.1:9/v1")
    other = Provider.objects.create(name="alpha", base_url="http://127.0.0.1:9/v1")
    chat = Model.objects.create(provider=provider, upstream_id="main", display_name="Main model",
                                description="Good all round", input_price=Decimal("0.5"),
                                output_price=Decimal("1.5"), context_length=32768)
    return provider, other, chat


def test_a_newly_added_model_does_not_become_every_new_chats_default(client, alice, catalog):
    _provider, other, chat = catalog
    model_default_set(chat)
    client.force_login(alice)
    assert selected(client.get("/").content.decode()) == "zeta/main"
    Model.objects.create(provider=other, upstream_id="aaa-new")  # alphabetically first
    assert selected(client.get("/").content.decode()) == "zeta/main"


def test_new_chats_open_with_the_users_choice_then_staffs_then_the_environments_then_the_first(
    client, alice, catalog, settings
):
    provider, other, chat = catalog
    first = Model.objects.create(provider=other, upstream_id="a-first")
    envs = Model.objects.create(provider=provider, upstream_id="env")
    mine = Model.objects.create(provider=provider, upstream_id="mine")
    client.force_login(alice)
    assert selected(client.get("/").content.decode()) == first.public_name  # nothing chosen: the first usable
    settings.CHATWEB_DEFAULT_MODEL = envs.public_name  # /v1's setting serves chats too when alone
    assert selected(client.get("/").content.decode()) == envs.public_name
    settings.CHATWEB_DEFAULT_CHAT_MODEL = chat.public_name
    assert selected(client.get("/").content.decode()) == chat.public_name
    settings.CHATWEB_DEFAULT_CHAT_MODEL = "no/such-model"
    assert selected(client.get("/").content.decode()) == envs.public_name
    model_default_set(mine)
    assert selected(client.get("/").content.decode()) == mine.public_name  # the admin's flag
    response = client.post("/settings/", {"action": "default_model", "model": chat.public_name})
    assert response.status_code == 302 and response["Location"].endswith("#default-model")
    assert selected(client.get("/").content.decode()) == chat.public_name  # the user's own
    chat.enabled = False
    chat.save()
    assert selected(client.get("/").content.decode()) == mine.public_name  # no longer usable: staff's
    assert "no longer available to you" in client.get("/settings/").content.decode()


def test_a_user_cannot_choose_a_model_closed_to_them(client, alice, catalog):
    provider, _other, _chat = catalog
    closed = Model.objects.create(provider=provider, upstream_id="closed")
    closed.allowed_groups.add(Group.objects.create(name="staff-only"))
    client.force_login(alice)
    response = client.post("/settings/", {"action": "default_model", "model": closed.public_name})
    assert response.status_code == 400 and "not one you can use" in response.content.decode()
    alice.refresh_from_db()
    assert alice.default_model_id is None
    page = client.get("/settings/").content.decode()
    assert 'id="default-model"' in page and closed.public_name not in page and "Main model" in page
    assert client.post("/settings/", {"action": "default_model", "model": ""}).status_code == 302


def test_the_picker_groups_by_provider_with_names_descriptions_prices_and_flags(client, alice, catalog):
    provider, other, _chat = catalog
    Model.objects.create(provider=other, upstream_id="cheap", input_price=Decimal(0), output_price=Decimal(0))
    client.force_login(alice)
    html = client.get("/").content.decode()
    assert html.index('<optgroup label="alpha"') < html.index('<optgroup label="zeta"')
    assert 'value="zeta/main"' in html and ">Main model<" in html
    assert 'data-description="Good all round"' in html
    assert 'data-details="$0.50 / $1.50 per 1M tokens · 32,768 tokens of context"' in html
    assert "free / free per 1M tokens" in html and "unreachable" not in html
    Provider.objects.filter(pk=provider.pk).update(unreachable_at=timezone.now())
    html = client.get("/").content.decode()
    assert '<optgroup label="zeta (unreachable)"' in html and "⚠ unreachable" in html
    Provider.objects.filter(pk=provider.pk).update(unreachable_at=timezone.now() - timedelta(hours=1))
    assert "unreachable" not in client.get("/").content.decode()  # an old failure is no longer news
