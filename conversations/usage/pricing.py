"""Cost rules: what one reply costs, and where that figure comes from."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

from conversations.upstream.events import Usage

QUANTUM = Decimal("1E-10")  # 10 decimal places of USD: exact for per-token prices, no float drift
PER_TOKENS = Decimal(1_000_000)  # prices are quoted per million tokens
ZERO = Decimal(0)


def reply_cost(
    *,
    usage: Usage | None,
    prompt_tokens: int,
    completion_tokens: int,
    input_price: Decimal | None,
    output_price: Decimal | None,
) -> tuple[Decimal, str]:
    """(cost in USD, source) of one reply.

    - "reported": the provider's own cost (`usage.cost`) is what the user is billed, so it wins;
    - "price": the token counts the caller settled on (reported or estimated) times the model's prices
      per million tokens; a price left unset counts as free;
    - "estimated": no prices known, so the cost is 0 and only the token counts are worth recording.
    A negative figure (a provider's glitch) never becomes a credit: it is recorded as 0.
    """
    if usage is not None and usage.cost is not None:
        return _money(usage.cost), "reported"
    if input_price is None and output_price is None:
        return _money(ZERO), "estimated"
    cost = (prompt_tokens * (input_price or ZERO) + completion_tokens * (output_price or ZERO)) / PER_TOKENS
    return _money(cost), "price"


def _money(value: Decimal) -> Decimal:
    return max(value, ZERO).quantize(QUANTUM, rounding=ROUND_HALF_UP)
