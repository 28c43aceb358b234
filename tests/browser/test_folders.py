"""Folders, pins, the sidebar's groups and the keyboard shortcuts in Debian's Chromium, through the visible controls:
a folder made, filled by its ⋯ menu and by dragging, kept over a reload, renamed, collapsed, deleted; a conversation
pinned and unpinned; Today / Previous 7 days / Older; search by a folder's name; `?` and the shortcuts; the phone."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import Page, expect

from conversations.models import Conversation, Folder
from tests.browser.pages import new_page, sign_in, wait_connected
from tests.chat.test_pages import chain
from tests.conftest import PASSWORD

pytestmark = [pytest.mark.browser, pytest.mark.slow]

PHONE = {"width": 375, "height": 740}


def folder(page: Page, name: str):
    return page.locator(f"#conversation-list section.folder[data-folder-name='{name}']")


def folder_toggle(page: Page, name: str):
    """A folder's heading: a button named by the folder and how many conversations it holds."""
    return folder(page, name).get_by_role("button", name=re.compile(rf"^{re.escape(name)} \d+ conversations?$"))


def group(page: Page, label: str):
    return page.locator("#conversation-list section.conversation-group").filter(
        has=page.get_by_role("heading", name=label, exact=True)
    )


def item(scope, title: str):
    return scope.locator("li.conversation-item").filter(has_text=title)


def open_menu(page: Page, title: str) -> None:
    page.get_by_role("button", name=f"Actions for {title}", exact=True).click()
    expect(page.get_by_role("menu", name=f"Actions for {title}")).to_be_visible()


def another_tab(page: Page, url: str) -> Page:
    """A second tab of the same signed-in browser, its socket connected."""
    other = page.context.new_page()
    other.goto(url)
    wait_connected(other)
    return other


def create_folder(page: Page, name: str) -> None:
    """A folder made with the sidebar's "+ New folder" and its Create button."""
    page.get_by_role("button", name="+ New folder").click()
    page.get_by_role("textbox", name="New folder name").fill(name)
    page.get_by_role("button", name="Create").click()


def test_folders_made_filled_by_menu_and_by_dragging_renamed_collapsed_and_deleted(page, live_server, alice):
    page, watch = page
    tides = Conversation.objects.create(owner=alice, title="Tides")
    receipts = Conversation.objects.create(owner=alice, title="Receipts")
    page.goto(f"{live_server.url}/c/{tides.pk}/")
    wait_connected(page)

    page.get_by_role("button", name="+ New folder").click()
    name = page.get_by_role("textbox", name="New folder name")
    expect(name).to_be_focused()
    name.fill("Taxes")
    name.press("Enter")
    taxes = folder(page, "Taxes")
    expect(folder_toggle(page, "Taxes")).to_be_focused()
    expect(folder_toggle(page, "Taxes")).to_have_accessible_name("Taxes 0 conversations")
    expect(taxes).to_contain_text("Empty: drag a conversation here")
    taxes_id = Folder.objects.get(owner=alice, name="Taxes").pk

    # by the ⋯ menu, from the keyboard's point of view too: arrows move, Enter chooses
    open_menu(page, "Receipts")
    expect(page.get_by_role("menuitem", name="Pin to top")).to_be_focused()
    page.keyboard.press("ArrowDown")
    expect(page.get_by_role("menuitem", name="Move to Taxes")).to_be_focused()
    page.keyboard.press("Enter")
    expect(item(taxes, "Receipts")).to_have_count(1)
    expect(page.get_by_role("button", name="Actions for Receipts")).to_be_focused()  # the keyboard stays there

    # by dragging the conversation onto the folder
    page.locator(f"#conversation-list a[data-conversation-id='{tides.pk}']").drag_to(taxes)
    expect(item(taxes, "Tides")).to_have_count(1)
    expect(item(taxes, "Tides")).to_have_class("conversation-item current")
    expect(taxes.locator(".folder-count")).to_contain_text("2")
    assert set(Conversation.objects.values_list("folder", flat=True)) == {taxes_id}

    page.reload()
    wait_connected(page)
    expect(item(folder(page, "Taxes"), "Tides")).to_have_count(1)
    expect(item(folder(page, "Taxes"), "Receipts")).to_have_count(1)

    # dragged out of it again, onto the rest of the list
    page.locator(f"#conversation-list a[data-conversation-id='{tides.pk}']").drag_to(
        page.locator("#conversation-list .recent-groups")
    )
    expect(item(group(page, "Today"), "Tides")).to_have_count(1)
    expect(item(folder(page, "Taxes"), "Tides")).to_have_count(0)
    assert Conversation.objects.get(pk=tides.pk).folder_id is None

    page.get_by_role("button", name="Rename folder Taxes").click()
    renamed = page.get_by_role("textbox", name="New name for folder Taxes")
    renamed.fill("Taxes 2026")
    renamed.press("Enter")
    expect(folder(page, "Taxes 2026").locator(".folder-name")).to_have_text("Taxes 2026")
    assert Folder.objects.get(pk=taxes_id).name == "Taxes 2026"
    page.get_by_role("button", name="Rename folder Taxes 2026").click()  # Escape leaves the name as it was
    renamed = page.get_by_role("textbox", name="New name for folder Taxes 2026")
    renamed.fill("Not this")
    renamed.press("Escape")
    expect(renamed).to_have_count(0)
    expect(folder_toggle(page, "Taxes 2026")).to_be_focused()
    assert Folder.objects.get(pk=taxes_id).name == "Taxes 2026"

    toggle = folder_toggle(page, "Taxes 2026")
    expect(toggle).to_have_attribute("aria-expanded", "true")
    toggle.click()
    expect(toggle).to_have_attribute("aria-expanded", "false")
    expect(item(folder(page, "Taxes 2026"), "Receipts")).to_be_hidden()
    page.reload()  # collapsed is remembered in this browser
    wait_connected(page)
    expect(item(folder(page, "Taxes 2026"), "Receipts")).to_be_hidden()
    folder_toggle(page, "Taxes 2026").click()
    expect(item(folder(page, "Taxes 2026"), "Receipts")).to_be_visible()

    page.get_by_role("button", name="Delete folder Taxes 2026").click()
    dialog = page.locator("#confirm-dialog")
    expect(dialog).to_contain_text("Its conversations stay")
    dialog.get_by_role("button", name="Delete folder").click()
    expect(folder(page, "Taxes 2026")).to_have_count(0)
    expect(item(group(page, "Today"), "Receipts")).to_have_count(1)
    assert not Folder.objects.exists() and Conversation.objects.get(pk=receipts.pk).folder_id is None
    watch.assert_clean(page)


def test_pins_groups_by_day_and_search_by_folder_name(page, live_server, alice):
    page, watch = page
    now = timezone.now()
    taxes = Folder.objects.create(owner=alice, name="Taxes")
    for title, age, kept_in in (("Fresh", 0, None), ("Last week", 3, None), ("Ancient", 40, None),
                                ("Receipts", 60, taxes)):
        made = Conversation.objects.create(owner=alice, title=title, folder=kept_in)
        Conversation.objects.filter(pk=made.pk).update(updated_at=now - timedelta(days=age))
    page.goto(f"{live_server.url}/")
    wait_connected(page)

    headings = page.locator("#conversation-list h2")
    expect(headings).to_have_text(["Today", "Previous 7 days", "Older"])
    expect(item(group(page, "Today"), "Fresh")).to_have_count(1)
    expect(item(group(page, "Previous 7 days"), "Last week")).to_have_count(1)
    expect(item(group(page, "Older"), "Ancient")).to_have_count(1)
    expect(item(folder(page, "Taxes"), "Receipts")).to_have_count(1)

    open_menu(page, "Ancient")
    page.get_by_role("menuitem", name="Pin to top").click()
    expect(headings).to_have_text(["Pinned", "Today", "Previous 7 days"])
    expect(item(group(page, "Pinned"), "Ancient")).to_have_count(1)
    page.reload()
    wait_connected(page)
    expect(page.locator("#conversation-list li.conversation-item").first).to_contain_text("Ancient")
    open_menu(page, "Ancient")
    page.get_by_role("menuitem", name="Unpin").click()
    expect(headings).to_have_text(["Today", "Previous 7 days", "Older"])
    expect(item(group(page, "Older"), "Ancient")).to_have_count(1)
    assert Conversation.objects.get(title="Ancient").pinned_at is None

    search = page.get_by_role("searchbox", name="Search conversations")
    search.fill("tax")
    expect(page.locator("#conversation-list li")).to_have_count(1)
    expect(page.locator("#conversation-list li")).to_contain_text("Receipts")
    expect(page.locator("#conversation-list li .conversation-folder")).to_have_text("in Taxes")
    # a result's menu moves it too: out of its folder
    open_menu(page, "Receipts")
    page.get_by_role("menuitem", name="Take out of Taxes").click()
    expect(page.locator("#conversation-list li")).to_have_text("No conversation matches “tax”.")
    search.fill("")
    expect(item(group(page, "Older"), "Receipts")).to_have_count(1)
    watch.assert_clean(page)


def test_question_mark_lists_the_shortcuts_and_they_work(page, live_server, alice):
    page, watch = page
    tides = Conversation.objects.create(owner=alice, title="Tides")
    chain(tides, "Why does the sea rise?", "Because of the **moon**.")
    page.goto(f"{live_server.url}/c/{tides.pk}/")
    wait_connected(page)

    page.locator("#messages").click()  # not typing anywhere
    page.keyboard.press("?")
    dialog = page.get_by_role("dialog", name="Keyboard shortcuts")
    expect(dialog).to_be_visible()
    for action in ("New chat", "Search conversations", "Stop the reply being written", "Copy the last reply",
                   "Focus the message box"):
        expect(dialog.get_by_role("rowheader", name=action)).to_be_visible()
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    page.get_by_role("button", name="Shortcuts").click()  # the same list, without a keyboard
    expect(dialog).to_be_visible()
    dialog.get_by_role("button", name="Close").click()
    expect(dialog).to_be_hidden()

    box = page.get_by_role("textbox", name="Message")
    box.fill("typing a ? is just typing")
    expect(dialog).to_be_hidden()

    page.keyboard.press("Control+k")
    expect(page.get_by_role("searchbox", name="Search conversations")).to_be_focused()
    page.keyboard.press("Shift+Escape")
    expect(box).to_be_focused()
    page.locator("#messages").click()
    page.keyboard.press("/")
    expect(box).to_be_focused()
    expect(box).to_have_value("typing a ? is just typing")

    page.locator("#messages").click()
    page.keyboard.press("Control+Shift+C")
    page.wait_for_function("async () => (await navigator.clipboard.readText()) === 'Because of the **moon**.'")

    page.keyboard.press("Control+Shift+O")
    page.wait_for_url(f"{live_server.url}/")
    wait_connected(page)
    expect(page.get_by_role("heading", name="New chat")).to_be_visible()
    watch.assert_clean(page)


def test_on_a_phone_the_drawer_has_the_folders_and_the_menu(browser, live_server, alice):
    context, page, watch = new_page(browser, viewport=PHONE, is_mobile=True, has_touch=True)
    sign_in(page, live_server.url, "alice", PASSWORD)
    Folder.objects.create(owner=alice, name="Taxes")
    Conversation.objects.create(owner=alice, title="Receipts")
    page.reload()
    wait_connected(page)
    page.get_by_role("button", name="Conversations").click()
    page.wait_for_function("() => document.getElementById('sidebar').getBoundingClientRect().left >= 0")
    menu_button = page.get_by_role("button", name="Actions for Receipts")
    expect(menu_button).to_be_visible()
    assert menu_button.evaluate("(button) => getComputedStyle(button).opacity") == "1"  # no hover on a phone
    menu_button.click()
    page.get_by_role("menuitem", name="Move to Taxes").click()
    expect(item(folder(page, "Taxes"), "Receipts")).to_have_count(1)
    expect(page.locator("#sidebar")).to_be_visible()  # the drawer stays open
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    watch.assert_clean(page)
    context.close()


def test_another_tab_of_the_user_shows_the_change(page, live_server, alice):
    page, watch = page
    Conversation.objects.create(owner=alice, title="Receipts")
    page.goto(f"{live_server.url}/")
    wait_connected(page)
    other = another_tab(page, f"{live_server.url}/")

    create_folder(page, "Taxes")
    expect(folder(other, "Taxes")).to_have_count(1)
    open_menu(page, "Receipts")
    page.get_by_role("menuitem", name="Move to Taxes").click()
    expect(item(folder(other, "Taxes"), "Receipts")).to_have_count(1)
    # the live region reads a search's results, not the whole list fetched again
    expect(other.locator("#conversation-list")).to_have_attribute("aria-live", "off")
    watch.assert_clean(page)


def test_a_conversation_deleted_in_another_tab_leaves_its_folder_and_the_count_follows(page, live_server, alice):
    page, watch = page
    taxes = Folder.objects.create(owner=alice, name="Taxes")
    receipts = Conversation.objects.create(owner=alice, title="Receipts", folder=taxes)
    Conversation.objects.create(owner=alice, title="Invoices", folder=taxes)
    page.goto(f"{live_server.url}/")
    wait_connected(page)
    expect(folder_toggle(page, "Taxes")).to_have_accessible_name("Taxes 2 conversations")

    other = another_tab(page, f"{live_server.url}/c/{receipts.pk}/")
    other.locator("#delete-conversation-button").click()
    other.locator("#confirm-dialog").get_by_role("button", name="Delete").click()
    expect(item(folder(page, "Taxes"), "Receipts")).to_have_count(0)
    expect(folder_toggle(page, "Taxes")).to_have_accessible_name("Taxes 1 conversation")
    assert not Conversation.objects.filter(pk=receipts.pk).exists()
    watch.assert_clean(page)


def test_a_change_from_another_tab_while_renaming_keeps_the_keyboard_on_the_folder(page, live_server, alice):
    page, watch = page
    Folder.objects.create(owner=alice, name="Taxes")
    page.goto(f"{live_server.url}/")
    wait_connected(page)
    other = another_tab(page, f"{live_server.url}/")

    page.get_by_role("button", name="Rename folder Taxes").click()
    renamed = page.get_by_role("textbox", name="New name for folder Taxes")
    create_folder(other, "Receipts")  # the list changes meanwhile: fetched after the edit
    expect(folder(other, "Receipts")).to_have_count(1)
    page.wait_for_timeout(300)  # the change's notice reaches this tab while its field is open
    expect(folder(page, "Receipts")).to_have_count(0)
    renamed.press("Escape")
    expect(folder(page, "Receipts")).to_have_count(1)
    expect(folder_toggle(page, "Taxes")).to_be_focused()
    watch.assert_clean(page)
