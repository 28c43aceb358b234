"""In Chromium: the composer's budget line follows each reply and a raised budget; the model picker and the admin
look like chatweb (screenshots in the pytest temporary directory, to look at, not committed)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from conversations.models import Model, Provider, User
from conversations.usage.budgets import user_budget_set
from tests.browser.pages import DESKTOP, new_page, send, sign_in, wait_connected, wait_reply_done
from tests.chat_helpers import make_model
from tests.conftest import PASSWORD

expect.set_options(timeout=15_000)

pytestmark = [pytest.mark.browser, pytest.mark.slow]



def test_the_budget_line_refreshes_after_a_reply_and_a_refusal(browser, live_server, alice, dev_upstream, nonce):
    made = make_model(dev_upstream.v1(key=nonce, tokens=20), name="dev")
    # Dear enough that one short reply shows in cents; capped so its worst case fits the budget.
    dear = {"input_price": Decimal(10000), "output_price": Decimal(10000), "max_output_tokens": 40}
    Model.objects.filter(pk=made.pk).update(**dear)
    user_budget_set(user=alice, monthly=Decimal("5"))
    context, page, _watch = new_page(browser, viewport=DESKTOP)
    sign_in(page, live_server.url, "alice", PASSWORD)
    wait_connected(page)
    label = page.locator("#budget-left")
    expect(label).to_have_text("$5.00 of $5.00 left this month")
    send(page, "Hello there")
    wait_reply_done(page)
    expect(label).not_to_have_text("$5.00 of $5.00 left this month")  # the reply's cost is taken off
    expect(label).to_contain_text("of $5.00 left this month")
    user_budget_set(user=alice, monthly=Decimal("0.0001"))  # now overspent: the next message is refused
    send(page, "Again")
    expect(label).to_contain_text("$0 of $0.0001 left this month · over by $0.")
    expect(label).to_have_class("budget muted over")
    user_budget_set(user=User.objects.get(pk=alice.pk), monthly=Decimal("10"))
    send(page, "Once more")
    wait_reply_done(page)
    expect(label).to_contain_text("of $10.00 left this month")
    context.close()


def test_screenshots_of_the_picker_and_the_admin(browser, live_server, alice, staff, dev_upstream, nonce, tmp_path):
    chat = make_model(dev_upstream.v1(key=nonce), name="dev")
    Model.objects.filter(pk=chat.pk).update(display_name="Dev chat", description="Offline test model")
    gone = Provider.objects.create(name="far-away", base_url="http://nonexistent.invalid/v1",
                                   unreachable_at=timezone.now())
    Model.objects.create(provider=gone, upstream_id="big", display_name="Big model", input_price=Decimal(3),
                         output_price=Decimal(15), context_length=200000)
    context, page, _watch = new_page(browser, viewport=DESKTOP)
    sign_in(page, live_server.url, "alice", PASSWORD)
    wait_connected(page)
    expect(page.locator("#model-details")).to_contain_text("$0.50 / $1.50 per 1M tokens")
    page.screenshot(path=str(tmp_path / "picker.png"))
    page.select_option("#model-select", "far-away/big")
    expect(page.locator("#model-details")).to_contain_text("could not connect")
    page.screenshot(path=str(tmp_path / "picker-unreachable.png"))
    context.close()
    context, page, _watch = new_page(browser, viewport=DESKTOP)
    sign_in(page, live_server.url, "staff", PASSWORD)
    page.goto(live_server.url + "/admin/")
    expect(page.locator("#site-name")).to_have_text("chatweb administration")
    expect(page.locator("#admin-team-usage")).to_have_attribute("href", "/usage/?user=all")
    page.screenshot(path=str(tmp_path / "admin.png"))
    page.goto(live_server.url + "/admin/conversations/user/")
    page.screenshot(path=str(tmp_path / "admin-users.png"))
    context.close()
    print("screenshots in", tmp_path)
