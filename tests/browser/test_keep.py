"""Sharing and importing in Debian's Chromium: the Share button makes a link, a reader without an account opens it
(no account menu, no script, no CSP violation), Stop sharing closes it; the settings page lists and revokes links
and imports a ChatGPT export through its upload form."""

from __future__ import annotations

import json

import pytest
from playwright.sync_api import expect

from conversations.models import Conversation, SharedLink
from tests.browser.pages import new_page, wait_connected
from tests.chat.test_importing import chatgpt_export
from tests.chat.test_pages import chain

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_share_button_link_read_anonymously_then_stop_sharing(page, browser, live_server, alice):
    page, watch = page
    conversation = Conversation.objects.create(owner=alice, title="Tides")
    chain(conversation, "Why does the sea rise?", "Because of the **moon**.")
    page.goto(f"{live_server.url}/c/{conversation.pk}/")
    wait_connected(page)
    page.get_by_role("button", name="Share", exact=True).click()
    field = page.get_by_label("Read-only link")
    page.wait_for_function("() => document.getElementById('share-url').value.includes('/s/')")
    url = field.input_value()
    assert url.startswith(f"{live_server.url}/s/")
    expect(page.locator("#share-status")).to_contain_text("Anyone with")

    reader_context, reader, reader_watch = new_page(browser)  # nobody signed in
    response = reader.goto(url)
    assert response is not None and response.status == 200
    expect(reader.get_by_role("heading", name="Tides")).to_be_visible()
    expect(reader.locator(".message.assistant strong")).to_have_text("moon")
    assert reader.locator("script").count() == 0 and reader.get_by_text("alice").count() == 0
    assert reader_watch.csp_violations(reader) == []
    reader_watch.assert_clean(reader)

    page.get_by_role("button", name="Stop sharing").click()
    expect(page.locator("#share-status")).to_contain_text("Sharing stopped")
    assert reader.goto(url).status == 404
    reader_context.close()
    assert watch.csp_violations(page) == []
    watch.assert_clean(page)


def test_settings_lists_revokes_links_and_imports_an_export(page, live_server, alice, tmp_path):
    page, watch = page
    conversation = Conversation.objects.create(owner=alice, title="Tides")
    chain(conversation, "Q", "A")
    link = SharedLink.objects.create(owner=alice, conversation=conversation, token="tok-" + "x" * 20,
                                     title="Tides", messages=[{"role": "user", "content": "Q"}])
    page.goto(f"{live_server.url}/settings/")
    row = page.locator("table.shared-links tr", has_text=link.url)
    expect(row).to_contain_text(link.created_at.strftime("%Y-%m-%d"))
    row.get_by_role("button", name=f"Revoke link {link.url}").click()
    expect(page.get_by_text("Link revoked")).to_be_visible()
    assert not SharedLink.objects.exists()

    export = tmp_path / "conversations.json"
    export.write_text(json.dumps(chatgpt_export()))
    page.get_by_label("Export file").set_input_files(str(export))
    page.get_by_role("button", name="Import").click()
    expect(page.get_by_text("Imported 2 conversations, 10 messages")).to_be_visible()
    page.goto(f"{live_server.url}/")
    expect(page.locator("#conversation-list")).to_contain_text("Tides and moons")
    assert watch.csp_violations(page) == []
    watch.assert_clean(page)
