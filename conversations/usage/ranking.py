"""The most expensive conversations of a span, without grouping every conversation-day of the span.

Each conversation's usage in a span is at most its usage over all time (sums of non-negative numbers), and
`ConversationTotal` keeps that total per conversation, ordered most expensive first by an index. So: take
candidates in that order, a batch at a time; sum each candidate's days inside the span (`ConversationDay`);
stop once the last of the best `limit` so far ranks above the batch's last total, which bounds every candidate
not yet read. A long span stops after the first batch (almost every conversation lies inside it); a short
one reads the conversations that overlap it. Exact: the same result as grouping every day of the span.
"""

from __future__ import annotations

from datetime import date

from conversations.models import ConversationDay, ConversationTotal
from conversations.usage.rollup import CONVERSATION_SUMMED, SUMS, Owner, Totals, rollup_q

FIRST_BATCH = 2  # × limit


def _rank(cost_units: int, total_tokens: int, conversation_id: int) -> tuple[int, int, int]:
    """Most expensive first, then most tokens, then the oldest conversation."""
    return -cost_units, -total_tokens, conversation_id


def top_conversations(
    subject: Owner | None, first: date, last: date, limit: int
) -> list[tuple[int, Totals]]:
    """The subject's (None: everyone's) `limit` most expensive conversations on their days first..last,
    with their totals in the span (requests, tokens, cost), most expensive first."""
    candidates = ConversationTotal.objects.filter(first_day__lte=last, last_day__gte=first)
    if subject is not None:
        candidates = candidates.filter(user_id=subject.user_id)
    ranked = candidates.order_by("-cost_units", "-total_tokens", "conversation_id").values_list(
        "conversation_id", "cost_units", "total_tokens"
    )  # (a conversation's records are its owner's; were they not, each owner's part would rank on its own)
    in_span = ConversationDay.objects.filter(rollup_q(subject, first, last)).order_by()
    best: list[tuple[tuple[int, int, int], int, Totals]] = []
    seen: set[tuple[int, int]] = set()  # (conversation, owner): what a ConversationTotal row bounds
    offset, batch = 0, FIRST_BATCH * limit
    while True:
        rows = list(ranked[offset : offset + batch])
        sums = (
            in_span.filter(conversation_id__in=[r[0] for r in rows]).values("conversation_id", "user_id")
            .annotate(**{k: SUMS[k] for k in CONVERSATION_SUMMED})
        )
        for s in sums:
            if (s["conversation_id"], s["user_id"]) in seen:
                continue
            seen.add((s["conversation_id"], s["user_id"]))
            pk, totals = s["conversation_id"], Totals(**{k: s[k] for k in CONVERSATION_SUMMED})
            best.append((_rank(totals.cost_units, totals.total_tokens, pk), pk, totals))
        best.sort(key=lambda b: b[0])
        del best[limit:]
        if len(rows) < batch:
            break  # no candidate left
        conversation_id, cost_units, total_tokens = rows[-1]
        if len(best) == limit and best[-1][0] <= _rank(cost_units, total_tokens, conversation_id):
            break  # every candidate after this batch ranks below the last of the best in the span too
        offset, batch = offset + batch, batch * 2
    return [(conversation_id, totals) for _, conversation_id, totals in best]
