"""A newcomer's first ten minutes in Debian's Chromium, through the visible controls: a refused send keeps the draft,
a message sent while a reply streams waits for it, deleting the open conversation leaves its address, reloading the
settings page after creating a key creates no second key, no page scrolls sideways on a phone, math is typeset and
stays inert, the account menu, cut-off replies."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from conversations.models import ApiKey, Conversation, Message, Model
from tests.browser.pages import last_reply, new_page, send, sign_in, wait_connected, wait_reply_done
from tests.chat_helpers import make_model
from tests.conftest import PASSWORD

expect.set_options(timeout=15_000)

pytestmark = [pytest.mark.browser, pytest.mark.slow]

PHONE = {"width": 375, "height": 740}


def model(dev_upstream, name: str, **switches) -> Model:
    return make_model(dev_upstream.v1(**switches), name=name, upstream_id="dev-chat")


def paste(page: Page, text: str) -> None:
    """As a paste: the whole text at once, then the input event the page listens to."""
    page.locator("#composer-input").evaluate(
        "(el, text) => { el.value = text; el.dispatchEvent(new Event('input', { bubbles: true })); }", text
    )


def test_a_refused_send_keeps_the_draft(page, live_server, alice, dev_upstream, nonce):
    page, watch = page
    model(dev_upstream, "quick", key=nonce, delay=0.002, tokens=8)
    page.reload()
    wait_connected(page)
    box = page.locator("#composer-input")
    counter = page.locator("#composer-count")
    expect(counter).to_be_hidden()

    # over the limit: refused before sending, with a counter, the draft stays
    paste(page, "x" * 200_000)
    expect(counter).to_be_visible()
    expect(counter).to_have_text("200,000 / 100,000")
    box.press("Enter")
    expect(page.locator("#composer-notice")).to_contain_text("at most 100,000 characters")
    assert len(box.input_value()) == 200_000
    expect(page.locator("#messages article.message")).to_have_count(0)
    assert not Message.objects.exists()
    # near the limit the counter shows, within it the send goes through
    paste(page, "y" * 95_000)
    expect(counter).to_have_text("95,000 / 100,000")
    paste(page, "")
    expect(counter).to_be_hidden()

    # an empty send says so
    box.press("Enter")
    expect(page.locator("#composer-notice")).to_contain_text("Type a message")

    # refused by the server (the conversation was deleted in another tab): the draft stays, Retry resends it
    send(page, "first")
    wait_reply_done(page)
    expect(box).to_have_value("")
    conversation = Conversation.objects.get()
    Conversation.objects.filter(pk=conversation.pk).delete()
    send(page, "my long careful question")
    error = page.locator(".message-error").last
    expect(error).to_contain_text("no such conversation")
    expect(box).to_have_value("my long careful question")
    expect(box).to_be_editable()

    # over budget: refused, the draft stays
    page.goto(f"{live_server.url}/")
    wait_connected(page)
    type(alice).objects.filter(pk=alice.pk).update(monthly_budget=0)
    send(page, "an expensive question")
    expect(page.locator(".message-error").last).to_contain_text("budget")
    expect(box).to_have_value("an expensive question")
    type(alice).objects.filter(pk=alice.pk).update(monthly_budget=None)
    page.locator(".message-error .retry").last.click()
    wait_reply_done(page)
    expect(box).to_have_value("")
    assert Message.objects.filter(role="user", content="an expensive question").count() == 1
    watch.assert_clean(page)


def test_a_message_sent_while_a_reply_streams_waits_for_it(page, dev_upstream, nonce):
    page, watch = page
    model(dev_upstream, "slow", key=nonce, delay=0.03, tokens=60)
    page.reload()
    wait_connected(page)
    send(page, "first question")
    expect(page.locator("#messages article.message.assistant[data-status=streaming]")).to_have_count(1)
    first_reply = int(last_reply(page).get_attribute("data-message-id"))
    send(page, "second question")
    notice = page.locator("#composer-notice")
    expect(notice).to_contain_text("Queued")
    expect(page.locator("#composer-input")).to_have_value("second question")
    expect(page.locator("#messages article.message.user")).to_have_count(1)
    # it goes once the first reply has ended, after that reply
    expect(page.locator("#messages article.message.user")).to_have_count(2, timeout=20_000)
    wait_reply_done(page)
    expect(page.locator("#composer-input")).to_have_value("")
    expect(notice).to_be_hidden()
    second = Message.objects.get(role="user", content="second question")
    assert second.parent_id == first_reply
    assert Message.objects.get(pk=first_reply).status == "complete"

    # a queued message can be taken back
    send(page, "third question")
    expect(page.locator("#messages article.message.assistant[data-status=streaming]")).to_have_count(0)
    send(page, "fourth")
    send(page, "fourth")  # not doubled
    page.wait_for_timeout(100)
    if page.locator("#composer-notice").is_visible():
        page.locator("#composer-notice").get_by_role("button", name="Cancel").click()
        expect(page.locator("#composer-input")).to_be_editable()
    wait_reply_done(page)
    watch.assert_clean(page)


def test_deleting_the_open_conversation_leaves_its_address(page, live_server, dev_upstream, nonce):
    page, watch = page
    model(dev_upstream, "quick", key=nonce, delay=0.002, tokens=8)
    page.reload()
    wait_connected(page)
    send(page, "short lived")
    wait_reply_done(page)
    conversation = Conversation.objects.get()
    expect(page).to_have_url(f"{live_server.url}/c/{conversation.pk}/")
    page.locator("#delete-conversation-button").click()
    page.locator("#confirm-dialog").get_by_role("button", name="Delete").click()
    expect(page).to_have_url(f"{live_server.url}/")
    wait_connected(page)  # the new page has loaded
    assert not Conversation.objects.exists()
    response = page.reload()
    assert response is not None and response.status == 200
    watch.assert_clean(page)


def test_rename_and_delete_reach_the_other_tabs(page, live_server, alice, dev_upstream, nonce):
    page, watch = page
    chat_model = model(dev_upstream, "quick", key=nonce, delay=0.002, tokens=8)
    tides = Conversation.objects.create(owner=alice, title="Tides", model=chat_model)
    Message.objects.create(conversation=tides, role="user", content="Why does the sea rise?")
    other_chat = Conversation.objects.create(owner=alice, title="Bread", model=chat_model)
    page.goto(f"{live_server.url}/c/{tides.pk}/")
    wait_connected(page)
    same = page.context.new_page()  # the same conversation in another tab
    same.goto(f"{live_server.url}/c/{tides.pk}/")
    wait_connected(same)
    elsewhere = page.context.new_page()  # another conversation: its sidebar lists this one
    elsewhere.goto(f"{live_server.url}/c/{other_chat.pk}/")
    wait_connected(elsewhere)

    page.get_by_role("button", name="Rename").click()
    title = page.get_by_role("textbox", name="Conversation title")
    title.fill("Moon and tides")
    title.press("Enter")
    expect(same.locator("#conversation-title")).to_have_text("Moon and tides")
    for tab in (same, elsewhere):
        expect(tab.locator(f"#conversation-list a[data-conversation-id='{tides.pk}']")).to_have_text("Moon and tides")

    page.locator("#delete-conversation-button").click()
    page.locator("#confirm-dialog").get_by_role("button", name="Delete").click()
    for tab in (page, same):
        expect(tab).to_have_url(f"{live_server.url}/")
        wait_connected(tab)
    expect(elsewhere.locator(f"#conversation-list a[data-conversation-id='{tides.pk}']")).to_have_count(0)
    expect(elsewhere).to_have_url(f"{live_server.url}/c/{other_chat.pk}/")
    assert page.reload().status == 200 and same.reload().status == 200
    watch.assert_clean(page)


def test_reloading_settings_after_creating_a_key_creates_no_second_key(page, live_server, alice):
    page, watch = page
    page.goto(f"{live_server.url}/settings/")
    page.get_by_label("Name (optional)").fill("laptop")
    page.get_by_role("button", name="Create key").click()
    raw = page.get_by_role("textbox", name="API key").input_value()
    assert raw and ApiKey.objects.filter(user=alice).count() == 1
    expect(page).to_have_url(f"{live_server.url}/settings/")
    page.get_by_role("button", name="Copy key").click()
    expect(page.get_by_role("button", name="Copy key")).to_have_text("Copied")
    assert page.evaluate("navigator.clipboard.readText()") == raw
    page.reload()
    assert ApiKey.objects.filter(user=alice).count() == 1
    expect(page.get_by_role("textbox", name="API key")).to_have_count(0)  # shown once
    watch.assert_clean(page)


def _scroll_width(page: Page) -> int:
    return page.evaluate("document.documentElement.scrollWidth")


def test_no_page_scrolls_sideways_on_a_phone(browser, live_server, alice, dev_upstream, nonce):
    model(dev_upstream, "a-model-with-a-rather-long-name", key=nonce, delay=0.002, tokens=40)
    anonymous, page, watch = new_page(browser, viewport=PHONE, is_mobile=True, has_touch=True)
    for path in ("/accounts/login/", "/accounts/signup/"):
        page.goto(f"{live_server.url}{path}")
        assert _scroll_width(page) <= 375, path
    anonymous.close()

    context, page, watch = new_page(browser, viewport=PHONE, is_mobile=True, has_touch=True)
    sign_in(page, live_server.url, "alice", PASSWORD)
    assert _scroll_width(page) <= 375
    send(page, "Show a table and some code, please")
    wait_reply_done(page)
    conversation = Conversation.objects.get()
    page.goto(f"{live_server.url}/settings/")
    page.get_by_label("Name (optional)").fill("a key with a long enough name")
    page.get_by_role("button", name="Create key").click()
    expect(page.get_by_role("textbox", name="API key")).to_be_visible()
    for path in (f"/c/{conversation.pk}/", "/usage/", "/settings/", "/accounts/password_change/"):
        page.goto(f"{live_server.url}{path}")
        if path.startswith("/c/"):
            wait_connected(page)
        assert _scroll_width(page) <= 375, path
    # the chat header takes one line
    page.goto(f"{live_server.url}/c/{conversation.pk}/")
    tops = page.evaluate(
        "() => [...document.querySelectorAll('.topbar > *, .topbar nav > *')].filter((el) => el.offsetParent)"
        ".map((el) => Math.round(el.getBoundingClientRect().top + el.getBoundingClientRect().height / 2))"
    )
    assert max(tops) - min(tops) <= 4, tops
    watch.assert_clean(page)
    context.close()


MATH = "\n\n".join(
    [
        r"Euler: $e^{i\pi} + 1 = 0$, prices $5 and $6 stay text, and \(a_1 * b_2 * c_3\) is inline.",
        "$$\n\\int_0^1 x^2 \\, dx = \\frac{1}{3}\n$$",
        r"\[\sqrt{2} \approx 1.414\]",
        "$<img src=x onerror=\"window.__pwned = 3\">$ and $\\href{javascript:window.__pwned=4}{click}$",
        r"\(\url{javascript:alert(1)}\) \(\htmlClass{x}{y}\) \(\includegraphics{https://example.com/x.png}\)",
    ]
)

# Nothing in the replies that can run or fetch: KaTeX's own elements are allowed only inside its output.
MATH_INERT = """() => {
  const bad = [];
  for (const el of document.querySelectorAll("#messages .content *")) {
    const tag = el.localName;
    const inKatex = el.closest(".katex, .katex-error");
    if (["script", "iframe", "object", "embed", "img", "image", "style", "link", "form", "foreignobject", "use"]
        .includes(tag)) bad.push(`element ${tag}`);
    if (["svg", "math", "path", "line"].includes(tag) && !inKatex) bad.push(`element ${tag} outside KaTeX`);
    for (const attr of el.attributes) {
      if (attr.name.startsWith("on") || ["src", "srcdoc", "href", "xlink:href", "action"].includes(attr.name)) {
        if (!(tag === "a" && attr.name === "href" && /^(https?:|mailto:)/i.test(attr.value)))
          bad.push(`${tag}[${attr.name}=${attr.value}]`);
      }
      if (attr.name === "style" && !inKatex) bad.push(`${tag}[style] outside KaTeX`);
      if (/javascript:|url\\(/i.test(attr.value)) bad.push(`${tag}[${attr.name}=${attr.value}]`);
    }
  }
  if (document.querySelector("#messages .katex a")) bad.push("a link in math");
  if (window.__pwned) bad.push(`ran: ${window.__pwned}`);
  return bad;
}"""


def test_math_is_typeset_live_and_after_reload_and_stays_inert(page, dev_upstream, nonce):
    page, watch = page
    make_model(dev_upstream.v1(key=nonce, echo=1, delay=0.004), name="echo", upstream_id="dev-chat")
    page.reload()
    wait_connected(page)
    send(page, MATH)
    expect(page.locator("#messages article.message.assistant[data-status=streaming]")).to_have_count(1)
    page.wait_for_function("() => document.querySelector('article.message.assistant .katex')")
    assert page.evaluate(MATH_INERT) == []
    wait_reply_done(page)
    reply = last_reply(page)
    for _ in range(2):
        content = reply.locator(".content")
        expect(content.locator(".math-inline > .katex")).to_have_count(6)
        expect(content.locator(".math-inline > .katex-error")).to_have_count(1)  # the TeX does not parse: shown as text
        expect(content.locator(".math-display .katex-display")).to_have_count(2)
        expect(content).to_contain_text("prices $5 and $6 stay text")
        # the TeX is there for a screen reader (MathML) and for copying
        expect(content.locator("annotation").first).to_have_text(r"e^{i\pi} + 1 = 0")
        assert (bad := page.evaluate(MATH_INERT)) == [], bad
        page.reload()
        wait_connected(page)
        reply = last_reply(page)
        reply.scroll_into_view_if_needed()
        page.wait_for_function("() => document.querySelector('article.message.assistant .katex')")
    stored = Message.objects.get(pk=int(reply.get_attribute("data-message-id")))
    assert stored.content == MATH
    watch.assert_clean(page)


def test_a_stopped_reply_is_marked_and_continues_and_the_editor_is_wide(page, dev_upstream, nonce):
    page, watch = page
    model(dev_upstream, "slow", key=nonce, delay=0.03, tokens=80)
    page.reload()
    wait_connected(page)
    send(page, "A long story")
    page.wait_for_function(
        "() => document.querySelector('article.message.assistant[data-status=streaming] .content')"
        "?.textContent.length > 5"
    )
    page.locator("#stop-button").click()
    reply = last_reply(page)
    expect(reply).to_have_attribute("data-status", "stopped")
    expect(reply.locator(".cutoff-badge")).to_have_text("Stopped")
    stopped_id = int(reply.get_attribute("data-message-id"))
    reply.get_by_role("button", name="Continue").click()
    expect(page.locator("#messages article.message.assistant")).to_have_count(2)
    wait_reply_done(page)
    follow_up = Message.objects.get(role="user", parent_id=stopped_id)
    assert follow_up.content.startswith("Continue")
    expect(page.locator(f"#message-{stopped_id}").get_by_role("button", name="Continue")).to_be_hidden()

    first = page.locator("#messages article.message.user").first
    first.get_by_role("button", name="Edit").click()
    editor = page.get_by_role("textbox", name="Edit your message")
    width = editor.evaluate("(el) => el.getBoundingClientRect().width")
    column = page.locator("#messages").evaluate("(el) => Math.min(el.clientWidth - 32, 820)")
    assert width >= column * 0.9, (width, column)
    editor.press("Escape")
    expect(editor).to_have_count(0)
    watch.assert_clean(page)
