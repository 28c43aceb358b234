"""Feedback and temporary chats in Debian's Chromium, through the visible controls: thumbs down opens a comment box,
the choice shows after a reload, changes and is taken back; a temporary chat shows its badge, is listed nowhere,
cannot be shared, and is gone once its tab closes while its usage stays in the ledger; a share link shows a
message's photo only when "Include attachments" is ticked, and stops serving it when revoked."""

from __future__ import annotations

import time

import pytest
from playwright.sync_api import expect

from conversations.models import Conversation, Feedback, UsageRecord
from tests import attachment_files as files
from tests.browser.pages import DESKTOP, last_reply, new_page, send, sign_in, wait_connected, wait_reply_done
from tests.chat_helpers import make_model
from tests.conftest import PASSWORD

expect.set_options(timeout=15_000)

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def test_thumbs_and_a_comment_on_a_reply_stay_after_reload(page, dev_upstream, nonce):
    page, watch = page
    model = make_model(dev_upstream.v1(key=nonce, tokens=12, delay=0.002), name="acme", upstream_id="wise-1")
    page.reload()
    wait_connected(page)
    send(page, "Why does the sea rise?")
    wait_reply_done(page)
    reply = last_reply(page)

    reply.get_by_role("button", name="Bad reply").click()
    box = reply.get_by_label("What was wrong with this reply? (optional)")
    expect(box).to_be_focused()
    box.fill("It forgot the moon.")
    reply.get_by_role("button", name="Send feedback").click()
    expect(reply.get_by_role("button", name="Bad reply")).to_have_attribute("aria-pressed", "true")
    expect(reply.locator(".feedback-comment")).to_contain_text("It forgot the moon.")
    feedback = Feedback.objects.get()
    assert feedback.rating == Feedback.Rating.DOWN and feedback.comment == "It forgot the moon."
    assert feedback.model_name == model.public_name and feedback.provider_name == "acme"

    page.reload()
    wait_connected(page)
    reply = last_reply(page)
    expect(reply.get_by_role("button", name="Bad reply")).to_have_attribute("aria-pressed", "true")
    expect(reply.get_by_role("button", name="Good reply")).to_have_attribute("aria-pressed", "false")
    expect(reply.locator(".feedback-comment")).to_contain_text("It forgot the moon.")

    reply.get_by_role("button", name="Good reply").click()  # changed: thumbs up, no box forced open
    expect(reply.get_by_role("button", name="Good reply")).to_have_attribute("aria-pressed", "true")
    expect(reply.get_by_role("button", name="Bad reply")).to_have_attribute("aria-pressed", "false")
    reply.get_by_role("button", name="Add a comment").click()
    reply.get_by_label("What was good? (optional)").fill("Clear now.")
    reply.get_by_role("button", name="Send feedback").click()
    expect(reply.locator(".feedback-comment")).to_contain_text("Clear now.")
    feedback = Feedback.objects.get()
    assert feedback.rating == Feedback.Rating.UP and feedback.comment == "Clear now."

    reply.get_by_role("button", name="Good reply").click()  # pressed again: taken back
    expect(reply.get_by_role("button", name="Good reply")).to_have_attribute("aria-pressed", "false")
    page.wait_for_function("() => !document.querySelector('#messages .feedback-comment')")
    assert not Feedback.objects.exists()
    watch.assert_clean(page)


def _gone(conversation_id: int, seconds: float = 40) -> bool:
    # CHATWEB_TEMPORARY_GRACE_SECONDS (10 s by default) passes first: the tab might have been reconnecting
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not Conversation.objects.filter(pk=conversation_id).exists():
            return True
        time.sleep(0.2)
    return False


def test_a_temporary_chat_is_listed_nowhere_and_gone_when_its_tab_closes(browser, live_server, alice, dev_upstream,
                                                                         nonce):
    make_model(dev_upstream.v1(key=nonce, tokens=10, delay=0.002))
    context, page, watch = new_page(browser, viewport=DESKTOP)
    sign_in(page, live_server.url, "alice", PASSWORD)
    badge = page.locator("#temporary-badge")
    expect(badge).to_be_hidden()
    page.get_by_label("Temporary chat").check()
    expect(badge).to_be_visible()
    expect(badge).to_contain_text("Temporary chat")

    send(page, "Off the record: tide tables")
    wait_reply_done(page)
    conversation = Conversation.objects.get()
    assert conversation.temporary
    expect(badge).to_be_visible()
    expect(page.get_by_label("Temporary chat")).to_be_hidden()  # the choice is made
    expect(page.get_by_role("button", name="Share", exact=True)).to_be_hidden()
    expect(page.locator("#conversation-list")).not_to_contain_text("Off the record")
    assert page.url == f"{live_server.url}/"  # a reload would not bring it back
    record = UsageRecord.objects.get()
    assert record.conversation_id == conversation.pk and record.estimated_cost > 0

    # another tab of the same person does not list it either
    other = context.new_page()
    other.goto(f"{live_server.url}/")
    expect(other.locator("#conversation-list")).not_to_contain_text("Off the record")
    other.close()
    assert Conversation.objects.filter(pk=conversation.pk).exists()  # that tab never showed it

    watch.assert_clean(page)
    page.close()
    assert _gone(conversation.pk), "the temporary chat outlived its tab"
    record.refresh_from_db()
    assert record.conversation_id is None and record.message_id is None and record.estimated_cost > 0
    context.close()


def test_an_ordinary_chat_stays_after_its_tab_closes(browser, live_server, alice, dev_upstream, nonce):
    make_model(dev_upstream.v1(key=nonce, tokens=5, delay=0.002))
    context, page, _ = new_page(browser, viewport=DESKTOP)
    sign_in(page, live_server.url, "alice", PASSWORD)
    send(page, "Keep this one")
    wait_reply_done(page)
    expect(page.locator("#conversation-list")).to_contain_text("Keep this one")
    expect(page.locator("#temporary-badge")).to_be_hidden()
    conversation = Conversation.objects.get()
    page.close()
    assert not _gone(conversation.pk, seconds=2)
    context.close()


def test_a_share_shows_the_files_only_with_include_attachments(browser, live_server, alice, dev_upstream, nonce):
    model = make_model(dev_upstream.v1(key=nonce, delay=0.002), name="eyes", upstream_id="dev-vision")
    model.vision = True
    model.save()
    context, page, watch = new_page(browser, viewport=DESKTOP)
    sign_in(page, live_server.url, "alice", PASSWORD)
    page.set_input_files("#attachment-input", [
        {"name": "beach.png", "mimeType": "image/png", "buffer": files.png(90, 60)},
    ])
    expect(page.locator("#composer-attachments .attachment-chip[data-attachment-id]")).to_have_count(1)
    send(page, "What is on this beach?")
    wait_reply_done(page)

    page.get_by_role("button", name="Share", exact=True).click()
    page.wait_for_function("() => document.getElementById('share-url').value.includes('/s/')")
    without = page.get_by_label("Read-only link").input_value()
    expect(page.get_by_label("Include attachments")).not_to_be_checked()
    page.get_by_label("Include attachments").check()  # a new link with the files replaces the one shown
    page.wait_for_function(f"() => !['', {without!r}].includes(document.getElementById('share-url').value)")
    expect(page.locator("#share-status")).to_contain_text("its files")
    with_files = page.get_by_label("Read-only link").input_value()

    reader_context, reader, reader_watch = new_page(browser)  # nobody signed in
    assert reader.request.get(without).status == 404  # replaced, so revoked
    assert reader.goto(with_files).status == 200
    expect(reader.locator(".message-attachments .attachment")).to_contain_text("beach.png")
    reader.wait_for_function(
        "() => { const i = document.querySelector('.message-attachments img'); "
        "return i && i.complete && i.naturalWidth === 90; }"
    )
    reader_watch.assert_clean(reader)

    page.get_by_role("button", name="Stop sharing").click()
    expect(page.locator("#share-status")).to_contain_text("Sharing stopped")
    assert reader.request.get(with_files).status == 404
    assert reader.request.get(f"{with_files}files/1/").status == 404
    reader_context.close()
    watch.assert_clean(page)
    context.close()
