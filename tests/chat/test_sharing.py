"""Share links: the owner shares (201 with the link), anyone reads the snapshot without signing in, the page shows
the messages and nothing private, hostile Markdown stays inert, revoking answers 404, another user's conversation
is not found, and the settings page lists and revokes links."""

from __future__ import annotations

import re
from decimal import Decimal
from html.parser import HTMLParser

import pytest
from django.test import Client

from conversations.models import Conversation, Message, SharedLink, UsageRecord
from tests.browser.pages import HOSTILE
from tests.chat.test_pages import ajax, chain, client_for
from tests.chat_helpers import make_model

pytestmark = pytest.mark.django_db


class Tags(HTMLParser):
    """Every element and attribute of a page, as a browser's parser sees them."""

    def __init__(self) -> None:
        super().__init__()
        self.names: set[str] = set()
        self.attributes: list[tuple[str, str | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.names.add(tag)
        self.attributes.extend(attrs)


@pytest.fixture
def shared_talk(alice):
    model = make_model("http://127.0.0.1:9/v1", name="secretprov", upstream_id="secret-model-x")
    conversation = Conversation.objects.create(
        owner=alice, title="Tides", model=model, system_prompt="SYSTEM-PROMPT-SECRET",
        params={"temperature": 0.123},
    )
    messages = chain(conversation, "Why does the sea rise?", "The **moon** pulls it.", "And waves?", "Wind.")
    for m in messages[1::2]:
        m.model_name = model.public_name
        m.reasoning = "REASONING-SECRET"
        m.save()
        UsageRecord.objects.create(
            user=alice, source="chat", conversation=conversation, message=m, provider_name="secretprov",
            model_name=model.public_name, prompt_tokens=111, completion_tokens=222, total_tokens=333,
            estimated_cost=Decimal("0.98765"), cost_source="price",
        )
    Conversation.objects.create(owner=alice, title="OTHER-CONVERSATION-TITLE")
    return conversation, messages


def share(client: Client, conversation_id: int):
    return ajax(client, f"/c/{conversation_id}/share/")


def test_share_answers_201_with_the_link_and_anyone_reads_it(alice, shared_talk):
    conversation, _ = shared_talk
    response = share(client_for(alice), conversation.pk)
    assert response.status_code == 201
    url = response.json()["url"]
    assert re.fullmatch(r"/s/[A-Za-z0-9_-]{16,}/", url)
    page = Client().get(url)  # nobody signed in
    assert page.status_code == 200
    html = page.content.decode()
    for text in ("Tides", "Why does the sea rise?", "<strong>moon</strong>", "And waves?", "Wind."):
        assert text in html


def test_the_shared_page_reveals_nothing_private(alice, shared_talk):
    conversation, _ = shared_talk
    url = share(client_for(alice), conversation.pk).json()["url"]
    response = Client().get(url)
    html = response.content.decode()
    for private in (
        "alice", "SYSTEM-PROMPT-SECRET", "0.123", "temperature", "REASONING-SECRET", "secret-model-x",
        "secretprov", "0.98765", "$", "333", "tokens", "OTHER-CONVERSATION-TITLE", f"/c/{conversation.pk}/",
        "csrfmiddlewaretoken", "<script",
    ):
        assert private not in html, private
    # the owner reading their own link sees the same page: no account menu, no name
    assert "alice" not in client_for(alice).get(url).content.decode()


def test_the_shared_page_is_noindex_with_a_strict_policy(alice, shared_talk):
    conversation, _ = shared_talk
    url = share(client_for(alice), conversation.pk).json()["url"]
    response = Client().get(url)
    assert '<meta name="robots" content="noindex' in response.content.decode()
    assert "noindex" in response["X-Robots-Tag"]
    csp = response["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "script-src" not in csp and "frame-ancestors 'none'" in csp
    assert "connect-src" not in csp and "form-action 'none'" in csp
    assert response["Referrer-Policy"] == "no-referrer"
    assert "no-store" in response["Cache-Control"]


def test_a_share_is_a_snapshot_of_the_current_branch(alice, shared_talk):
    conversation, (_q1, a1, _q2, a2) = shared_talk
    other = Message.objects.create(conversation=conversation, parent=a1, role="user", content="ANOTHER-BRANCH")
    client = client_for(alice)
    url = share(client, conversation.pk).json()["url"]
    Message.objects.filter(pk=a2.pk).update(content="EDITED-LATER")
    Conversation.objects.filter(pk=conversation.pk).update(title="RENAMED-LATER", active_leaf=other)
    html = Client().get(url).content.decode()
    assert "Wind." in html and "And waves?" in html
    assert "ANOTHER-BRANCH" not in html and "EDITED-LATER" not in html and "RENAMED-LATER" not in html


def test_hostile_markdown_is_inert_on_the_shared_page(alice):
    conversation = Conversation.objects.create(owner=alice, title="<script>alert('title')</script>")
    chain(conversation, HOSTILE, HOSTILE)
    url = share(client_for(alice), conversation.pk).json()["url"]
    html = Client().get(url).content.decode()
    tags = Tags()
    tags.feed(html)
    assert {"script", "iframe", "svg", "img", "details", "object", "embed", "form"}.isdisjoint(tags.names)
    assert not [name for name, _ in tags.attributes if name.startswith("on")]
    hrefs = [value or "" for name, value in tags.attributes if name in ("href", "src", "action")]
    assert all(h.startswith(("/static/", "http://", "https://", "mailto:")) for h in hrefs), hrefs
    assert "alert(" in html  # shown as text: nothing was dropped, it just does nothing


def test_unshare_revokes_every_link(alice, shared_talk):
    conversation, _ = shared_talk
    client = client_for(alice)
    first, second = (share(client, conversation.pk).json()["url"] for _ in range(2))
    assert first != second
    response = ajax(client, f"/c/{conversation.pk}/unshare/")
    assert response.status_code == 200 and response.json() == {"revoked": 2}
    assert Client().get(first).status_code == 404
    assert Client().get(second).status_code == 404


def test_a_deleted_conversation_takes_its_links_with_it(alice, shared_talk):
    conversation, _ = shared_talk
    url = share(client_for(alice), conversation.pk).json()["url"]
    ajax(client_for(alice), f"/c/{conversation.pk}/delete/")
    assert Client().get(url).status_code == 404


def test_another_users_conversation_is_not_found(alice, bob, shared_talk):
    conversation, _ = shared_talk
    url = share(client_for(alice), conversation.pk).json()["url"]
    assert share(client_for(bob), conversation.pk).status_code == 404
    assert ajax(client_for(bob), f"/c/{conversation.pk}/unshare/").status_code == 404
    assert Client().get(url).status_code == 200  # bob's attempt revoked nothing
    assert SharedLink.objects.filter(owner=bob).count() == 0


def test_sharing_needs_a_signed_in_owner_and_a_post(alice, shared_talk):
    conversation, _ = shared_talk
    assert Client().post(f"/c/{conversation.pk}/share/").status_code == 302  # to the login page
    assert client_for(alice).get(f"/c/{conversation.pk}/share/").status_code == 405
    csrf = Client(enforce_csrf_checks=True)
    csrf.force_login(alice)
    assert csrf.post(f"/c/{conversation.pk}/share/").status_code == 403
    assert SharedLink.objects.count() == 0


def test_an_empty_conversation_is_not_shared(alice):
    conversation = Conversation.objects.create(owner=alice)
    response = share(client_for(alice), conversation.pk)
    assert response.status_code == 400 and "nothing to share" in response.json()["error"]


def test_unknown_tokens_are_not_found(db):
    assert Client().get("/s/not-a-token/").status_code == 404


def test_the_settings_page_lists_links_with_their_dates_and_revokes_them(alice, bob, shared_talk):
    conversation, _ = shared_talk
    client = client_for(alice)
    url = share(client, conversation.pk).json()["url"]
    link = SharedLink.objects.get()
    html = client.get("/settings/").content.decode()
    assert url in html and "Tides" in html and link.created_at.strftime("%Y-%m-%d") in html
    assert url not in client_for(bob).get("/settings/").content.decode()
    # bob cannot revoke alice's link
    assert client_for(bob).post(f"/settings/shares/{link.pk}/revoke/").status_code == 404
    assert Client().get(url).status_code == 200
    response = client.post(f"/settings/shares/{link.pk}/revoke/")
    assert response.status_code == 302
    assert Client().get(url).status_code == 404
    assert "You have not shared any conversation." in client.get("/settings/").content.decode()


def test_the_chat_page_has_a_share_button(alice, shared_talk):
    conversation, _ = shared_talk
    html = client_for(alice).get(f"/c/{conversation.pk}/").content.decode()
    assert 'id="share-button"' in html and "js/share.js" in html
