"""Attachments on share links: off by default (the shared page then shows no file, not even its name); with
"Include attachments" the snapshot's files open through the link's own URLs, for anyone holding it, until it is
revoked; the owner's file URL never opens for anyone else."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from conversations.models import Attachment, Conversation, Message, SharedAttachment
from tests import attachment_files as files
from tests.chat.test_pages import ajax, client_for

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _own_storage(attachment_storage):
    """Every test of this file stores its files in its own folder (tests/chat/conftest.py)."""


@pytest.fixture
def with_files(alice):
    """A conversation whose first message carries an image and a document."""
    client = client_for(alice)
    uploaded = [
        client.post("/attachments/", {"file": SimpleUploadedFile(name, data)}).json()
        for name, data in (("beach-photo.png", files.png(40, 30)), ("tide-table.txt", b"high water 06:12"))
    ]
    conversation = Conversation.objects.create(owner=alice, title="Tides")
    question = Message.objects.create(conversation=conversation, role="user", content="Look at these")
    reply = Message.objects.create(conversation=conversation, parent=question, role="assistant", content="Nice.")
    attachments = [Attachment.objects.get(public_id=u["id"]) for u in uploaded]
    question.attachments.set(attachments)
    Attachment.objects.filter(pk__in=[a.pk for a in attachments]).update(conversation=conversation)
    conversation.active_leaf = reply
    conversation.save()
    return conversation, attachments


def share(user, conversation_id: int, **fields):
    return ajax(client_for(user), f"/c/{conversation_id}/share/", fields)


def test_without_the_box_the_shared_page_shows_no_file_and_no_file_opens(alice, with_files):
    conversation, attachments = with_files
    answer = share(alice, conversation.pk).json()
    assert answer["include_attachments"] is False
    html = Client().get(answer["url"]).content.decode()
    assert "Look at these" in html and "Nice." in html
    assert "beach-photo" not in html and "tide-table" not in html and "/files/" not in html
    for a in attachments:
        assert a.public_id not in html
    assert Client().get(f"{answer['url']}files/1/").status_code == 404
    assert not SharedAttachment.objects.exists()


def test_with_the_box_anyone_with_the_link_opens_the_files_until_it_is_revoked(alice, bob, with_files):
    conversation, (image, document) = with_files
    answer = share(alice, conversation.pk, include_attachments="1").json()
    assert answer["include_attachments"] is True
    url = answer["url"]
    html = Client().get(url).content.decode()
    assert "beach-photo.png" in html and "tide-table.txt" in html
    assert f'src="{url}files/1/"' in html and f'href="{url}files/2/"' in html
    assert image.public_id not in html and document.public_id not in html  # the owner's ids stay private
    picture = Client().get(f"{url}files/1/")
    assert picture.status_code == 200 and picture["Content-Type"] == "image/png"
    assert b"".join(picture.streaming_content).startswith(b"\x89PNG")
    assert picture["X-Content-Type-Options"] == "nosniff" and "sandbox" in picture["Content-Security-Policy"]
    assert "no-store" in picture["Cache-Control"] and "noindex" in picture["X-Robots-Tag"]
    table = Client().get(f"{url}files/2/")
    assert table.status_code == 200 and table["Content-Disposition"].startswith("attachment")
    assert b"".join(table.streaming_content) == b"high water 06:12"
    assert Client().get(f"{url}files/3/").status_code == 404
    assert client_for(bob).get(f"{url}files/1/").status_code == 200  # a link is for whoever holds it

    # the owner's own file URL opens for the owner only, link or not
    for reader in (Client(), client_for(bob)):
        response = reader.get(f"/attachments/{image.public_id}/")
        assert response.status_code in (302, 404)
        assert response.status_code == 404 or "/accounts/login/" in response["Location"]
    assert client_for(alice).get(f"/attachments/{image.public_id}/").status_code == 200

    assert ajax(client_for(alice), f"/c/{conversation.pk}/unshare/").json() == {"revoked": 1}
    assert Client().get(url).status_code == 404
    assert Client().get(f"{url}files/1/").status_code == 404
    assert Client().get(f"{url}files/2/").status_code == 404


def test_a_link_without_files_does_not_open_another_links_files(alice, with_files):
    conversation, _ = with_files
    with_box = share(alice, conversation.pk, include_attachments="1").json()["url"]
    without = share(alice, conversation.pk).json()["url"]
    assert Client().get(f"{with_box}files/1/").status_code == 200
    assert Client().get(f"{without}files/1/").status_code == 404


def test_revoking_one_link_from_the_share_bar_answers_json_and_closes_its_files(alice, bob, with_files):
    conversation, _ = with_files
    answer = share(alice, conversation.pk, include_attachments="1").json()
    assert ajax(client_for(bob), f"/settings/shares/{answer['id']}/revoke/").status_code == 404
    assert Client().get(f"{answer['url']}files/1/").status_code == 200
    response = ajax(client_for(alice), f"/settings/shares/{answer['id']}/revoke/")
    assert response.status_code == 200 and response.json() == {"revoked": answer["id"]}
    assert Client().get(f"{answer['url']}files/1/").status_code == 404


def test_a_snapshot_keeps_its_files_even_if_the_message_loses_them_later(alice, with_files):
    conversation, _ = with_files
    url = share(alice, conversation.pk, include_attachments="1").json()["url"]
    Message.objects.get(content="Look at these").attachments.clear()
    assert Client().get(f"{url}files/1/").status_code == 200
    assert "beach-photo.png" in Client().get(url).content.decode()
    ajax(client_for(alice), f"/c/{conversation.pk}/delete/")  # the files go with their conversation
    assert Client().get(f"{url}files/1/").status_code == 404
