"""Money formatting: one function for every page, payload, command and error message."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.template import Context, Template

from conversations.money import budget_text, money


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (Decimal("0.0001"), "$0.0001"),
        (Decimal("0.0001000000"), "$0.0001"),
        (Decimal(0), "$0.00"),
        (Decimal("0E-10"), "$0.00"),
        (Decimal("0.0000268"), "$0.0000268"),
        (Decimal("0.0000000001"), "$0.0000000001"),
        (Decimal("0.0104"), "$0.0104"),
        (Decimal("0.0105"), "$0.0105"),
        (Decimal("0.5"), "$0.50"),
        (Decimal("0.123456"), "$0.123"),
        (Decimal("0.99996"), "$1.00"),
        (Decimal("1"), "$1.00"),
        (Decimal("12.345"), "$12.35"),
        (Decimal("1234567.891"), "$1,234,567.89"),
        (Decimal("99999999.9999"), "$100,000,000.00"),
        (Decimal("-0.0104"), "-$0.0104"),
        (Decimal("-5"), "-$5.00"),
        (3, "$3.00"),
        ("0.25", "$0.25"),
        (None, ""),
    ],
)
def test_money_shows_the_precision_it_needs(value, text):
    assert money(value) == text


def test_a_small_amount_never_reads_as_zero():
    for exponent in range(1, 11):
        assert money(Decimal(1).scaleb(-exponent)) != "$0.00"


def test_what_is_left_is_never_negative():
    over = budget_text(
        budget=Decimal("0.0001"), spent=Decimal("0.0105"), reserved=Decimal(0), remaining=Decimal("-0.0104")
    )
    assert over["left"] == "$0 left · over by $0.0104" and over["over"]
    assert over["label"] == "$0 of $0.0001 left this month · over by $0.0104"
    assert "-" not in over["left"] + over["label"]
    fine = budget_text(budget=Decimal(5), spent=Decimal("1.25"), reserved=Decimal("0.5"), remaining=Decimal("3.25"))
    assert fine["left"] == "$3.25 left" and fine["label"] == "$3.25 of $5.00 left this month" and not fine["over"]
    assert fine["title"] == "This month's budget: $5.00; spent $1.25, $0.50 held for replies in progress"


def test_the_template_filter_is_the_same_function():
    rendered = Template("{% load money %}{{ a|money }} {{ b|money }}").render(
        Context({"a": Decimal("0.0001"), "b": Decimal("1234.5")})
    )
    assert rendered == "$0.0001 $1,234.50"
