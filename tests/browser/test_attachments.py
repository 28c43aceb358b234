"""A person attaches a photo and a PDF in Debian's Chromium through the composer's file button, a vision model answers
about both, the attachments are there after a reload, and nobody else can reach them."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from conversations.models import Attachment, Message
from tests import attachment_files as files
from tests.browser.pages import last_reply, new_page, send, sign_in, wait_connected, wait_reply_done
from tests.chat_helpers import make_model
from tests.conftest import PASSWORD

expect.set_options(timeout=15_000)

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def test_a_photo_and_a_pdf_reach_a_vision_model_stay_after_reload_and_are_private(
    browser, live_server, alice, bob, dev_upstream, nonce
):
    model = make_model(dev_upstream.v1(key=nonce, delay=0.002), name="eyes", upstream_id="dev-vision")
    model.vision = True
    model.save()
    context, page, watch = new_page(browser, viewport={"width": 1280, "height": 800})
    sign_in(page, live_server.url, "alice", PASSWORD)
    expect(page.locator("#model-select option", has_text="images")).to_have_count(1)

    # the visible button opens the file input; two files, each a chip with its name, a thumbnail for the photo
    expect(page.locator("label[for=attachment-input]")).to_be_visible()
    page.set_input_files("#attachment-input", [
        {"name": "photo.png", "mimeType": "image/png", "buffer": files.png(120, 80)},
        {"name": "report.pdf", "mimeType": "application/pdf", "buffer": files.pdf("Tides rise twice every day")},
    ])
    chips = page.locator("#composer-attachments .attachment-chip")
    expect(chips).to_have_count(2)
    expect(chips.nth(0)).to_contain_text("photo.png")
    expect(chips.nth(1)).to_contain_text("report.pdf")
    expect(chips.nth(0).locator("img.attachment-thumb")).to_be_visible()
    expect(page.locator("#composer-attachments .attachment-chip[data-attachment-id]")).to_have_count(2)

    # a third file removed before sending is not sent
    page.set_input_files("#attachment-input", [{"name": "extra.txt", "mimeType": "text/plain", "buffer": b"nope"}])
    expect(chips).to_have_count(3)
    page.get_by_role("button", name="Remove extra.txt").click()
    expect(chips).to_have_count(2)

    send(page, "What do you see?")
    wait_reply_done(page)
    reply = last_reply(page)
    expect(reply).to_contain_text("I received 1 image (120x80)")
    expect(reply).to_contain_text("report.pdf Tides rise twice every day")
    expect(page.locator("#composer-attachments .attachment-chip")).to_have_count(0)
    user_message = page.locator("#messages article.message.user").last
    expect(user_message.locator(".message-attachments .attachment")).to_have_count(2)

    # after a reload: the message shows both, the photo as a loaded image
    page.reload()
    wait_connected(page)
    user_message = page.locator("#messages article.message.user").last
    expect(user_message.locator(".message-attachments .attachment")).to_have_count(2)
    thumb = user_message.locator("img.attachment-thumb")
    expect(thumb).to_have_attribute("alt", "photo.png")
    page.wait_for_function(
        "() => { const i = document.querySelector('#messages .message-attachments img'); "
        "return i && i.complete && i.naturalWidth === 120; }"
    )
    expect(user_message.locator("a.attachment-file")).to_have_text("report.pdf")
    watch.assert_clean(page)

    ids = list(Attachment.objects.filter(messages__role=Message.Role.USER).values_list("public_id", flat=True))
    assert len(ids) == 2 and not Attachment.objects.filter(name="extra.txt", messages__isnull=False).exists()
    own = page.request.get(f"{live_server.url}/attachments/{ids[0]}/")
    assert own.status == 200
    context.close()

    # Bob, signed in, gets 404 for each; a signed-out visitor gets the login page, never the file
    context, page, watch = new_page(browser)
    sign_in(page, live_server.url, "bob", PASSWORD)
    for attachment_id in ids:
        answer = page.request.get(f"{live_server.url}/attachments/{attachment_id}/", max_redirects=0)
        assert answer.status == 404
    context.close()
    context, page, watch = new_page(browser)
    for attachment_id in ids:
        answer = page.request.get(f"{live_server.url}/attachments/{attachment_id}/", max_redirects=0)
        assert answer.status == 302 and "/accounts/login/" in answer.headers["location"]
    context.close()


_DROP_OR_PASTE = """([kind, name, type, b64]) => {
    const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
    const data = new DataTransfer();
    data.items.add(new File([bytes], name, { type }));
    if (kind === "paste") {
        const input = document.getElementById("composer-input");
        input.focus();
        const event = new ClipboardEvent("paste", { clipboardData: data, bubbles: true, cancelable: true });
        input.dispatchEvent(event);
        return event.defaultPrevented;
    }
    const form = document.getElementById("composer");
    form.dispatchEvent(new DragEvent("dragenter", { dataTransfer: data, bubbles: true, cancelable: true }));
    const over = new DragEvent("dragover", { dataTransfer: data, bubbles: true, cancelable: true });
    form.dispatchEvent(over);
    const drop = new DragEvent("drop", { dataTransfer: data, bubbles: true, cancelable: true });
    form.dispatchEvent(drop);
    return over.defaultPrevented && drop.defaultPrevented;
}"""


@pytest.mark.parametrize(
    ("how", "name", "mime", "data", "answer"),
    [
        ("paste", "image.png", "image/png", files.png(90, 60), "I received 1 image (90x60)"),
        ("drop", "notes.md", "text/markdown", b"# Tides\nThe moon pulls the sea", "notes.md # Tides The moon"),
    ],
)
def test_a_pasted_image_or_a_dropped_file_becomes_a_chip_and_goes_with_the_message(
    browser, live_server, alice, dev_upstream, nonce, how, name, mime, data, answer
):
    import base64

    model = make_model(dev_upstream.v1(key=nonce, delay=0.002), name="eyes", upstream_id="dev-vision")
    model.vision = True
    model.save()
    context, page, watch = new_page(browser, viewport={"width": 1280, "height": 800})
    sign_in(page, live_server.url, "alice", PASSWORD)
    wait_connected(page)

    handled = page.evaluate(_DROP_OR_PASTE, [how, name, mime, base64.b64encode(data).decode()])
    assert handled  # the page took the event (a paste of text or a drop elsewhere would not be)
    chip = page.locator("#composer-attachments .attachment-chip")
    expect(chip).to_have_count(1)
    expect(chip).to_be_visible()
    expect(chip).to_contain_text(name)
    expect(page.locator("#composer-attachments .attachment-chip[data-attachment-id]")).to_have_count(1)
    if mime.startswith("image/"):  # the chip shows the server's thumbnail, not the file itself
        thumb = chip.locator("img.attachment-thumb")
        expect(thumb).to_have_attribute("src", re.compile(r"^/attachments/[^/]+/thumbnail/$"))
        page.wait_for_function(
            "() => { const i = document.querySelector('#composer-attachments img.attachment-thumb'); "
            "return i && i.complete && i.naturalWidth === 90; }"
        )

    send(page, "What is this?")
    wait_reply_done(page)
    expect(last_reply(page)).to_contain_text(answer)
    expect(page.locator("#composer-attachments .attachment-chip")).to_have_count(0)
    user_message = page.locator("#messages article.message.user").last
    expect(user_message.locator(".message-attachments .attachment")).to_have_count(1)
    expect(user_message.locator(".attachment-name")).to_have_text(name)
    watch.assert_clean(page)
    context.close()
    sent = Attachment.objects.get(messages__role=Message.Role.USER)
    assert sent.name == name and sent.owner == alice
