"""Single sign-on in a real browser: a person clicks the sign-in button, signs in at a real OpenID provider
(oidc-provider in Node.js on loopback), lands on the chat page with their group's model and shared budget, chats,
and the group's manager sees the group's spend; sign-out ends the session here and at the provider."""

from __future__ import annotations

import re
from collections.abc import Iterator
from decimal import Decimal

import pytest
from django.contrib.auth.models import Group
from playwright.sync_api import expect

from bench.process import free_port
from conversations.accounts.teams import team_update
from conversations.models import OidcIdentity, User
from tests.browser.pages import new_page, send, sign_in, wait_connected, wait_reply_done
from tests.chat_helpers import make_model
from tests.conftest import PASSWORD
from tests.live import LiveServer
from tests.oidc.provider import CLIENT_ID, CLIENT_SECRET, OidcProvider, account

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture(scope="module")
def sso(django_db_setup) -> Iterator[tuple[LiveServer, OidcProvider]]:
    """chatweb configured (from its environment) for a provider started right after it, on a port chosen first."""
    port = free_port()
    site = LiveServer(extra_env={
        "CHATWEB_OIDC_ISSUER": f"http://127.0.0.1:{port}",
        "CHATWEB_OIDC_CLIENT_ID": CLIENT_ID,
        "CHATWEB_OIDC_CLIENT_SECRET": CLIENT_SECRET,
        "CHATWEB_OIDC_NAME": "Sign in with Lab ID",
    })
    provider = OidcProvider(
        sites=[site.url], port=port,
        accounts={"ada": account("ada@lab.example", groups=["lab"], preferred_username="ada")},
    )
    yield site, provider
    provider.stop()
    site.stop()


@pytest.mark.django_db(transaction=True)
def test_a_person_signs_in_through_the_provider_into_their_groups_models_and_budget(browser, sso, dev_upstream, nonce):
    site, provider = sso
    lab_model = make_model(dev_upstream.v1(key=nonce), name="labmodels")
    lab_model.allowed_groups.add(Group.objects.create(name="lab"))
    other_model = make_model(dev_upstream.v1(key=nonce), name="othermodels")
    other_model.allowed_groups.add(Group.objects.create(name="other"))
    User.objects.create_user("mia", password=PASSWORD)
    team_update(name="lab", monthly=Decimal("20.00"), managers=["mia"])

    context, page, watch = new_page(browser)
    page.goto(f"{site.url}/accounts/login/")
    button = page.locator("#sso")
    expect(button).to_have_text("Sign in with Lab ID")
    button.click()
    page.wait_for_url(re.compile(rf"^{re.escape(provider.url)}/interaction/"))
    page.fill("input[name=login]", "ada")
    page.click("text=Sign in at provider")
    page.wait_for_url(f"{site.url}/")
    wait_connected(page)

    ada = OidcIdentity.objects.get(issuer=provider.issuer, subject="ada").user
    assert list(ada.groups.values_list("name", flat=True)) == ["lab"]
    options = page.locator("#model-select option").all_inner_texts()
    assert lab_model.public_name in options and other_model.public_name not in options
    expect(page.locator(".budget-group[data-group=lab]")).to_contain_text("of $20.00 left this month")

    send(page, "Hello from single sign-on")
    wait_reply_done(page)
    assert watch.errors == [] and watch.dialogs == []

    manager_context, manager, _ = new_page(browser)
    sign_in(manager, site.url, "mia", PASSWORD)
    manager.goto(f"{site.url}/usage/?group=lab")
    spent = manager.locator("#group-budget-remaining")
    expect(spent).to_be_visible()
    assert float(spent.inner_text().lstrip("$")) < 20.0  # ada's reply is counted against the group's budget
    manager_context.close()

    expect(page.locator("#account-menu")).not_to_contain_text("Change password")  # none to change here
    page.locator("#account-menu summary").click()
    page.locator("form[action='/accounts/logout/'] button").click()
    page.wait_for_url(re.compile(rf"^{re.escape(provider.url)}/session/end"))
    context.close()
