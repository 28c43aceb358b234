"""Attachments end to end without a browser: the upload endpoint and its refusals, the file to its owner only,
`chat.send` with attachments over the real websocket to the development upstream (which records exactly what it
received), the vision rule, and the files going with their conversation and account."""

from __future__ import annotations

import base64
import io
import re
from decimal import Decimal

import pytest
from channels.db import database_sync_to_async
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from PIL import Image

from conversations.chat import generation
from conversations.models import Attachment, Conversation, Message, Model, UsageRecord
from tests import attachment_files as files
from tests.chat_helpers import chat_send, connect, make_model, send, until
from tests.conftest import PASSWORD

db = database_sync_to_async


@pytest.fixture(autouse=True)
def _own_storage(attachment_storage):
    """Every test of this file stores its files in its own folder (tests/chat/conftest.py)."""


def client_for(user) -> Client:
    client = Client()
    assert client.login(username=user.username, password=PASSWORD)
    return client


def upload(client: Client, name: str, data: bytes, content_type: str = "application/octet-stream"):
    return client.post("/attachments/", {"file": SimpleUploadedFile(name, data, content_type=content_type)})


# --- upload ---------------------------------------------------------------------------------------------------
@pytest.mark.django_db
def test_an_image_is_stored_reencoded_without_its_metadata_and_scaled(alice, attachment_storage):
    response = upload(client_for(alice), "holiday.jpg", files.jpeg_with_gps(3000, 1000), "image/jpeg")
    assert response.status_code == 201
    body = response.json()
    assert set(body) == {"id", "name", "kind", "content_type", "size"}
    assert body["name"] == "holiday.jpg" and body["kind"] == "image" and body["content_type"] == "image/jpeg"
    attachment = Attachment.objects.get(public_id=body["id"])
    assert body["size"] == attachment.size
    stored = attachment.file.open("rb").read()
    assert len(stored) == body["size"]
    image = Image.open(io.BytesIO(stored))
    assert image.size == (2048, 683)  # the long side fits the default limit
    assert not image.getexif()  # GPS position and camera gone
    # stored under its unguessable id, never the person's file name
    assert "holiday" not in attachment.file.name and body["id"] in attachment.file.name
    assert len(body["id"]) >= 32


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("name", "data", "kind", "content_type", "text"),
    [
        ("report.pdf", files.pdf("Quarterly tides rose sharply"), "document", "application/pdf",
         "Quarterly tides rose sharply"),
        ("notes.docx", files.docx("First line of notes", "Second"), "document",
         "application/vnd.openxmlformats-officedocument.wordprocessingml.document", "First line of notes\nSecond"),
        ("data.csv", b"a,b\n1,2\n", "document", "text/csv", "a,b\n1,2\n"),
        ("main.py", b"print('hi')\n", "document", "text/plain", "print('hi')\n"),
        ("frame.gif", None, "image", "image/png", ""),
    ],
)
def test_each_supported_type_is_read_by_its_content(alice, name, data, kind, content_type, text):
    if data is None:
        out = io.BytesIO()
        Image.new("P", (10, 10)).save(out, "GIF")
        data = out.getvalue()
    response = upload(client_for(alice), name, data)
    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["kind"], body["content_type"]) == (kind, content_type)
    assert Attachment.objects.get(public_id=body["id"]).text == text


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("name", "data", "status", "code"),
    [
        ("broken.pdf", b"%PDF-1.4\nthis is not really a pdf", 400, "unreadable"),
        ("locked.pdf", files.encrypted_pdf(), 400, "unreadable"),
        ("photo.png", b"<svg xmlns='http://www.w3.org/2000/svg'><script>alert(1)</script></svg>", 400, "unreadable"),
        ("photo.jpg", b"<!doctype html><html><script>alert(1)</script></html>", 400, "unreadable"),
        ("truncated.png", files.png()[:60], 400, "unreadable"),
        ("bomb.png", files.decompression_bomb_png(), 413, "too_large"),
        ("bomb.docx", files.zip_bomb_docx(), 413, "too_large"),
        ("program.exe", b"MZ\x90\x00\x03\x00\x00\x00" + bytes(range(256)) * 4, 415, "unsupported_type"),
        ("archive.zip", None, 415, "unsupported_type"),
    ],
)
def test_bad_files_are_refused_with_a_clear_error_and_nothing_is_stored(alice, attachment_storage, name, data,
                                                                       status, code):
    if data is None:
        out = io.BytesIO()
        import zipfile

        with zipfile.ZipFile(out, "w") as archive:
            archive.writestr("readme.txt", "hello")
        data = out.getvalue()
    response = upload(client_for(alice), name, data)
    assert response.status_code == status, response.content
    error = response.json()["error"]
    assert error["code"] == code and error["message"]
    assert not Attachment.objects.exists()
    assert not any(p.is_file() for p in attachment_storage.rglob("*")) if attachment_storage.exists() else True


@pytest.mark.django_db
def test_size_limit_and_quota(alice, settings):
    client = client_for(alice)
    settings.CHATWEB_ATTACHMENT_MAX_BYTES = 1000
    response = upload(client, "big.txt", b"x" * 1001)
    assert response.status_code == 413 and response.json()["error"]["code"] == "too_large"
    settings.CHATWEB_ATTACHMENT_MAX_BYTES = 20 * 1024 * 1024
    settings.CHATWEB_ATTACHMENT_QUOTA_BYTES = 1500
    assert upload(client, "a.txt", b"a" * 1000).status_code == 201
    response = upload(client, "b.txt", b"b" * 1000)
    assert response.status_code == 413 and "quota" in response.json()["error"]["message"]
    assert Attachment.objects.count() == 1


@pytest.mark.django_db
def test_upload_needs_a_signed_in_user_a_file_and_the_csrf_token(alice):
    anonymous = Client()
    assert upload(anonymous, "a.txt", b"hello").status_code == 401
    assert client_for(alice).post("/attachments/", {}).status_code == 400
    strict = Client(enforce_csrf_checks=True)
    strict.login(username="alice", password=PASSWORD)
    assert upload(strict, "a.txt", b"hello").status_code == 403
    assert not Attachment.objects.exists()


# --- the file, to its owner only -----------------------------------------------------------------------------
@pytest.mark.django_db
def test_the_file_goes_to_its_owner_only(alice, bob):
    owner = client_for(alice)
    image_id = upload(owner, "dot.png", files.png()).json()["id"]
    doc_id = upload(owner, "report.pdf", files.pdf("hello")).json()["id"]

    image = owner.get(f"/attachments/{image_id}/")
    assert image.status_code == 200 and image["Content-Type"] == "image/png"
    assert image["X-Content-Type-Options"] == "nosniff"
    assert Image.open(io.BytesIO(b"".join(image.streaming_content))).size == (64, 48)
    document = owner.get(f"/attachments/{doc_id}/")
    assert document.status_code == 200 and document["Content-Type"] == "application/pdf"
    assert document["Content-Disposition"].startswith("attachment") and "report.pdf" in document["Content-Disposition"]
    assert document["X-Content-Type-Options"] == "nosniff"

    other = client_for(bob)
    for attachment_id in (image_id, doc_id, "not-an-id"):
        assert other.get(f"/attachments/{attachment_id}/").status_code == 404
    assert Client().get(f"/attachments/{image_id}/").status_code == 302  # signed out: to the login page


# --- chat.send with attachments ------------------------------------------------------------------------------
def _vision_model(dev_upstream, nonce: str, *, vision: bool = True, upstream_id: str = "dev-vision") -> Model:
    model = make_model(dev_upstream.v1(key=nonce), upstream_id=upstream_id)
    model.vision = vision
    model.save()
    return model


def _upload_as(user, name: str, data: bytes) -> str:
    return client_for(user).post("/attachments/", {"file": SimpleUploadedFile(name, data)}).json()["id"]


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("upstream_http")
async def test_send_with_an_image_and_a_pdf_goes_upstream_as_content_parts(alice, dev_upstream, nonce):
    model = await db(_vision_model)(dev_upstream, nonce)
    image_id = await db(_upload_as)(alice, "photo.png", files.png(64, 48))
    pdf_id = await db(_upload_as)(alice, "report.pdf", files.pdf("Quarterly tides rose sharply this spring"))
    ws = await connect(alice)
    await send(ws, chat_send(model.public_name, "What are these?", attachments=[image_id, pdf_id]))
    started, _ = await until(ws, "chat.started")
    assert [a["id"] for a in started["attachments"]] == [image_id, pdf_id]
    assert started["attachments"][0] == {"id": image_id, "name": "photo.png", "kind": "image",
                                         "content_type": "image/png", "size": started["attachments"][0]["size"]}
    _done, frames = await until(ws, "chat.done")
    await generation.wait_for_replies()
    await ws.disconnect()
    answer = "".join(f["content"] for f in frames if f["type"] == "chat.delta")
    assert "I received 1 image (64x48)" in answer
    assert "begins: report.pdf Quarterly tides rose sharply" in answer

    received = dev_upstream.received(nonce)[-1]
    user = received[-1]
    assert user["role"] == "user"
    parts = user["content"]
    assert parts[0] == {"type": "text", "text": "What are these?"}
    assert parts[1] == {"type": "text", "text": "report.pdf\n\nQuarterly tides rose sharply this spring"}
    assert parts[2]["type"] == "image_url"
    url = parts[2]["image_url"]["url"]
    assert url.startswith("data:image/png;base64,")
    assert Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).size == (64, 48)

    # the user's message keeps them; the attachments go with the conversation now
    message = await db(lambda: Message.objects.get(pk=started["user_message_id"]))()
    kept = await db(lambda: sorted(message.attachments.values_list("public_id", flat=True)))()
    assert kept == sorted([image_id, pdf_id])
    conversation_ids = await db(lambda: set(Attachment.objects.values_list("conversation_id", flat=True)))()
    assert conversation_ids == {started["conversation_id"]}


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("upstream_http")
async def test_an_image_to_a_model_without_vision_is_refused_before_anything_goes_upstream(alice, dev_upstream,
                                                                                          nonce):
    model = await db(_vision_model)(dev_upstream, nonce, vision=False, upstream_id="dev-chat")
    image_id = await db(_upload_as)(alice, "photo.png", files.png())
    ws = await connect(alice)
    await send(ws, chat_send(model.public_name, "What is this?", attachments=[image_id]))
    error, _ = await until(ws, "chat.error")
    assert error["code"] == "attachment_unsupported" and error["request_id"] == "r1"
    await ws.disconnect()
    assert dev_upstream.stats(nonce)["requests"] == 0
    assert await db(lambda: (Message.objects.count(), Attachment.objects.filter(public_id=image_id).exists()))() == (
        0, True)
    # documents are text: any model takes them
    doc_id = await db(_upload_as)(alice, "notes.txt", b"plain notes")
    ws = await connect(alice)
    await send(ws, chat_send(model.public_name, "Summarise", attachments=[doc_id]))
    await until(ws, "chat.done")
    await generation.wait_for_replies()
    await ws.disconnect()


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("upstream_http")
async def test_nobody_can_send_another_users_attachment(alice, bob, dev_upstream, nonce):
    model = await db(_vision_model)(dev_upstream, nonce)
    alices = await db(_upload_as)(alice, "photo.png", files.png())
    ws = await connect(bob)
    for ids in ([alices], ["no-such-id"]):
        await send(ws, chat_send(model.public_name, "Look", attachments=ids))
        error, _ = await until(ws, "chat.error")
        assert error["code"] == "not_found"
    await send(ws, chat_send(model.public_name, "Look", attachments="x"))
    error, _ = await until(ws, "chat.error")
    assert error["code"] == "bad_request"
    await ws.disconnect()
    assert await db(Message.objects.count)() == 0
    assert dev_upstream.stats(nonce)["requests"] == 0


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("upstream_http")
async def test_regenerate_and_edit_keep_the_attachments(alice, dev_upstream, nonce):
    model = await db(_vision_model)(dev_upstream, nonce)
    doc_id = await db(_upload_as)(alice, "notes.md", b"# Tides\nThe moon pulls the sea")
    ws = await connect(alice)
    await send(ws, chat_send(model.public_name, "Read this", attachments=[doc_id]))
    started, _ = await until(ws, "chat.started")
    await until(ws, "chat.done")
    await send(ws, {"type": "chat.regenerate", "message_id": started["message_id"], "request_id": "r2"})
    await until(ws, "chat.done")
    await send(ws, {"type": "chat.edit", "message_id": started["user_message_id"], "content": "Read it again",
                    "request_id": "r3"})
    edited, _ = await until(ws, "chat.started")
    assert [a["id"] for a in edited["attachments"]] == [doc_id]
    await until(ws, "chat.done")
    await generation.wait_for_replies()
    await ws.disconnect()
    sent = dev_upstream.received(nonce)
    assert len(sent) == 3
    for request in sent:
        assert request[-1]["content"][1] == {"type": "text", "text": "notes.md\n\n# Tides\nThe moon pulls the sea"}
    assert sent[2][-1]["content"][0]["text"] == "Read it again"


# --- deletion ------------------------------------------------------------------------------------------------
@pytest.mark.django_db(transaction=True)
def test_deleting_the_conversation_or_the_account_removes_the_stored_files(alice, attachment_storage):
    client = client_for(alice)
    first = Attachment.objects.get(public_id=upload(client, "a.png", files.png()).json()["id"])
    second = Attachment.objects.get(public_id=upload(client, "b.txt", b"text").json()["id"])
    conversation = Conversation.objects.create(owner=alice, title="t")
    message = Message.objects.create(conversation=conversation, role="user", content="x")
    first.messages.add(message)
    Attachment.objects.filter(pk=first.pk).update(conversation=conversation)
    first_path = attachment_storage / first.file.name
    second_path = attachment_storage / second.file.name
    assert first_path.is_file() and second_path.is_file()

    assert client.post(f"/c/{conversation.pk}/delete/").status_code in (200, 302)
    assert not Attachment.objects.filter(pk=first.pk).exists() and not first_path.exists()
    assert second_path.is_file()
    alice.delete()
    assert not Attachment.objects.exists() and not second_path.exists()


# --- /v1 ------------------------------------------------------------------------------------------------------
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("upstream_http")
async def test_v1_passes_image_parts_through_unchanged(alice, dev_upstream, nonce):
    from django.test import AsyncClient

    from conversations.accounts.apikeys import api_key_create

    model = await db(_vision_model)(dev_upstream, nonce)
    _key, raw = await db(api_key_create)(user=alice, name="tests")
    url = "data:image/png;base64," + base64.b64encode(files.png(10, 20)).decode()
    content = [{"type": "text", "text": "Look"}, {"type": "image_url", "image_url": {"url": url, "detail": "low"}}]
    response = await AsyncClient().post(
        "/v1/chat/completions", content_type="application/json", headers={"Authorization": f"Bearer {raw}"},
        data={"model": model.public_name, "messages": [{"role": "user", "content": content}]},
    )
    assert response.status_code == 200, response.content
    assert "I received 1 image (10x20)" in response.json()["choices"][0]["message"]["content"]
    assert dev_upstream.received(nonce)[-1] == [{"role": "user", "content": content}]


# --- what images cost: the estimate, the budget reservation, the ledger without usage -------------------------
def _draft_estimate_frame(model: Model, content: str, attachments: list[str], conversation_id=None) -> dict:
    return {"type": "chat.estimate", "request_id": "e1", "conversation_id": conversation_id,
            "model": model.public_name, "content": content, "params": {"max_tokens": 10},
            "attachments": attachments}


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("upstream_http")
async def test_the_estimate_before_sending_counts_the_drafts_attachments_by_the_models_rule(alice, bob, dev_upstream,
                                                                                          nonce):
    from conversations.upstream.tokens import count_tokens, image_tokens

    model = await db(_vision_model)(dev_upstream, nonce)
    image_id = await db(_upload_as)(alice, "photo.png", files.png(1024, 1024))
    doc_id = await db(_upload_as)(alice, "notes.txt", b"The moon pulls the sea twice a day.")
    ws = await connect(alice)
    await send(ws, _draft_estimate_frame(model, "What is this?", []))
    bare, _ = await until(ws, "chat.estimate")
    await send(ws, _draft_estimate_frame(model, "What is this?", [image_id]))
    with_image, _ = await until(ws, "chat.estimate")
    assert with_image["prompt_tokens"] - bare["prompt_tokens"] == image_tokens(1024, 1024) == 765
    await send(ws, _draft_estimate_frame(model, "What is this?", [image_id, doc_id]))
    with_both, _ = await until(ws, "chat.estimate")
    document_part = count_tokens("notes.txt\n\nThe moon pulls the sea twice a day.")
    assert with_both["prompt_tokens"] - with_image["prompt_tokens"] == document_part
    assert Decimal(with_both["max_cost"]) > Decimal(with_image["max_cost"]) > Decimal(bare["max_cost"])

    # The model's own rule where it has one (Anthropic's: 1024² / 750 pixels a token).
    await db(Model.objects.filter(pk=model.pk).update)(image_tokens="anthropic")
    await send(ws, _draft_estimate_frame(model, "What is this?", [image_id]))
    by_pixels, _ = await until(ws, "chat.estimate")
    assert by_pixels["prompt_tokens"] - bare["prompt_tokens"] == 1399
    await db(Model.objects.filter(pk=model.pk).update)(image_tokens="openai")

    # Sent, the image is in the history: an empty draft's estimate still holds it, as the upstream then counts it.
    await send(ws, chat_send(model.public_name, "What is this?", attachments=[image_id], params={"max_tokens": 10}))
    started, _ = await until(ws, "chat.started")
    await until(ws, "chat.done")
    await generation.wait_for_replies()
    await send(ws, _draft_estimate_frame(model, "", [], started["conversation_id"]))
    history, _ = await until(ws, "chat.estimate")
    assert history["prompt_tokens"] > with_image["prompt_tokens"]
    record = await db(UsageRecord.objects.get)(message_id=started["message_id"])
    assert not record.usage_estimated and record.prompt_tokens == with_image["prompt_tokens"]

    # Another user's upload is not found, as in chat.send.
    other = await connect(bob)
    await send(other, _draft_estimate_frame(model, "x", [doc_id]))
    error, _ = await until(other, "chat.error")
    assert error["code"] == "not_found" and error["request_id"] == "e1"
    await other.disconnect()
    await ws.disconnect()


@pytest.mark.django_db
def test_the_budget_reservation_counts_the_images(alice):
    from conversations.chat.admission import admit, check_reply_send, do_reply_send
    from conversations.chat.commands import ChatSend
    from conversations.models import BudgetReservation
    from conversations.usage.budgets import worst_case_cost

    model = make_model("http://127.0.0.1:9/v1")
    model.vision = True
    model.save()
    alice.monthly_budget = Decimal("5")
    alice.save()
    image_id = _upload_as(alice, "photo.png", files.png(2048, 1024))
    plan = admit(check_reply_send, do_reply_send, user=alice, command=ChatSend(
        request_id="r1", conversation_id=None, model=model.public_name, content="", params={"max_tokens": 10},
        attachments=(image_id,),
    ))
    reserved = BudgetReservation.objects.get(pk=plan.reservation_id).amount
    # the message: 3 framing + "user" + 3 priming + the image (2048×1024 → 1536×768: 3×2 tiles)
    prompt_tokens = 3 + 1 + 3 + 85 + 170 * 6
    assert reserved == worst_case_cost(prompt_tokens=prompt_tokens, max_tokens=10, input_price=model.input_price,
                                       output_price=model.output_price)


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("upstream_http")
async def test_without_usage_from_the_upstream_the_ledger_estimates_the_images_and_marks_it(alice, dev_upstream,
                                                                                          nonce):
    from conversations.upstream.tokens import count_prompt_tokens

    model = await db(make_model)(dev_upstream.v1(key=nonce, no_usage=1), upstream_id="dev-vision")
    await db(Model.objects.filter(pk=model.pk).update)(vision=True)
    image_id = await db(_upload_as)(alice, "photo.png", files.png(1024, 1024))
    ws = await connect(alice)
    await send(ws, chat_send(model.public_name, "What is this?", attachments=[image_id]))
    started, _ = await until(ws, "chat.started")
    done, _ = await until(ws, "chat.done")
    await generation.wait_for_replies()
    await ws.disconnect()
    assert done["usage"]["estimated"] is True
    record = await db(UsageRecord.objects.get)(message_id=started["message_id"])
    assert record.usage_estimated
    received = dev_upstream.received(nonce)[-1]
    assert record.prompt_tokens == count_prompt_tokens(received)
    text_only = [{"role": "user", "content": [{"type": "text", "text": "What is this?"}]}]
    assert record.prompt_tokens == count_prompt_tokens(text_only) + 765


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("upstream_http")
async def test_v1_refuses_image_parts_for_a_model_without_vision_in_openais_shape(alice, dev_upstream, nonce):
    from django.test import AsyncClient

    from conversations.accounts.apikeys import api_key_create

    plain = await db(_vision_model)(dev_upstream, nonce, vision=False, upstream_id="dev-chat")
    _key, raw = await db(api_key_create)(user=alice, name="tests")
    url = "data:image/png;base64," + base64.b64encode(files.png(10, 20)).decode()
    content = [{"type": "text", "text": "Look"}, {"type": "image_url", "image_url": {"url": url}}]

    async def ask(model: str | None) -> tuple[int, dict]:
        body: dict = {"messages": [{"role": "user", "content": content}]}
        if model is not None:
            body["model"] = model
        response = await AsyncClient().post(
            "/v1/chat/completions", content_type="application/json", headers={"Authorization": f"Bearer {raw}"},
            data=body,
        )
        return response.status_code, response.json()

    status, body = await ask(plain.public_name)
    assert status == 400
    assert body["error"]["type"] == "invalid_request_error" and body["error"]["code"] == "attachment_unsupported"
    assert body["error"]["param"] == "messages" and plain.public_name in body["error"]["message"]
    assert dev_upstream.stats(nonce)["requests"] == 0
    # `auto` with images: no model takes them yet, then the one that does answers.
    status, body = await ask(None)
    assert status == 404 and body["error"]["code"] == "model_not_found"
    vision = await db(Model.objects.create)(provider=plain.provider, upstream_id="dev-vision", vision=True)
    status, body = await ask(None)
    assert status == 200 and body["model"] == vision.public_name
    assert "I received 1 image (10x20)" in body["choices"][0]["message"]["content"]


# --- the storage quota: the site's default, a user's own from the admin ---------------------------------------
@pytest.mark.django_db
def test_a_users_own_quota_overrides_the_default_and_the_admin_shows_each_users_use(alice, bob, staff, settings,
                                                                                   attachment_storage):
    settings.CHATWEB_ATTACHMENT_QUOTA_BYTES = 1500
    admin = client_for(staff)
    response = admin.get(f"/admin/conversations/user/{alice.pk}/change/")
    assert response.status_code == 200 and 'name="attachment_quota"' in response.content.decode()
    form = {
        name: value
        for name, value in re.findall(
            r'<input type="(?:text|email|hidden|number)" name="([^"]+)" value="([^"]*)"', response.content.decode()
        )
        if not name.startswith("csrf")
    }
    form.update({"username": "alice", "is_active": "on", "timezone": "UTC", "attachment_quota": "2500",
                 "date_joined_0": alice.date_joined.strftime("%Y-%m-%d"), "date_joined_1": "00:00:00",
                 "_save": "Save"})
    saved = admin.post(f"/admin/conversations/user/{alice.pk}/change/", form)
    alice.refresh_from_db()
    assert alice.attachment_quota == 2500, saved.content.decode()[:2000]
    from conversations.models import AuditLog

    assert AuditLog.objects.get(object_type="user").fields == ["attachment_quota"]  # the trail records it

    for user, allowed in ((alice, 2), (bob, 1)):  # 1,000 bytes each: alice's 2,500, bob's default 1,500
        client = client_for(user)
        for _ in range(allowed):
            assert upload(client, "a.txt", b"a" * 1000).status_code == 201
        response = upload(client, "b.txt", b"b" * 1000)
        assert response.status_code == 413
        error = response.json()["error"]
        assert error["code"] == "too_large" and "quota" in error["message"]
    assert Attachment.objects.filter(owner=alice).count() == 2 and Attachment.objects.filter(owner=bob).count() == 1
    stored = [p for p in attachment_storage.rglob("*") if p.is_file()]
    assert len(stored) == 3  # a refused upload leaves no file behind

    listing = admin.get("/admin/conversations/user/").content.decode()
    assert "2.0\xa0KB of 2.4\xa0KB" in listing and "1000\xa0bytes of 1.5\xa0KB" in listing
    page = admin.get(f"/admin/conversations/user/{alice.pk}/change/").content.decode()
    assert "2.0\xa0KB of 2.4\xa0KB" in page


# --- thumbnails -----------------------------------------------------------------------------------------------
@pytest.mark.django_db
def test_an_image_gets_a_small_thumbnail_served_to_its_owner_only(alice, bob, attachment_storage,
                                                                  django_capture_on_commit_callbacks):
    owner = client_for(alice)
    image_id = upload(owner, "wide.jpg", files.jpeg_with_gps(3000, 1000), "image/jpeg").json()["id"]
    doc_id = upload(owner, "notes.txt", b"notes").json()["id"]
    attachment = Attachment.objects.get(public_id=image_id)
    assert attachment.thumbnail.name and attachment.thumbnail.name != attachment.file.name
    assert (attachment_storage / attachment.thumbnail.name).is_file()

    response = owner.get(f"/attachments/{image_id}/thumbnail/")
    assert response.status_code == 200 and response["Content-Type"] == "image/webp"
    assert response["X-Content-Type-Options"] == "nosniff"
    data = b"".join(response.streaming_content)
    thumbnail = Image.open(io.BytesIO(data))
    assert thumbnail.format == "WEBP" and thumbnail.size == (256, 85)
    assert len(data) < attachment.size / 10
    assert owner.get(f"/attachments/{doc_id}/thumbnail/").status_code == 404  # documents have none
    older = upload(owner, "old.png", files.png(300, 200)).json()["id"]
    Attachment.objects.filter(public_id=older).update(thumbnail="")  # stored before thumbnails were made
    fallback = owner.get(f"/attachments/{older}/thumbnail/")
    assert fallback.status_code == 200 and fallback["Content-Type"] == "image/png"
    assert Image.open(io.BytesIO(b"".join(fallback.streaming_content))).size == (300, 200)

    other = client_for(bob)
    for attachment_id in (image_id, doc_id, "not-an-id"):
        assert other.get(f"/attachments/{attachment_id}/thumbnail/").status_code == 404
    assert Client().get(f"/attachments/{image_id}/thumbnail/").status_code == 302  # signed out: the login page

    # the conversation shows the thumbnail, linking to the full image
    conversation = Conversation.objects.create(owner=alice, title="t")
    message = Message.objects.create(conversation=conversation, role="user", content="look")
    attachment.messages.add(message)
    html = owner.get(f"/c/{conversation.pk}/").content.decode()
    assert f'src="/attachments/{image_id}/thumbnail/"' in html and f'href="/attachments/{image_id}/"' in html

    # deleting the account removes the thumbnail with the file
    thumbnail_path = attachment_storage / attachment.thumbnail.name
    with django_capture_on_commit_callbacks(execute=True):
        alice.delete()
    assert not thumbnail_path.exists()


# --- uploads never sent ---------------------------------------------------------------------------------------
def _age(public_id: str, hours: float) -> None:
    from datetime import timedelta

    from django.utils import timezone

    Attachment.objects.filter(public_id=public_id).update(created_at=timezone.now() - timedelta(hours=hours))


@pytest.mark.django_db(transaction=True)
def test_uploads_never_sent_are_deleted_with_their_files_by_the_command(alice, attachment_storage, settings):
    from django.core.management import call_command

    client = client_for(alice)
    unsent = upload(client, "old.png", files.png()).json()["id"]
    sent = upload(client, "sent.txt", b"kept").json()["id"]
    fresh = upload(client, "new.txt", b"fresh").json()["id"]
    conversation = Conversation.objects.create(owner=alice, title="t")
    message = Message.objects.create(conversation=conversation, role="user", content="x")
    Attachment.objects.get(public_id=sent).messages.add(message)
    Attachment.objects.filter(public_id=sent).update(conversation=conversation)
    for public_id in (unsent, sent):
        _age(public_id, 25)
    old = Attachment.objects.get(public_id=unsent)
    old_files = [attachment_storage / old.file.name, attachment_storage / old.thumbnail.name]
    assert all(path.is_file() for path in old_files)

    out = io.StringIO()
    call_command("cleanupattachments", stdout=out)
    assert out.getvalue().strip().splitlines()[-1] == "deleted 1 unsent uploads"
    assert set(Attachment.objects.values_list("public_id", flat=True)) == {sent, fresh}
    assert not any(path.exists() for path in old_files)
    for public_id in (sent, fresh):
        assert (attachment_storage / Attachment.objects.get(public_id=public_id).file.name).is_file()

    # the age is configurable: by the setting, or on the command line; 0 keeps them
    settings.CHATWEB_ATTACHMENT_UNSENT_HOURS = 0
    call_command("cleanupattachments", stdout=out)
    assert Attachment.objects.filter(public_id=fresh).exists()
    _age(fresh, 2)
    call_command("cleanupattachments", "--older-than-hours", "1", stdout=out)
    assert not Attachment.objects.filter(public_id=fresh).exists()
    assert Attachment.objects.filter(public_id=sent).exists()


@pytest.mark.django_db(transaction=True)
async def test_server_processes_delete_uploads_never_sent_as_they_reap(alice, attachment_storage, settings):
    import asyncio

    settings.CHATWEB_ATTACHMENT_UNSENT_HOURS = 1
    unsent = await db(_upload_as)(alice, "old.txt", b"never sent")
    path = attachment_storage / (await db(Attachment.objects.get)(public_id=unsent)).file.name
    await db(_age)(unsent, 2)
    assert path.is_file()
    generation.ensure_reaper()  # as a websocket connection does
    for _ in range(100):
        if not path.exists():
            break
        await asyncio.sleep(0.05)
    assert not path.exists()
    assert not await db(Attachment.objects.filter(public_id=unsent).exists)()


# --- exports --------------------------------------------------------------------------------------------------
@pytest.mark.django_db
def test_the_exports_list_each_messages_attachments(alice, bob):
    import json

    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    client = client_for(alice)
    photo = Attachment.objects.get(public_id=upload(client, "photo.png", files.png(64, 48)).json()["id"])
    report = Attachment.objects.get(public_id=upload(client, "report.pdf", files.pdf("tides")).json()["id"])
    conversation = Conversation.objects.create(owner=alice, title="Tides")
    first = Message.objects.create(conversation=conversation, role="user", content="What are these?")
    reply = Message.objects.create(conversation=conversation, role="assistant", content="A photo and a report.",
                                   parent=first, status="complete")
    second = Message.objects.create(conversation=conversation, role="user", content="And this?", parent=reply)
    conversation.active_leaf = second
    conversation.save()
    photo.messages.add(first)
    report.messages.add(first, second)

    markdown = client.get(f"/c/{conversation.pk}/export.md").content.decode()
    assert markdown.count(f"- Attached: photo.png (image/png, {photo.size} bytes)") == 1
    assert markdown.count("- Attached: report.pdf (application/pdf,") == 2
    assert markdown.index("What are these?") < markdown.index("- Attached: photo.png") < markdown.index("## Assistant")

    # one query for all the messages' attachments, however many messages hold them
    with CaptureQueriesContext(connection) as few:
        response = client.get(f"/c/{conversation.pk}/export.json")
    exported = {m["id"]: m for m in json.loads(response.content)["messages"]}
    expected_photo = {"id": photo.public_id, "name": "photo.png", "kind": "image", "content_type": "image/png",
                      "size": photo.size}
    expected_report = {"id": report.public_id, "name": "report.pdf", "kind": "document",
                       "content_type": "application/pdf", "size": report.size}
    assert exported[first.pk]["attachments"] == [expected_photo, expected_report]
    assert exported[reply.pk]["attachments"] == []
    assert exported[second.pk]["attachments"] == [expected_report]
    for _ in range(5):
        extra = Message.objects.create(conversation=conversation, role="user", content="more", parent=second)
        report.messages.add(extra)
    with CaptureQueriesContext(connection) as many:
        assert client.get(f"/c/{conversation.pk}/export.json").status_code == 200
    assert len(many) == len(few)

    other = client_for(bob)  # another user's conversation: 404, nothing of it
    assert other.get(f"/c/{conversation.pk}/export.json").status_code == 404
    assert other.get(f"/c/{conversation.pk}/export.md").status_code == 404
