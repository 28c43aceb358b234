"""The chat in Debian's Chromium (Playwright, sync API) against a live Daphne and the development upstream: streaming,
stop, regenerate and versions, edit and branch, rename, search, export, delete, settings and presets, hostile
markdown, reload mid-stream, the CSP, and the screenshots in docs/screenshots/."""

from __future__ import annotations

import json
import re

import pytest
from playwright.sync_api import Page, expect

from conversations.models import Conversation, Message, Model, Preset
from tests.browser.pages import (
    DESKTOP,
    HOSTILE,
    SCREENSHOTS,
    last_reply,
    new_page,
    send,
    sign_in,
    wait_connected,
    wait_reply_done,
)
from tests.chat_helpers import make_model
from tests.conftest import PASSWORD

expect.set_options(timeout=15_000)  # the live server's first reply loads the tokenizer

pytestmark = [pytest.mark.browser, pytest.mark.slow]



def model(dev_upstream, name: str, upstream_id: str = "dev-chat", **switches) -> Model:
    created = make_model(dev_upstream.v1(**switches), name=name, upstream_id=upstream_id)
    if upstream_id == "dev-complete":
        created.api = Model.Api.COMPLETIONS
        created.save()
    return created


def goto_chat(page: Page, url: str) -> None:
    page.goto(url)
    wait_connected(page)


def reply_text(page: Page) -> str:
    return last_reply(page).locator(".content").inner_text()


# Records, while a reply streams, every DOM change in #messages that is not inside that reply's element.
WATCH_MUTATIONS = """(id) => {
  window.__outside = [];
  window.__renders = 0;
  const reply = document.getElementById(`message-${id}`);
  new MutationObserver((records) => {
    if (reply.dataset.status !== "streaming") return;
    for (const r of records) {
      if (reply.contains(r.target)) {
        if (r.target.classList && r.target.classList.contains("content")) window.__renders++;
      } else window.__outside.push(`${r.type} ${r.target.nodeName}#${r.target.id || ""}.${r.target.className || ""}`);
    }
  }).observe(document.getElementById("messages"),
             { subtree: true, childList: true, characterData: true, attributes: true });
}"""


def test_a_reply_streams_stops_regenerates_and_switches_versions(page, dev_upstream, nonce):
    page, watch = page
    chat_model = model(dev_upstream, "slow", key=nonce, delay=0.03, tokens=90)
    goto_chat(page, page.url)
    expect(page.locator("#model-select")).to_have_value(chat_model.public_name)

    send(page, "Tell me about tides")
    streaming = page.locator("#messages article.message.assistant[data-status=streaming]")
    expect(streaming).to_have_count(1)
    reply_id = int(streaming.get_attribute("data-message-id"))
    page.evaluate(WATCH_MUTATIONS, reply_id)
    # tokens arrive before the reply is complete: the text grows while the reply is still streaming
    lengths = []
    for _ in range(4):
        page.wait_for_timeout(250)
        state = page.evaluate(
            "(id) => { const r = document.getElementById(`message-${id}`);"
            " return [r.dataset.status, r.querySelector('.content').textContent.length]; }",
            reply_id,
        )
        if state[0] == "streaming":
            lengths.append(state[1])
    assert len(lengths) >= 3 and lengths[-1] > lengths[0] > 0, lengths
    wait_reply_done(page)
    outside = page.evaluate("window.__outside")
    assert outside == [], f"while streaming, only the reply's element may change: {outside}"
    assert page.evaluate("window.__renders") > 1
    expect(page.locator("#announcer")).to_have_text("Reply finished.")
    assert Message.objects.get(pk=reply_id).status == "complete"
    expect(last_reply(page).locator(".usage")).to_contain_text("tokens")
    expect(page.locator("#stop-button")).to_be_hidden()

    # Stop: Esc while the second reply streams
    send(page, "And about waves?")
    expect(page.locator("#messages article.message.assistant[data-status=streaming]")).to_have_count(1)
    page.wait_for_function(
        "() => document.querySelector('article.message.assistant[data-status=streaming] .content')"
        "?.textContent.length > 5"
    )
    expect(page.locator("#stop-button")).to_be_visible()
    page.keyboard.press("Escape")
    expect(last_reply(page)).to_have_attribute("data-status", "stopped")
    stopped_id = int(last_reply(page).get_attribute("data-message-id"))
    stopped = Message.objects.get(pk=stopped_id)
    assert stopped.status == "stopped" and stopped.content
    expect(page.locator("#announcer")).to_have_text("Reply stopped.")

    # Regenerate: a new reply beside the stopped one, and "1 / 2" / "2 / 2" to go between them
    last_reply(page).get_by_role("button", name="Regenerate").click()
    expect(page.locator("#messages article.message.assistant[data-status=streaming]")).to_have_count(1)
    wait_reply_done(page)
    regenerated = last_reply(page)
    new_id = int(regenerated.get_attribute("data-message-id"))
    assert new_id != stopped_id
    expect(page.locator(f"#message-{stopped_id}")).to_have_count(0)
    expect(regenerated.locator(".version-count")).to_have_text("2 / 2")
    assert Conversation.objects.get().active_leaf_id == new_id

    regenerated.get_by_role("button", name="Previous version").click()
    expect(page.locator(f"#message-{stopped_id} .version-count")).to_have_text("1 / 2")
    expect(page.locator(f"#message-{new_id}")).to_have_count(0)
    assert page.locator(f"#message-{stopped_id} .content").inner_text().strip() == stopped.content.strip()
    assert Conversation.objects.get().active_leaf_id == stopped_id
    page.locator(f"#message-{stopped_id}").get_by_role("button", name="Next version").click()
    expect(page.locator(f"#message-{new_id} .version-count")).to_have_text("2 / 2")
    assert page.locator("#messages article.message").count() == 4
    page.reload()
    expect(page.locator(f"#message-{new_id} .version-count")).to_have_text("2 / 2")
    watch.assert_clean(page)


def test_edit_and_resend_branches_and_keyboard(page, dev_upstream, nonce):
    page, watch = page
    model(dev_upstream, "quick", key=nonce, delay=0.002, tokens=20)
    goto_chat(page, page.url)
    box = page.locator("#composer-input")
    box.click()
    box.press_sequentially("line one")
    box.press("Shift+Enter")
    box.press_sequentially("line two")
    box.press("Enter")  # Enter sends, Shift+Enter made a new line
    wait_reply_done(page)
    first_user = page.locator("#messages article.message.user").first
    first_id = int(first_user.get_attribute("data-message-id"))
    assert Message.objects.get(pk=first_id).content == "line one\nline two"
    expect(box).to_have_value("")
    send(page, "second question")
    wait_reply_done(page)
    expect(page.locator("#messages article.message")).to_have_count(4)

    first_user.get_by_role("button", name="Edit").click()
    editor = page.get_by_role("textbox", name="Edit your message")
    expect(editor).to_have_value("line one\nline two")
    editor.fill("line one, edited")
    editor.press("Enter")
    wait_reply_done(page)
    expect(page.locator("#messages article.message")).to_have_count(2)
    edited = page.locator("#messages article.message.user").first
    expect(edited.locator(".content")).to_have_text("line one, edited")
    expect(edited.locator(".version-count")).to_have_text("2 / 2")
    edited_id = int(edited.get_attribute("data-message-id"))
    assert Message.objects.get(pk=edited_id).parent_id == Message.objects.get(pk=first_id).parent_id

    edited.get_by_role("button", name="Previous version").click()
    expect(page.locator("#messages article.message")).to_have_count(4)
    expect(page.locator(f"#message-{first_id} .version-count")).to_have_text("1 / 2")
    expect(page.locator("#messages article.message.user").nth(1).locator(".content")).to_have_text("second question")
    page.locator(f"#message-{first_id}").get_by_role("button", name="Next version").click()
    expect(page.locator("#messages article.message")).to_have_count(2)

    # copy puts the message's markdown on the clipboard
    last_reply(page).get_by_role("button", name="Copy").first.click()
    stored = Message.objects.get(pk=int(last_reply(page).get_attribute("data-message-id"))).content
    assert page.evaluate("navigator.clipboard.readText()") == stored
    watch.assert_clean(page)


def test_rename_search_export_and_delete(page, live_server, alice, dev_upstream, nonce):
    page, watch = page
    chat_model = model(dev_upstream, "quick", key=nonce, delay=0.002, tokens=12)
    tides = Conversation.objects.create(owner=alice, title="Tides", model=chat_model)
    question = Message.objects.create(conversation=tides, role="user", content="Why does the sea rise?")
    answer = Message.objects.create(
        conversation=tides,
        role="assistant",
        parent=question,
        content="The moon pulls the **ocean**.",
        model_name=chat_model.public_name,
    )
    tides.active_leaf = answer
    tides.save()
    bread = Conversation.objects.create(owner=alice, title="Baking bread", model=chat_model)
    Message.objects.create(conversation=bread, role="user", content="How long should dough rest?")

    goto_chat(page, f"{live_server.url}/c/{tides.pk}/")
    expect(page.locator(f"#message-{answer.pk} .content strong")).to_have_text("ocean")

    page.get_by_role("button", name="Rename").click()
    title_input = page.get_by_role("textbox", name="Conversation title")
    title_input.fill("Moon and tides")
    title_input.press("Enter")
    expect(page.locator("#conversation-title")).to_have_text("Moon and tides")
    expect(page.locator(f"#conversation-list a[data-conversation-id='{tides.pk}']")).to_have_text("Moon and tides")
    assert Conversation.objects.get(pk=tides.pk).title == "Moon and tides"
    expect(page).to_have_title("Moon and tides · chatweb")

    search = page.get_by_role("searchbox", name="Search conversations")
    search.fill("ocean")  # matches a message's text, not a title
    expect(page.locator("#conversation-list li")).to_have_count(1)
    expect(page.locator("#conversation-list li .snippet")).to_contain_text("ocean")
    search.fill("BREAD")
    expect(page.locator("#conversation-list li")).to_have_count(1)
    expect(page.locator("#conversation-list li")).to_contain_text("Baking bread")
    search.fill("nothing like this")
    expect(page.locator("#conversation-list li")).to_have_text(re.compile("No conversation matches"))
    search.fill("")
    expect(page.locator("#conversation-list li")).to_have_count(2)

    with page.expect_download() as download_info:
        page.get_by_role("link", name="Export .md").click()
    exported = download_info.value
    assert exported.suggested_filename == f"chatweb-{tides.pk}-moon-and-tides.md"
    text = open(exported.path(), encoding="utf-8").read()  # noqa: SIM115
    assert text.startswith("# Moon and tides") and "Why does the sea rise?" in text and "**ocean**" in text
    as_json = page.request.get(f"{live_server.url}/c/{tides.pk}/export.json")
    data = json.loads(as_json.text())
    assert data["title"] == "Moon and tides" and [m["id"] for m in data["messages"]] == [question.pk, answer.pk]

    # delete a reply (with confirmation: Cancel keeps it, Delete removes it)
    page.locator(f"#message-{answer.pk}").get_by_role("button", name="Delete").click()
    dialog = page.locator("#confirm-dialog")
    expect(dialog).to_be_visible()
    dialog.get_by_role("button", name="Cancel").click()
    expect(page.locator(f"#message-{answer.pk}")).to_have_count(1)
    page.locator(f"#message-{answer.pk}").get_by_role("button", name="Delete").click()
    dialog.get_by_role("button", name="Delete").click()
    expect(page.locator(f"#message-{answer.pk}")).to_have_count(0)
    assert not Message.objects.filter(pk=answer.pk).exists()
    assert Conversation.objects.get(pk=tides.pk).active_leaf_id == question.pk

    # delete the conversation
    page.locator("#delete-conversation-button").click()
    expect(dialog).to_contain_text("Moon and tides")
    dialog.get_by_role("button", name="Delete").click()
    page.wait_for_url(f"{live_server.url}/")
    assert not Conversation.objects.filter(pk=tides.pk).exists()
    expect(page.locator("#conversation-list li")).to_have_count(1)
    watch.assert_clean(page)


INERT_CHECK = """() => {
  const root = document.getElementById("messages");
  const bad = [];
  for (const el of root.querySelectorAll("*")) {
    const tag = el.nodeName.toLowerCase();
    if (["script", "iframe", "object", "embed", "svg", "math", "img", "style", "link", "form", "base", "meta",
         "frame", "frameset", "input", "video", "audio", "source"].includes(tag)) bad.push(`element ${tag}`);
    for (const attr of el.attributes) {
      if (attr.name.startsWith("on")) bad.push(`${tag}[${attr.name}]`);
      if (["style", "src", "srcdoc", "action", "formaction", "xlink:href"].includes(attr.name))
        bad.push(`${tag}[${attr.name}]`);
    }
    if (tag === "a" && el.hasAttribute("href") && !/^(https?:|mailto:)/i.test(el.getAttribute("href")))
      bad.push(`href ${el.getAttribute("href")}`);
  }
  if (window.__pwned) bad.push(`ran: ${window.__pwned}`);
  return bad;
}"""

# The rendered reply as a comparable tree: tags, attributes (sorted) and text, without the page's additions
# (code-block bars, highlighting spans).
CANONICAL = """(root) => {
  const out = [];
  const walk = (node) => {
    for (const child of node.childNodes) {
      if (child.nodeType === 3) { if (child.textContent.trim()) out.push(`#${child.textContent.trim()}`); continue; }
      if (child.nodeType !== 1) continue;
      const tag = child.nodeName.toLowerCase();
      if (child.classList.contains("code-bar")) continue;
      const highlighting = tag === "span" && [...child.classList].some((c) => c.startsWith("hljs"));
      if (child.classList.contains("code-block") || highlighting) { walk(child); continue; }
      const classes = [...child.classList].filter((c) => c !== "hljs").join(" ");
      const attrs = [...child.attributes].filter((a) => !["data-highlighted", "data-language"].includes(a.name))
        .map((a) => a.name === "class" ? `class=${classes}` : `${a.name}=${a.value}`)
        .filter((a) => a !== "class=").sort();
      out.push(`<${tag} ${attrs.join(" ")}>`);
      walk(child);
      out.push(`</${tag}>`);
    }
  };
  walk(root);
  return out.join("\\n");
}"""


def test_hostile_markdown_stays_inert_live_and_after_reload(page, live_server, dev_upstream, nonce):
    page, watch = page
    model(dev_upstream, "echo", key=nonce, echo=1, delay=0.004)
    goto_chat(page, page.url)
    send(page, HOSTILE)
    expect(page.locator("#messages article.message.assistant[data-status=streaming]")).to_have_count(1)
    checks = 0
    while last_reply(page).get_attribute("data-status") == "streaming":
        assert page.evaluate(INERT_CHECK) == []
        checks += 1
        page.wait_for_timeout(40)
    assert checks >= 3, "the reply streamed too fast to be checked live"
    wait_reply_done(page)
    reply = Message.objects.get(pk=int(last_reply(page).get_attribute("data-message-id")))
    assert reply.content == HOSTILE
    assert page.evaluate(INERT_CHECK) == []
    content = last_reply(page).locator(".content")
    expect(content).to_contain_text("<script>window.__pwned = 1; alert('script')</script>")  # raw HTML is text
    expect(content.get_by_role("link", name="fine link")).to_have_attribute("href", "https://example.com/safe")
    expect(content.get_by_role("link", name="fine link")).to_have_attribute("rel", "noopener noreferrer nofollow")
    expect(page.locator("#messages article.message.user .content")).to_have_text(HOSTILE)

    # one policy: the live renderer gives the same tree as the server's rendering, for this corpus
    live = page.evaluate(
        f"""(text) => {{ const div = document.createElement("div"); div.append(window.chatwebRender.fragment(text));
                        return ({CANONICAL})(div); }}""",
        reply.content,
    )
    stored = page.evaluate(
        f"""(html) => {{ const t = document.createElement("template"); t.innerHTML = html;
                        return ({CANONICAL})(t.content); }}""",
        str(reply_html(reply)),
    )
    assert live == stored

    page.reload()
    wait_connected(page)
    expect(last_reply(page).locator(".content")).to_contain_text("fine link")
    page.mouse.move(300, 300)
    page.locator("#messages").hover()
    assert page.evaluate(INERT_CHECK) == []
    watch.assert_clean(page)


def reply_html(message: Message) -> str:
    from conversations.chat.rendering import render_markdown

    return render_markdown(message.content)


def test_reload_mid_stream_and_the_reply_continues(page, dev_upstream, nonce):
    page, watch = page
    model(dev_upstream, "slow", key=nonce, delay=0.03, tokens=110)
    goto_chat(page, page.url)
    send(page, "A long answer, please")
    streaming = page.locator("#messages article.message.assistant[data-status=streaming]")
    expect(streaming).to_have_count(1)
    reply_id = int(streaming.get_attribute("data-message-id"))
    page.wait_for_function(
        "(id) => document.querySelector(`#message-${id} .content`).textContent.length > 40", arg=reply_id
    )
    page.reload()
    wait_connected(page)
    reply = page.locator(f"#message-{reply_id}")
    expect(reply).to_have_attribute("data-status", "streaming")
    before = len(reply.locator(".content").inner_text())
    page.wait_for_function(
        "([id, n]) => document.querySelector(`#message-${id} .content`).textContent.length > n",
        arg=[reply_id, before + 20],
    )
    wait_reply_done(page)
    stored = Message.objects.get(pk=reply_id)
    assert stored.status == "complete"
    assert page.evaluate(f"document.querySelector('#message-{reply_id} template.source').content.textContent") == (
        stored.content
    )
    expect(page.locator("#stop-button")).to_be_hidden()
    watch.assert_clean(page)


def test_settings_presets_reasoning_and_completion_models(page, live_server, alice, dev_upstream, nonce):
    page, watch = page
    chat_model = model(dev_upstream, "quick", key=nonce, delay=0.002, tokens=15)
    reasoner = model(dev_upstream, "thinker", upstream_id="dev-reasoner", key=nonce, delay=0.002, tokens=25)
    completer = model(dev_upstream, "plain", upstream_id="dev-complete", key=nonce, delay=0.002, tokens=15)
    goto_chat(page, page.url)

    page.get_by_role("button", name="Parameters", exact=True).click()
    temperature = page.get_by_label("temperature", exact=True)
    temperature.fill("3")
    expect(page.locator("#error-temperature")).to_have_text("temperature must be a number between 0 and 2.")
    expect(temperature).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#help-top_p")).to_contain_text("Greater than 0 and at most 1.")
    expect(temperature).to_have_attribute("max", "2")
    send(page, "not sent")
    expect(page.locator("#messages article.message")).to_have_count(0)
    expect(temperature).to_be_focused()
    temperature.fill("0.5")
    expect(page.locator("#error-temperature")).to_be_hidden()
    page.get_by_label("max_tokens").fill("40")
    page.get_by_label("System prompt").fill("Be brief.")
    page.get_by_label("Preset name").fill("Brief")
    page.get_by_role("button", name="Save as preset").click()
    expect(page.locator("#preset-list")).to_contain_text("Brief")
    preset = Preset.objects.get(owner=alice, name="Brief")
    assert preset.params == {"temperature": 0.5, "max_tokens": 40} and preset.system_prompt == "Be brief."
    page.get_by_role("button", name="Done").click()
    expect(page.locator("#params-panel")).to_be_hidden()
    expect(page.locator("#active-settings")).to_have_text("system prompt · temperature 0.5 · max_tokens 40")
    send(page, "hello with settings")
    wait_reply_done(page)
    conversation = Conversation.objects.get()
    assert conversation.params == {"temperature": 0.5, "max_tokens": 40}
    assert conversation.system_prompt == "Be brief."
    page.reload()
    page.get_by_role("button", name="Parameters", exact=True).click()
    expect(page.get_by_label("temperature", exact=True)).to_have_value("0.5")  # kept per conversation
    expect(page.get_by_label("System prompt")).to_have_value("Be brief.")

    # a new chat from the preset, with the reasoning model: reasoning apart from the answer, collapsed
    goto_chat(page, f"{live_server.url}/")
    expect(page.locator("#active-settings")).to_have_text("")
    page.locator(".preset-chips").get_by_role("button", name="Brief").click()
    expect(page.locator("#active-settings")).to_have_text("system prompt · temperature 0.5 · max_tokens 40")
    page.locator("#model-select").select_option(reasoner.public_name)
    send(page, "think first")
    wait_reply_done(page)
    reasoning = last_reply(page).locator("details.reasoning")
    expect(reasoning).to_have_count(1)
    expect(reasoning).not_to_have_attribute("open", "")
    expect(reasoning.locator(".reasoning-text")).to_be_hidden()
    stored = Message.objects.get(pk=int(last_reply(page).get_attribute("data-message-id")))
    assert stored.reasoning and stored.content and stored.reasoning not in stored.content
    reasoning.locator("summary").click()
    expect(reasoning.locator(".reasoning-text")).to_have_text(stored.reasoning)

    # delete the preset from the panel
    page.get_by_role("button", name="Parameters", exact=True).click()
    page.get_by_role("button", name="Delete preset Brief").click()
    page.locator("#confirm-dialog").get_by_role("button", name="Delete").click()
    expect(page.locator("#preset-list")).not_to_contain_text("Brief")
    assert not Preset.objects.filter(pk=preset.pk).exists()
    page.keyboard.press("Escape")

    # a completion-only model works the same
    goto_chat(page, f"{live_server.url}/")
    page.locator("#model-select").select_option(completer.public_name)
    send(page, "Once upon a time")
    wait_reply_done(page)
    done = Message.objects.get(pk=int(last_reply(page).get_attribute("data-message-id")))
    assert done.status == "complete" and done.content and done.model_id == completer.pk
    assert chat_model.pk  # the chat model stayed the default
    watch.assert_clean(page)


def _no_horizontal_scroll(page: Page) -> None:
    width = page.evaluate("document.documentElement.clientWidth")
    assert page.evaluate("document.documentElement.scrollWidth") <= width


UNLABELLED = """() => [...document.querySelectorAll("button, input, select, textarea, a[href]")]
  .filter((el) => el.offsetParent !== null && el.type !== "hidden")
  .filter((el) => !(el.getAttribute("aria-label") || (el.labels && el.labels.length) || el.textContent.trim()))
  .map((el) => el.outerHTML.slice(0, 80))"""


def test_screenshots_light_dark_streaming_mobile_and_usage(browser, live_server, alice, dev_upstream, nonce):
    chat_model = model(dev_upstream, "dev", key=nonce, delay=0.03)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    question = "How do I read a CSV file and sum a column? Show a short example"  # the dev model answers with code

    context, page, watch = new_page(browser, viewport=DESKTOP, color_scheme="light")
    sign_in(page, live_server.url, "alice", PASSWORD)
    send(page, question)
    page.wait_for_function(
        "() => document.querySelector('article.message.assistant[data-status=streaming] .code-block .hljs-keyword')"
        " && document.querySelector('article.message.assistant .content').textContent.length > 420"
    )
    page.screenshot(path=str(SCREENSHOTS / "streaming-code.png"))
    wait_reply_done(page)
    expect(last_reply(page).locator(".code-block .code-language")).to_have_text("python")
    expect(last_reply(page).get_by_role("button", name="Copy python code")).to_be_visible()
    conversation = Conversation.objects.get()
    Conversation.objects.filter(pk=conversation.pk).update(title="Summing a CSV column")
    for title in ("Tide tables for the weekend", "A bread recipe with rye", "Renaming files in bash"):
        Conversation.objects.create(owner=alice, title=title, model=chat_model)
    page.goto(f"{live_server.url}/c/{conversation.pk}/")
    wait_connected(page)
    page.locator("#messages").evaluate("el => { el.scrollTop = 0; }")
    page.wait_for_function("() => document.querySelector('.content.markdown .code-block')")
    assert page.evaluate(UNLABELLED) == []
    page.screenshot(path=str(SCREENSHOTS / "chat-light.png"))
    page.get_by_role("button", name="Parameters", exact=True).click()
    page.get_by_label("temperature", exact=True).fill("0.7")
    page.screenshot(path=str(SCREENSHOTS / "settings-panel.png"))
    watch.assert_clean(page)
    context.close()

    context, page, watch = new_page(browser, viewport=DESKTOP, color_scheme="dark")
    sign_in(page, live_server.url, "alice", PASSWORD)
    page.goto(f"{live_server.url}/c/{conversation.pk}/")
    wait_connected(page)
    page.wait_for_function("() => document.querySelector('.content.markdown .code-block')")
    page.screenshot(path=str(SCREENSHOTS / "chat-dark.png"))
    watch.assert_clean(page)
    context.close()

    context, page, watch = new_page(
        browser, viewport={"width": 360, "height": 740}, device_scale_factor=2, is_mobile=True, has_touch=True
    )
    sign_in(page, live_server.url, "alice", PASSWORD)
    page.goto(f"{live_server.url}/c/{conversation.pk}/")
    wait_connected(page)
    page.wait_for_function("() => document.querySelector('.content.markdown .code-block')")
    _no_horizontal_scroll(page)
    expect(page.locator("#model-select")).to_be_visible()
    expect(page.locator("#composer-input")).to_be_visible()
    assert page.evaluate(UNLABELLED) == []
    page.screenshot(path=str(SCREENSHOTS / "chat-mobile-360.png"))
    page.get_by_role("button", name="Conversations").click()
    expect(page.locator("#sidebar")).to_be_visible()
    page.wait_for_function("() => document.getElementById('sidebar').getBoundingClientRect().left >= 0")
    page.wait_for_timeout(300)  # the drawer's slide
    expect(page.locator("#conversation-list li")).to_have_count(4)
    page.screenshot(path=str(SCREENSHOTS / "chat-mobile-360-conversations.png"))
    page.mouse.click(340, 500)  # beside the drawer
    expect(page.locator("#sidebar")).to_be_hidden()
    watch.assert_clean(page)
    context.close()

    context, page, watch = new_page(browser, viewport=DESKTOP, color_scheme="light")
    sign_in(page, live_server.url, "alice", PASSWORD)
    response = page.goto(f"{live_server.url}/usage/")
    if response is not None and response.status == 200:
        page.screenshot(path=str(SCREENSHOTS / "usage.png"), full_page=True)
    context.close()


def test_the_chat_page_runs_under_the_csp(page, live_server):
    page, watch = page
    response = page.goto(f"{live_server.url}/")
    wait_connected(page)
    policy = response.headers.get("content-security-policy", "")
    if policy:  # the policy of chatweb/security.py: no inline script or style anywhere
        assert "'unsafe-inline'" not in policy and "'unsafe-eval'" not in policy
    page.get_by_role("button", name="Parameters", exact=True).click()
    page.get_by_role("button", name="Close parameters").click()
    assert watch.csp_violations(page) == []
    watch.assert_clean(page)
