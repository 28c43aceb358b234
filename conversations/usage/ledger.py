"""The usage ledger's one writer: tokens (reported, or estimated offline and marked), cost, and the budget settle."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from django.utils import timezone

from conversations import rows
from conversations.models import Model, Provider, UsageRecord
from conversations.upstream.events import Usage
from conversations.upstream.tokens import DEFAULT_IMAGE_RULE, count_prompt_tokens, count_tokens
from conversations.usage.alerts import budget_alerts_check
from conversations.usage.budgets import budget_settle
from conversations.usage.pricing import reply_cost
from conversations.usage.rollup import usage_day_add


@dataclass(frozen=True)
class Priced:
    """The names and prices a request ran under, as they were at the time."""

    provider_name: str
    model_name: str
    input_price: Decimal | None
    output_price: Decimal | None
    image_rule: str = DEFAULT_IMAGE_RULE  # how the model counts an image's tokens, when they are estimated

    @classmethod
    def of(cls, model: Model) -> Priced:
        return cls(model.provider.name, model.public_name, model.input_price, model.output_price, model.image_tokens)


@dataclass(frozen=True)
class TokenCounts:
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    estimated: bool


def usage_reported(usage: Usage | None, completion_text: str) -> bool:
    """Whether the upstream's counts are real ones (else they are counted offline, which takes a while)."""
    return usage is not None and (usage.total_tokens > 0 or usage.prompt_tokens > 0 or not completion_text)


NOT_SENT = TokenCounts(0, 0, 0, estimated=False)  # never reached the provider: nothing to bill, known exactly


def token_counts(
    *, usage: Usage | None, prompt_messages: list[dict], completion_text: str, sent: bool = True,
    image_rule: str = DEFAULT_IMAGE_RULE,
) -> TokenCounts:
    """The upstream's counts when it gave real ones; otherwise counted offline from what was sent and received
    (images by `image_rule`). `sent` False: the request never reached the provider (no connection was opened), so
    it used no tokens."""
    if not sent:
        return NOT_SENT
    if usage is not None and usage_reported(usage, completion_text):
        total = usage.total_tokens or usage.prompt_tokens + usage.completion_tokens
        return TokenCounts(usage.prompt_tokens, usage.completion_tokens, total, estimated=False)
    prompt = count_prompt_tokens(prompt_messages, image_rule=image_rule)
    completion = count_tokens(completion_text) if completion_text else 0
    return TokenCounts(prompt, completion, prompt + completion, estimated=True)


FAILED_REASONS = ("error", "interrupted")  # finish reasons of a reply that ended on an error (besides error codes)


def outcome_of(finish_reason: str, *, cut: bool = False) -> str:
    """How a reply ended, for its ledger row: `stopped`, `cut` (an error that cut output short, when `cut`),
    `failed` (an error: a finish reason of "error", or the code of why it never reached the provider), else
    `complete`."""
    if finish_reason == "stopped":
        return UsageRecord.Outcome.STOPPED
    if finish_reason in FAILED_REASONS or finish_reason.startswith("upstream_"):
        return UsageRecord.Outcome.CUT if cut else UsageRecord.Outcome.FAILED
    return UsageRecord.Outcome.COMPLETE


@dataclass(frozen=True)
class Reckoning:
    """What a reply costs, as its ledger row says it: tokens (reported, or estimated and marked) and cost."""

    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    usage_estimated: bool
    estimated_cost: Decimal
    cost_source: str


def reckon(
    *, priced: Priced, usage: Usage | None, prompt_messages: list[dict], completion_text: str, sent: bool = True
) -> Reckoning:
    """The numbers of a ledger row, before it is written (the API tells them to the client first)."""
    counts = token_counts(usage=usage, prompt_messages=prompt_messages, completion_text=completion_text, sent=sent,
                          image_rule=priced.image_rule)
    if not sent:
        usage = None  # whatever came with the failure, a request that was never sent costs nothing
    # A provider's own cost wins; else tokens × prices (over estimated tokens, marked so); else 0, "estimated".
    cost, cost_source = reply_cost(
        usage=usage,
        prompt_tokens=counts.prompt_tokens,
        completion_tokens=counts.completion_tokens,
        input_price=priced.input_price,
        output_price=priced.output_price,
    )
    return Reckoning(
        counts.prompt_tokens, counts.completion_tokens, counts.total_tokens, counts.estimated, cost, cost_source
    )


def usage_record(
    *,
    user_id: int,
    source: str,
    priced: Priced,
    usage: Usage | None,
    prompt_messages: list[dict],
    completion_text: str,
    finish_reason: str,
    ttft_ms: int | None,
    duration_ms: int | None,
    conversation_id: int | None = None,
    message_id: int | None = None,
    api_key_id: int | None = None,
    reservation_id: int | None = None,
    reckoning: Reckoning | None = None,
    sent: bool = True,
    upstream_request_id: str | None = None,
    tz: str | None = None,
    outcome: str | None = None,
) -> UsageRecord:
    """Write one ledger row and its daily roll-up, release the budget reservation; call inside a transaction.
    `reckoning`: its numbers when they were worked out (and told) already. `sent` False: the request never
    reached the provider: 0 tokens, 0 cost, and the provider is marked unreachable for the model picker.
    `upstream_request_id`: the provider's id of the reply, what reconciliation matches its account by.
    `tz`: the owner's time zone setting when the caller read it already (else the roll-up reads it).
    `outcome`: how the reply ended (UsageRecord.Outcome); by default what `finish_reason` says (`outcome_of`)."""
    r = reckoning or reckon(
        priced=priced, usage=usage, prompt_messages=prompt_messages, completion_text=completion_text, sent=sent
    )
    if not sent:
        Provider.objects.filter(name=priced.provider_name).update(unreachable_at=timezone.now())
    # Through rows.insert: a class's replies all end together, and the ORM's create() compiled this wide row's
    # statement anew for each one (a third of a reply's finish).
    record = rows.insert(UsageRecord(
        user_id=user_id,
        source=source,
        conversation_id=conversation_id,
        message_id=message_id,
        api_key_id=api_key_id,
        provider_name=priced.provider_name,
        model_name=priced.model_name,
        prompt_tokens=r.prompt_tokens,
        completion_tokens=r.completion_tokens,
        total_tokens=r.total_tokens,
        estimated_cost=r.estimated_cost,
        cost_source=r.cost_source,
        usage_estimated=r.usage_estimated,
        finish_reason=finish_reason,
        outcome=outcome or outcome_of(finish_reason),
        ttft_ms=ttft_ms,
        duration_ms=duration_ms,
        upstream_request_id=(upstream_request_id or "")[:255],
        # The prices the row was billed at: a later price change never reprices it.
        input_price=priced.input_price,
        output_price=priced.output_price,
    ))
    usage_day_add(record=record, tz=tz)  # the dashboard's daily roll-up moves with the ledger, in one transaction
    budget_settle(reservation_id)
    # Only a request admitted against a budget (it holds a reservation) can cross one: a user without a budget
    # costs the ledger write no extra read.
    if record.estimated_cost > 0 and reservation_id is not None:
        budget_alerts_check(user_id=user_id)
    return record
