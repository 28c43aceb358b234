"""Feedback on replies: a user's thumbs up or down, with an optional comment, on a reply in one of their own
conversations (one per user and reply: giving it again changes it, an empty rating removes it), kept with the
model and provider that answered; and the CSV staff export it as (conversations/admin.py)."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from django.db import transaction

from conversations.errors import BadRequest, NotFound, ReplyInProgress
from conversations.models import Feedback, Message, UsageRecord, User

COMMENT_MAX = 2000
RATINGS = {"up": Feedback.Rating.UP, "down": Feedback.Rating.DOWN}
BUSY = (Message.Status.STREAMING, Message.Status.PENDING)
CSV_HEADER = ("created_at", "updated_at", "rating", "model", "provider", "user", "comment", "message_id",
              "conversation_id")


def rating_word(rating: int | None) -> str | None:
    """"up", "down" or None: how pages and answers name a rating."""
    if rating is None:
        return None
    return {int(Feedback.Rating.UP): "up", int(Feedback.Rating.DOWN): "down"}.get(rating)


@dataclass(frozen=True)
class FeedbackCheck:
    user: User
    reply: Message
    rating: int | None  # None: remove the user's feedback on this reply
    comment: str


def check_feedback_give(*, user: User, conversation_id: int, message_id: int, rating: str,
                        comment: str) -> FeedbackCheck:
    """A reply of the user's own conversation, finished, and a rating ("up", "down", or "" to remove) with a
    comment of reasonable length. Another user's reply is not found."""
    reply = (
        Message.objects.for_user(user).select_related("model__provider")
        .filter(pk=message_id, conversation_id=conversation_id, role=Message.Role.ASSISTANT).first()
    )
    if reply is None:
        raise NotFound("No such reply.")
    if reply.status in BUSY:
        raise ReplyInProgress("This reply is still being written: rate it once it has finished.")
    rating = rating.strip().lower()
    if rating and rating not in RATINGS:
        raise BadRequest('The rating must be "up", "down" or empty (to remove it).', param="rating")
    comment = comment.strip()
    if len(comment) > COMMENT_MAX:
        raise BadRequest(f"A comment may hold at most {COMMENT_MAX:,} characters.", param="comment")
    return FeedbackCheck(user=user, reply=reply, rating=RATINGS[rating] if rating else None, comment=comment)


def do_feedback_give(*, check: FeedbackCheck) -> Feedback | None:
    """Store, change or remove the user's feedback on the reply; returns it (None once removed)."""
    reply = check.reply
    with transaction.atomic():
        if check.rating is None:
            Feedback.objects.filter(user=check.user, message=reply).delete()
            return None
        # The provider as the ledger billed it; else the model's own (a reply without a ledger row, e.g. imported).
        billed = UsageRecord.objects.filter(message=reply).values_list("provider_name", "model_name").first()
        provider_name, model_name = billed or (reply.model.provider.name if reply.model else "", reply.model_name)
        feedback, _ = Feedback.objects.update_or_create(
            user=check.user, message=reply,
            defaults={"rating": check.rating, "comment": check.comment, "model": reply.model,
                      "model_name": model_name or reply.model_name, "provider_name": provider_name},
        )
    return feedback


def feedback_by_message(message_ids: Iterable[int]) -> dict[int, Feedback]:
    """The feedback given on these replies (one query). Only a conversation's owner can rate its replies, so the
    ids of one user's messages find that user's feedback only."""
    ids = list(message_ids)
    if not ids:
        return {}
    rows = Feedback.objects.filter(message_id__in=ids).only("message_id", "rating", "comment")
    return {f.message_id: f for f in rows if f.message_id is not None}


def _cell(value: object) -> str:
    # A comment is anyone's text: a spreadsheet must not take one starting with = + - @ for a formula.
    text = "" if value is None else str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def feedback_csv(rows: Iterable[Feedback]) -> Iterator[str]:
    """The feedback as CSV lines (header first), for staff."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(CSV_HEADER)
    for f in rows:
        writer.writerow([
            f.created_at.isoformat(), f.updated_at.isoformat(), rating_word(f.rating), _cell(f.model_name),
            _cell(f.provider_name), _cell(f.user.get_username()), _cell(f.comment), f.message_id or "",
            f.message.conversation_id if f.message else "",
        ])
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
