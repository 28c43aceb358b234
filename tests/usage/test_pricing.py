"""Cost rules: the provider's own cost wins, then tokens × prices, else an estimate at 0."""

from __future__ import annotations

from decimal import Decimal

from conversations.upstream.events import Usage
from conversations.usage.pricing import reply_cost


def cost(
    usage: Usage | None = None, *, p: int = 1000, c: int = 500, i: str | None = "2.5", o: str | None = "10"
):
    return reply_cost(
        usage=usage,
        prompt_tokens=p,
        completion_tokens=c,
        input_price=None if i is None else Decimal(i),
        output_price=None if o is None else Decimal(o),
    )


def test_reported_cost_wins() -> None:
    assert cost(Usage(10, 5, 15, Decimal("0.0000268"))) == (Decimal("0.0000268000"), "reported")
    assert cost(Usage(10, 5, 15, Decimal("0")), i=None, o=None) == (Decimal("0E-10"), "reported")


def test_reported_cost_is_quantized_to_10_places() -> None:
    value, source = cost(Usage(1, 1, 2, Decimal("0.00000390000000000001")))
    assert (value, source) == (Decimal("0.0000039000"), "reported")
    assert value.as_tuple().exponent == -10
    assert cost(Usage(1, 1, 2, Decimal("0.00000000005")))[0] == Decimal("0.0000000001")  # half up


def test_price_per_million_tokens() -> None:
    # 1000 × 2.5 / 1M + 500 × 10 / 1M = 0.0025 + 0.005
    assert cost() == (Decimal("0.0075000000"), "price")
    assert cost(Usage(10, 5, 15)) == (Decimal("0.0075000000"), "price")  # usage without cost: prices
    assert cost(p=1, c=0, i="0.15", o="0.6") == (Decimal("0.0000001500"), "price")
    assert cost(p=3, c=7, i="0.0000001", o="0") == (Decimal("0E-10"), "price")


def test_one_price_missing_counts_as_free() -> None:
    assert cost(i=None) == (Decimal("0.0050000000"), "price")
    assert cost(o=None) == (Decimal("0.0025000000"), "price")


def test_no_prices_is_an_estimate_at_zero() -> None:
    assert cost(i=None, o=None) == (Decimal(0), "estimated")
    assert cost(None, p=0, c=0, i=None, o=None)[1] == "estimated"


def test_never_a_credit() -> None:
    assert cost(Usage(1, 1, 2, Decimal("-1")))[0] == Decimal(0)


def test_results_are_decimals() -> None:
    for result in (cost(), cost(i=None, o=None), cost(Usage(1, 1, 2, Decimal("1")))):
        assert isinstance(result[0], Decimal)


def test_a_request_never_sent_counts_nothing_and_one_sent_without_usage_is_estimated():
    from conversations.upstream.events import Usage
    from conversations.usage.ledger import Priced, reckon, token_counts

    messages = [{"role": "user", "content": "Hello there, provider"}]
    never = token_counts(usage=None, prompt_messages=messages, completion_text="", sent=False)
    assert (never.prompt_tokens, never.completion_tokens, never.total_tokens, never.estimated) == (0, 0, 0, False)
    sent = token_counts(usage=None, prompt_messages=messages, completion_text="")
    assert sent.prompt_tokens > 0 and sent.estimated
    priced = Priced("p", "p/m", Decimal(1), Decimal(1))
    r = reckon(priced=priced, usage=Usage(5, 5, 10, cost=Decimal(1)), prompt_messages=messages,
               completion_text="", sent=False)
    assert r.estimated_cost == 0 and r.total_tokens == 0 and not r.usage_estimated
