"""Cost in the chat, in Debian's Chromium against a live Daphne and the development upstream: the header's running
total and the group budget line follow each reply (stopped ones too) without a reload, the composer's estimate
includes the history, the picker shows each model's prices, and a budget alert's notice appears with the reply
that crosses it."""

from __future__ import annotations

import re
from decimal import Decimal

import pytest
from django.contrib.auth.models import Group
from playwright.sync_api import expect

from conversations.chat.admission import reply_estimate
from conversations.chat.commands import ChatEstimate
from conversations.models import Conversation, Model, Team, User
from conversations.upstream.events import Usage
from conversations.usage.budgets import team_budget_status
from conversations.usage.ledger import Priced, usage_record
from conversations.usage.rollup import money_text
from conversations.usage.selectors import conversation_spend
from tests.browser.pages import last_reply, send, wait_connected, wait_reply_done
from tests.chat_helpers import make_model

expect.set_options(timeout=15_000)  # the live server's first reply loads the tokenizer

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def spend(user: User, cost: str) -> None:
    """A ledger row of `cost` written behind the page's back (no budget reservation: no alert check)."""
    usage_record(
        user_id=user.pk, source="api", priced=Priced("acme", "acme/m", None, None),
        usage=Usage(10, 5, 15, Decimal(cost)), prompt_messages=[], completion_text="hi", finish_reason="stop",
        ttft_ms=1, duration_ms=2,
    )


def header_text(user: User) -> str:
    conversation = Conversation.objects.get(owner=user)
    cost, requests = conversation_spend(user=user, conversation_id=conversation.pk)
    return f"${money_text(cost)} · {requests} request{'s' if requests != 1 else ''}"


def test_the_header_total_and_the_group_line_follow_each_reply_live(page, alice, bob, dev_upstream, nonce):
    page, watch = page
    group = Group.objects.create(name="lab")
    team = Team.objects.create(group=group, monthly_budget=Decimal("0.05"))
    alice.groups.add(group)
    bob.groups.add(group)
    make_model(dev_upstream.v1(key=nonce, tokens=12, delay=0.02))
    page.reload()
    wait_connected(page)
    total = page.locator("#conversation-cost")
    group_line = page.locator(".budget-group[data-group=lab]")
    expect(total).to_be_hidden()  # a new chat has no cost yet
    expect(group_line).to_have_text("Group lab: $0.05 of $0.05 left this month")

    send(page, "Tell me about tides")
    wait_reply_done(page)
    expect(total).to_have_text(header_text(alice))
    expect(total).to_contain_text("· 1 request")

    # Another member spends meanwhile: the group line shows it with alice's next reply, which she stops.
    spend(bob, "0.02")
    page.locator("#composer-input").fill("And about waves, at length please")
    page.locator("#composer-input").press("Enter")
    page.wait_for_function(
        "() => document.querySelector('article.message.assistant[data-status=streaming] .content')"
        "?.textContent.length > 3"
    )
    page.keyboard.press("Escape")
    expect(last_reply(page)).to_have_attribute("data-status", "stopped")
    expect(total).to_contain_text("· 2 requests")
    expect(total).to_have_text(header_text(alice))
    status = team_budget_status(team)
    assert status is not None
    expect(group_line).to_have_text(f"Group lab: {status.text['label']}")
    assert status.text["label"].startswith("$0.03 of $0.05"), status.text["label"]

    # Regenerating adds to the same total (all branches and regenerations count).
    last_reply(page).get_by_role("button", name="Regenerate").click()
    wait_reply_done(page)
    expect(total).to_contain_text("· 3 requests")
    expect(total).to_have_text(header_text(alice))
    watch.assert_clean(page)


def test_the_composer_estimate_includes_the_history_and_the_picker_shows_prices(page, alice, dev_upstream, nonce):
    page, watch = page
    make_model(dev_upstream.v1(key=nonce, tokens=20))
    big = make_model(dev_upstream.v1(key=nonce), name="big")
    Model.objects.filter(pk=big.pk).update(input_price=Decimal(3), output_price=Decimal(15))
    page.reload()
    wait_connected(page)
    page.select_option("#model-select", "dev/dev-chat")
    details = page.locator("#model-details")
    expect(details).to_contain_text("$0.50 / $1.50 per 1M tokens")
    page.select_option("#model-select", "big/dev-chat")
    expect(details).to_contain_text("$3.00 / $15.00 per 1M tokens")
    page.select_option("#model-select", "dev/dev-chat")

    estimate = page.locator("#composer-estimate")
    question = "Why do the tides follow the moon rather than the sun?"
    page.locator("#composer-input").fill(question)
    expect(estimate).to_be_visible()
    first = int(re.search(r"~(\d+) tokens", estimate.inner_text()).group(1))
    send(page, question)
    wait_reply_done(page)

    page.locator("#composer-input").fill(question)
    expect(estimate).not_to_have_text(re.compile(rf"~{first} tokens"))
    shown = estimate.inner_text()
    conversation = Conversation.objects.get(owner=alice)
    expected = reply_estimate(user=alice, command=ChatEstimate(
        request_id="x", conversation_id=conversation.pk, model="dev/dev-chat", content=question,
    ))
    assert shown == f"~{expected['prompt_tokens']} tokens · ≤ ${expected['max_cost']}", shown
    assert expected["prompt_tokens"] > first * 2  # the question, the reply before it, and the question again
    watch.assert_clean(page)


def test_a_budget_alert_notice_appears_with_the_reply_that_crosses_it(page, alice, dev_upstream, nonce):
    page, watch = page
    alice.monthly_budget = Decimal(1)
    alice.save()
    spend(alice, "0.79999")  # just under 80 %: the next reply crosses it
    make_model(dev_upstream.v1(key=nonce, tokens=12))
    page.reload()
    wait_connected(page)
    expect(page.locator(".budget-alert")).to_have_count(0)
    send(page, "Hello")
    wait_reply_done(page)
    notice = page.locator("#budget-alert")
    expect(notice).to_contain_text("80% of your monthly budget of 1 USD used")
    page.reload()
    expect(notice).to_contain_text("80% of your monthly budget of 1 USD used")
    watch.assert_clean(page)
