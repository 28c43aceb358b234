"""Folders and pins: creating, renaming and deleting folders, moving and pinning conversations, each refused for
another user's ids; the sidebar's groups (pinned, folders, Today / Previous 7 days / Older in the user's time zone)
in a fixed number of queries; search by folder name; the other tabs told over the websocket."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth import get_user_model
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from conversations.chat.folders import FOLDERS_MAX
from conversations.chat.selectors import sidebar
from conversations.models import Conversation, Folder
from tests.chat.test_pages import ajax, chain, client_for
from tests.chat_helpers import connect, until

pytestmark = pytest.mark.django_db


def at(conversation: Conversation, moment: datetime) -> Conversation:
    """Set a conversation's last activity (auto_now would overwrite it on save)."""
    Conversation.objects.filter(pk=conversation.pk).update(updated_at=moment)
    conversation.refresh_from_db()
    return conversation


def sidebar_html(client: Client, path: str = "/") -> str:
    html = client.get(path).content.decode()
    return html.split('id="conversation-list"')[1].split('id="conversation-menu"')[0]


# --- folders ------------------------------------------------------------------------------------------------------
def test_create_rename_and_delete_a_folder_keeping_its_conversations(alice):
    client = client_for(alice)
    created = ajax(client, "/folders/", {"name": "  Taxes   2026 "})
    assert created.status_code == 200
    folder = Folder.objects.get(owner=alice)
    assert created.json() == {"id": folder.pk, "name": "Taxes 2026"}
    tides = Conversation.objects.create(owner=alice, title="Tides", folder=folder)
    bread = Conversation.objects.create(owner=alice, title="Bread", folder=folder)

    assert ajax(client, f"/folders/{folder.pk}/rename/", {"name": "Taxes"}).json() == {"id": folder.pk, "name": "Taxes"}
    assert Folder.objects.get(pk=folder.pk).name == "Taxes"

    answer = ajax(client, f"/folders/{folder.pk}/delete/")
    assert answer.json() == {"deleted": folder.pk, "moved_out": 2}
    assert not Folder.objects.filter(pk=folder.pk).exists()
    kept = set(Conversation.objects.filter(owner=alice).values_list("pk", "folder"))
    assert kept == {(tides.pk, None), (bread.pk, None)}


def test_folder_names_are_refused_when_empty_too_long_or_taken(alice, bob):
    client = client_for(alice)
    Folder.objects.create(owner=bob, name="Taxes")  # another user's name is free
    assert ajax(client, "/folders/", {"name": "Taxes"}).status_code == 200
    for name, error in (
        ("   ", "A folder needs a name of 1 to 100 characters."),
        ("x" * 101, "A folder needs a name of 1 to 100 characters."),
        ("TAXES", "You already have a folder named “TAXES”."),
    ):
        answer = ajax(client, "/folders/", {"name": name})
        assert answer.status_code == 400 and answer.json() == {"error": error}, name
    recipes = Folder.objects.create(owner=alice, name="Recipes")
    answer = ajax(client, f"/folders/{recipes.pk}/rename/", {"name": "taxes"})
    assert answer.status_code == 400 and answer.json() == {"error": "You already have a folder named “taxes”."}
    assert ajax(client, f"/folders/{recipes.pk}/rename/", {"name": "RECIPES"}).json()["name"] == "RECIPES"
    assert sorted(Folder.objects.filter(owner=alice).values_list("name", flat=True)) == ["RECIPES", "Taxes"]


def test_a_user_has_at_most_so_many_folders(alice):
    Folder.objects.bulk_create(Folder(owner=alice, name=f"F{i}") for i in range(FOLDERS_MAX))
    answer = ajax(client_for(alice), "/folders/", {"name": "One more"})
    assert answer.status_code == 400 and "delete one first" in answer.json()["error"]


def test_without_script_the_new_folder_form_posts_and_comes_back(alice):
    response = client_for(alice).post("/folders/", {"name": "Taxes"})
    assert response.status_code == 302 and response["Location"] == "/"
    assert Folder.objects.filter(owner=alice, name="Taxes").exists()


# --- moving and pinning ---------------------------------------------------------------------------------------------
def test_move_into_and_out_of_a_folder_and_pin_leave_the_last_activity_alone(alice):
    client = client_for(alice)
    folder = Folder.objects.create(owner=alice, name="Taxes")
    before = datetime(2026, 1, 5, 12, tzinfo=UTC)
    tides = at(Conversation.objects.create(owner=alice, title="Tides"), before)

    assert ajax(client, f"/c/{tides.pk}/move/", {"folder": folder.pk}).json() == {"id": tides.pk, "folder": folder.pk}
    assert Conversation.objects.get(pk=tides.pk).folder_id == folder.pk
    assert ajax(client, f"/c/{tides.pk}/move/", {"folder": ""}).json() == {"id": tides.pk, "folder": None}
    assert Conversation.objects.get(pk=tides.pk).folder_id is None

    assert ajax(client, f"/c/{tides.pk}/pin/", {"pinned": "1"}).json() == {"id": tides.pk, "pinned": True}
    assert Conversation.objects.get(pk=tides.pk).pinned_at is not None
    assert ajax(client, f"/c/{tides.pk}/pin/", {"pinned": "0"}).json() == {"id": tides.pk, "pinned": False}
    assert Conversation.objects.get(pk=tides.pk).pinned_at is None
    assert Conversation.objects.get(pk=tides.pk).updated_at == before


def test_bad_move_and_pin_values_are_refused(alice):
    client = client_for(alice)
    tides = Conversation.objects.create(owner=alice, title="Tides")
    answer = ajax(client, f"/c/{tides.pk}/move/", {"folder": "taxes"})
    assert answer.status_code == 400 and answer.json() == {"error": "folder must be a folder id, or empty for none."}
    answer = ajax(client, f"/c/{tides.pk}/move/", {"folder": "999999"})
    assert answer.status_code == 404
    answer = ajax(client, f"/c/{tides.pk}/pin/", {"pinned": "maybe"})
    assert answer.status_code == 400 and answer.json() == {"error": "pinned must be 1 or 0."}
    assert Conversation.objects.filter(pk=tides.pk, folder=None, pinned_at=None).exists()


def test_another_users_folders_and_conversations_are_not_found(alice, bob):
    taxes = Folder.objects.create(owner=alice, name="Taxes")
    hers = Conversation.objects.create(owner=alice, title="Hers", folder=taxes)
    his_folder = Folder.objects.create(owner=bob, name="Bob's")
    his = Conversation.objects.create(owner=bob, title="His")
    bob_client = client_for(bob)

    for url, data in (
        (f"/folders/{taxes.pk}/rename/", {"name": "Mine now"}),
        (f"/folders/{taxes.pk}/delete/", {}),
        (f"/c/{his.pk}/move/", {"folder": taxes.pk}),  # his conversation into her folder
        (f"/c/{hers.pk}/move/", {"folder": his_folder.pk}),  # her conversation into his folder
        (f"/c/{hers.pk}/move/", {"folder": ""}),  # her conversation out of her folder
        (f"/c/{hers.pk}/pin/", {"pinned": "1"}),
    ):
        assert ajax(bob_client, url, data).status_code == 404, url
    assert Folder.objects.get(pk=taxes.pk).name == "Taxes"
    assert Conversation.objects.get(pk=hers.pk).folder_id == taxes.pk
    assert Conversation.objects.get(pk=hers.pk).pinned_at is None
    assert Conversation.objects.get(pk=his.pk).folder_id is None

    # and nothing of hers shows in his sidebar, or his search
    html = sidebar_html(bob_client)
    assert "Taxes" not in html and "Hers" not in html
    assert "Hers" not in bob_client.get("/search/?q=tax").content.decode()


def test_anonymous_requests_and_missing_csrf_tokens_are_refused(alice):
    folder = Folder.objects.create(owner=alice, name="Taxes")
    tides = Conversation.objects.create(owner=alice, title="Tides")
    urls = ("/folders/", f"/folders/{folder.pk}/rename/", f"/folders/{folder.pk}/delete/", f"/c/{tides.pk}/move/",
            f"/c/{tides.pk}/pin/")
    for url in urls:
        response = Client().post(url, {"name": "x", "folder": folder.pk})
        assert response.status_code == 302 and response["Location"].startswith("/accounts/login/"), url
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(alice)
    for url in urls:
        assert strict.post(url, {"name": "Other", "folder": folder.pk}).status_code == 403, url
    for url in ("/folders/", f"/c/{tides.pk}/pin/"):
        assert client_for(alice).get(url).status_code == 405
    assert Folder.objects.get(pk=folder.pk).name == "Taxes"
    assert Conversation.objects.filter(pk=tides.pk, folder=None, pinned_at=None).exists()


# --- the sidebar ----------------------------------------------------------------------------------------------------
def test_the_sidebar_groups_by_day_in_the_users_time_zone(alice):
    # 23:30 UTC on 9 March is already 10 March in Auckland (UTC+13): "today" there, not in London
    now = datetime(2026, 3, 9, 23, 30, tzinfo=UTC)
    late = at(Conversation.objects.create(owner=alice, title="Late"), now - timedelta(minutes=5))
    morning = at(Conversation.objects.create(owner=alice, title="Morning"), datetime(2026, 3, 9, 9, tzinfo=UTC))
    week = at(Conversation.objects.create(owner=alice, title="Week"), now - timedelta(days=6))
    older = at(Conversation.objects.create(owner=alice, title="Older"), now - timedelta(days=30))

    def groups() -> dict[str, list[str]]:
        return {g.key: [c.title for c in g.conversations] for g in sidebar(alice, now=now).recent}

    alice.timezone = "Europe/London"
    assert groups() == {"today": [late.title, morning.title], "week": [week.title], "older": [older.title]}
    alice.timezone = "Pacific/Auckland"  # there, 9 March 09:00 UTC was yesterday
    assert groups() == {"today": [late.title], "week": [morning.title, week.title], "older": [older.title]}
    alice.timezone = "Not/AZone"  # a bad setting is UTC, not an error
    assert groups() == {"today": [late.title, morning.title], "week": [week.title], "older": [older.title]}


def test_the_sidebar_shows_pinned_on_top_then_folders_then_the_rest(alice):
    taxes = Folder.objects.create(owner=alice, name="Taxes")
    empty = Folder.objects.create(owner=alice, name="Archive")
    receipts = Conversation.objects.create(owner=alice, title="Receipts", folder=taxes)
    pinned = Conversation.objects.create(owner=alice, title="Pinned one", pinned_at=datetime(2026, 1, 1, tzinfo=UTC))
    pinned_in_folder = Conversation.objects.create(
        owner=alice, title="Pinned return", folder=taxes, pinned_at=datetime(2026, 2, 1, tzinfo=UTC)
    )
    loose = Conversation.objects.create(owner=alice, title="Loose")
    html = sidebar_html(client_for(alice))

    order = [html.index(text) for text in (
        ">Pinned<", "Pinned return", "Pinned one", ">Archive<", "Empty: drag a conversation here", ">Taxes<",
        "Receipts", ">Today<", "Loose",
    )]
    assert order == sorted(order), html  # newest pin first; folders by name; an empty folder says so
    assert html.count(f'data-conversation-id="{pinned_in_folder.pk}"') == 1  # shown once: among the pinned
    assert '<span class="conversation-folder muted">in Taxes</span>' in html  # ... saying where it is kept
    assert f'data-folder-id="{taxes.pk}" data-folder-name="Taxes"' in html and f'data-folder-id="{empty.pk}"' in html
    assert f'id="c{receipts.pk}-actions" aria-labelledby="c{receipts.pk}-actions c{receipts.pk}-title"' in html
    assert f'data-conversation-id="{loose.pk}" draggable="true"' in html
    assert html.count(f'data-conversation-id="{pinned.pk}"') == 1
    assert "No conversations yet." not in html
    assert "No conversations yet." in sidebar_html(client_for(get_user_model().objects.create_user("carol")))


def test_the_sidebar_is_a_fixed_number_of_queries_however_many_conversations_and_folders(alice):
    client = client_for(alice)

    def fill(folders: int, conversations: int) -> None:
        made = Folder.objects.bulk_create(
            Folder(owner=alice, name=f"Folder {Folder.objects.count() + i}") for i in range(folders)
        )
        Conversation.objects.bulk_create(
            Conversation(
                owner=alice, title=f"Chat {i}", folder=made[i % len(made)] if i % 3 == 0 else None,
                pinned_at=datetime(2026, 1, 1, tzinfo=UTC) if i % 10 == 0 else None,
            )
            for i in range(conversations)
        )

    def queries(path: str) -> tuple[int, str]:
        client.get(path)  # sessions and the like
        with CaptureQueriesContext(connection) as captured:
            started = time.perf_counter()
            html = client.get(path).content.decode()
            elapsed = time.perf_counter() - started
        print(f"\n{path} with {Folder.objects.count()} folders, {Conversation.objects.count()} conversations: "
              f"{len(captured)} queries, {elapsed * 1000:.0f} ms")
        return len(captured), html

    fill(2, 6)
    few = {path: queries(path) for path in ("/", "/search/?q=")}
    fill(40, 300)
    many = {path: queries(path) for path in ("/", "/search/?q=")}
    for path in few:
        assert many[path][0] == few[path][0], path
    assert many["/search/?q="][1].count('class="folder"') == 42
    # every pinned or foldered one (2 + 120), and the 100 most recent of the 184 others
    assert many["/search/?q="][1].count("<li") == 222
    # the sidebar's own share: its folders and its two lists of conversations
    with CaptureQueriesContext(connection) as captured:
        sidebar(alice)
    assert len(captured) == 3


def test_search_finds_conversations_by_their_folders_name(alice, bob):
    taxes = Folder.objects.create(owner=alice, name="Taxes")
    receipts = Conversation.objects.create(owner=alice, title="Receipts", folder=taxes)
    chain(receipts, "Where did I put them?", "In the drawer.")
    Conversation.objects.create(owner=alice, title="Tides")
    his = Folder.objects.create(owner=bob, name="Tax tips")
    Conversation.objects.create(owner=bob, title="His", folder=his)
    client = client_for(alice)
    html = client.get("/search/?q=tax").content.decode()
    assert "Receipts" in html and '<span class="conversation-folder muted">in Taxes</span>' in html
    assert "Tides" not in html and "His" not in html and "Tax tips" not in html
    # the folders to move a result into come along, for its ⋯ menu
    assert f'<span data-folder-id="{taxes.pk}" data-folder-name="Taxes"></span>' in html
    page = client.get("/?q=TAXES").content.decode()  # without script too
    assert "Receipts" in page.split('id="conversation-list"')[1].split("</ul>")[0]


def test_search_by_folder_name_is_still_one_query_on_conversations(alice):
    taxes = Folder.objects.create(owner=alice, name="Taxes")
    for i in range(20):
        chain(Conversation.objects.create(owner=alice, title=f"Chat {i}", folder=taxes), f"question {i}", "answer")
    client = client_for(alice)
    client.get("/search/?q=tax")
    with CaptureQueriesContext(connection) as queries:
        assert client.get("/search/?q=tax").content.decode().count("<li") == 20
    assert len([q for q in queries if "conversations_conversation" in q["sql"]]) == 1


# --- other tabs -----------------------------------------------------------------------------------------------------
@pytest.mark.django_db(transaction=True)
async def test_every_tab_of_the_user_is_told_the_sidebar_changed_and_no_one_else(alice, bob):
    alice_tab, bob_tab = await connect(alice), await connect(bob)
    tides = await sync_to_async(Conversation.objects.create)(owner=alice, title="Tides")
    client = await sync_to_async(client_for)(alice)
    answer = await sync_to_async(ajax)(client, "/folders/", {"name": "Taxes"})
    folder_id = answer.json()["id"]
    assert (await until(alice_tab, "chat.sidebar", timeout=5))[0] == {"type": "chat.sidebar"}
    await sync_to_async(ajax)(client, f"/c/{tides.pk}/move/", {"folder": folder_id})
    await until(alice_tab, "chat.sidebar", timeout=5)
    await sync_to_async(ajax)(client, f"/c/{tides.pk}/pin/", {"pinned": "1"})
    await until(alice_tab, "chat.sidebar", timeout=5)
    assert await bob_tab.receive_nothing(timeout=0.3)
    await alice_tab.disconnect()
    await bob_tab.disconnect()
