"""Feedback on replies: thumbs up or down with a comment, one per user and reply, changed and removed; kept with the
model and provider that answered (also after the reply is deleted); only on replies of one's own conversations;
shown again after a reload without a query per message; staff's admin list per model, its filters, search and CSV."""

from __future__ import annotations

import csv
import io
from decimal import Decimal

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from conversations.models import Conversation, Feedback, Message, UsageRecord
from tests.chat.test_pages import ajax, chain, client_for
from tests.chat_helpers import make_model

pytestmark = pytest.mark.django_db


@pytest.fixture
def answered(alice):
    model = make_model("http://127.0.0.1:9/v1", name="acme", upstream_id="wise-1")
    conversation = Conversation.objects.create(owner=alice, title="Tides", model=model)
    question, reply = chain(conversation, "Why does the sea rise?", "The moon.")
    reply.model, reply.model_name = model, model.public_name
    reply.save()
    UsageRecord.objects.create(
        user=alice, source="chat", conversation=conversation, message=reply, provider_name="acme",
        model_name=model.public_name, prompt_tokens=3, completion_tokens=2, total_tokens=5,
        estimated_cost=Decimal("0.001"), cost_source="price",
    )
    return conversation, question, reply


def rate(client: Client, conversation_id: int, message_id: int, rating: str, comment: str = ""):
    return ajax(client, f"/c/{conversation_id}/m/{message_id}/feedback/", {"rating": rating, "comment": comment})


def test_a_thumb_down_with_a_comment_is_stored_with_the_model_that_answered(alice, answered):
    conversation, _, reply = answered
    response = rate(client_for(alice), conversation.pk, reply.pk, "down", "  It ignored the wind.  ")
    assert response.status_code == 200
    assert response.json() == {"message_id": reply.pk, "rating": "down", "comment": "It ignored the wind."}
    feedback = Feedback.objects.get()
    assert (feedback.user, feedback.message, feedback.rating) == (alice, reply, Feedback.Rating.DOWN)
    assert feedback.model_name == "acme/wise-1" and feedback.provider_name == "acme"
    assert feedback.model == reply.model and feedback.comment == "It ignored the wind."
    assert feedback.created_at and feedback.updated_at


def test_one_feedback_per_user_and_reply_changeable_and_removable(alice, answered):
    conversation, _, reply = answered
    client = client_for(alice)
    rate(client, conversation.pk, reply.pk, "down", "wrong")
    first = Feedback.objects.get()
    assert rate(client, conversation.pk, reply.pk, "up").json()["rating"] == "up"
    changed = Feedback.objects.get()
    assert changed.pk == first.pk and changed.rating == Feedback.Rating.UP and changed.comment == ""
    assert changed.created_at == first.created_at and changed.updated_at >= first.updated_at
    response = rate(client, conversation.pk, reply.pk, "")
    assert response.status_code == 200 and response.json()["rating"] is None
    assert not Feedback.objects.exists()


def test_bad_ratings_long_comments_user_messages_and_replies_being_written_are_refused(alice, answered):
    conversation, question, reply = answered
    client = client_for(alice)
    assert rate(client, conversation.pk, reply.pk, "meh").status_code == 400
    assert "2,000" in rate(client, conversation.pk, reply.pk, "down", "x" * 2001).json()["error"]
    assert rate(client, conversation.pk, question.pk, "up").status_code == 404  # not a reply
    streaming = Message.objects.create(conversation=conversation, parent=question, role="assistant",
                                       status=Message.Status.STREAMING)
    assert rate(client, conversation.pk, streaming.pk, "up").status_code == 409
    assert not Feedback.objects.exists()


def test_bob_cannot_rate_alices_reply_nor_see_her_feedback(alice, bob, answered):
    conversation, _, reply = answered
    rate(client_for(alice), conversation.pk, reply.pk, "down", "ALICE-COMMENT")
    bob_client = client_for(bob)
    mine = Conversation.objects.create(owner=bob, title="Bob's")
    assert rate(bob_client, conversation.pk, reply.pk, "up").status_code == 404
    assert rate(bob_client, mine.pk, reply.pk, "up").status_code == 404  # his conversation, her reply
    assert rate(bob_client, conversation.pk, reply.pk, "").status_code == 404  # nor remove hers
    assert Feedback.objects.get().rating == Feedback.Rating.DOWN
    assert not Feedback.objects.filter(user=bob).exists()
    assert bob_client.get(f"/c/{conversation.pk}/").status_code == 404


def test_feedback_needs_a_signed_in_user_a_post_and_the_csrf_token(alice, answered):
    conversation, _, reply = answered
    url = f"/c/{conversation.pk}/m/{reply.pk}/feedback/"
    assert Client().post(url, {"rating": "up"}).status_code == 302  # to the login page
    assert client_for(alice).get(url).status_code == 405
    csrf = Client(enforce_csrf_checks=True)
    csrf.force_login(alice)
    assert csrf.post(url, {"rating": "up"}).status_code == 403
    assert not Feedback.objects.exists()


def test_the_page_shows_the_feedback_after_a_reload_without_a_query_per_reply(alice, answered):
    conversation, _, reply = answered
    client = client_for(alice)
    html = client.get(f"/c/{conversation.pk}/").content.decode()
    assert 'aria-label="Good reply"' in html and 'aria-pressed="true"' not in html
    with CaptureQueriesContext(connection) as before:
        client.get(f"/c/{conversation.pk}/")
    rate(client, conversation.pk, reply.pk, "down", "Too <b>short</b>")
    more = chain(conversation, *(["Q", "A"] * 5))
    Message.objects.filter(pk=more[0].pk).update(parent=reply)
    for m in more[1::2]:
        rate(client, conversation.pk, m.pk, "up")
    client.get(f"/c/{conversation.pk}/")  # the first render stores the new replies' HTML
    with CaptureQueriesContext(connection) as after:
        html = client.get(f"/c/{conversation.pk}/").content.decode()
    assert len(after) == len(before)  # one query for the feedback of every reply shown, with or without any
    assert html.count('aria-pressed="true"') == 6
    assert 'data-rating="down" aria-pressed="true"' in html
    assert "Too &lt;b&gt;short&lt;/b&gt;" in html and "<b>short</b>" not in html
    fragment = client.get(f"/c/{conversation.pk}/messages/?ids={reply.pk}").content.decode()
    assert 'data-rating="down" aria-pressed="true"' in fragment


def test_feedback_outlives_its_reply_for_the_per_model_view(alice, answered):
    conversation, _, reply = answered
    rate(client_for(alice), conversation.pk, reply.pk, "down", "bad")
    ajax(client_for(alice), f"/c/{conversation.pk}/delete/")
    feedback = Feedback.objects.get()
    assert feedback.message is None and feedback.model_name == "acme/wise-1" and feedback.rating == -1


# --- the admin --------------------------------------------------------------------------------------------------
@pytest.fixture
def many(alice, bob):
    other = make_model("http://127.0.0.1:9/v1", name="zeta", upstream_id="quick-2")
    for user, model_name, provider, rating, comment in [
        (alice, "acme/wise-1", "acme", -1, "=HYPERLINK(\"http://evil\")"),
        (bob, "acme/wise-1", "acme", 1, "lovely tides"),
        (alice, "zeta/quick-2", "zeta", -1, ""),
        (bob, "zeta/quick-2", "zeta", -1, "wrong about waves"),
    ]:
        conversation = Conversation.objects.create(owner=user)
        _, reply = chain(conversation, "q", "a")
        Feedback.objects.create(user=user, message=reply, model=other if provider == "zeta" else None,
                                model_name=model_name, provider_name=provider, rating=rating, comment=comment)


def test_staff_see_feedback_per_model_filtered_and_searched(staff, many):
    client = client_for(staff)
    page = client.get("/admin/conversations/feedback/")
    assert page.status_code == 200
    per_model = {(r["model_name"], r["up"], r["down"], r["comments"]) for r in page.context["feedback_per_model"]}
    assert per_model == {("acme/wise-1", 1, 1, 2), ("zeta/quick-2", 0, 2, 1)}
    html = page.content.decode()
    assert 'id="feedback-per-model"' in html and "lovely tides" in html
    down = client.get("/admin/conversations/feedback/?rating__exact=-1")
    assert down.context["cl"].result_count == 3
    zeta = client.get("/admin/conversations/feedback/?model_name=zeta%2Fquick-2")
    assert zeta.context["cl"].result_count == 2
    assert {(r["model_name"], r["down"]) for r in zeta.context["feedback_per_model"]} == {("zeta/quick-2", 2)}
    by_provider = client.get("/admin/conversations/feedback/?provider_name=acme")
    assert by_provider.context["cl"].result_count == 2
    this_year = client.get(f"/admin/conversations/feedback/?updated_at__year={timezone.now().year}")
    assert this_year.context["cl"].result_count == 4
    found = client.get("/admin/conversations/feedback/?q=waves")
    assert found.context["cl"].result_count == 1


def test_staff_export_the_selected_feedback_as_csv(staff, many):
    ids = [str(pk) for pk in Feedback.objects.values_list("pk", flat=True)]
    response = client_for(staff).post(
        "/admin/conversations/feedback/", {"action": "export_csv", "_selected_action": ids}
    )
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert len(rows) == 4
    assert {r["rating"] for r in rows} == {"up", "down"}
    assert {r["model"] for r in rows} == {"acme/wise-1", "zeta/quick-2"}
    assert {r["user"] for r in rows} == {"alice", "bob"}
    assert "'=HYPERLINK(\"http://evil\")" in {r["comment"] for r in rows}  # never a formula in a spreadsheet
    assert all(r["message_id"] and r["conversation_id"] for r in rows)


def test_people_who_are_not_staff_get_no_feedback_admin(alice, many):
    response = client_for(alice).get("/admin/conversations/feedback/")
    assert response.status_code == 302 and "/admin/login/" in response["Location"]
