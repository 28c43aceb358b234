"""Money as people read it: the one formatting every page, payload, command and error message uses.

Amounts of a dollar or more show cents ("$1,234.50"); smaller ones show three significant digits, at least
two decimals ("$0.50", "$0.0105", "$0.0001"), so a small non-zero amount never reads as "$0.00". Exact
figures (exports, the API's usage objects) keep `rollup.money_text`.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import TypedDict

SIGNIFICANT = 3  # digits kept below one dollar
CENT = Decimal("0.01")


def money(value: Decimal | int | float | str | None) -> str:
    """USD for people: "$0.00", "$0.0001", "$0.0105", "$0.50", "$12.35", "$1,234,567.00", "-$0.0104"."""
    if value is None or value == "":
        return ""
    try:
        amount = value if isinstance(value, Decimal) else Decimal(str(value))
    except InvalidOperation:
        return str(value)
    if not amount.is_finite():
        return str(value)
    sign = "-" if amount < 0 else ""
    amount = abs(amount)
    if amount.is_zero():
        return "$0.00"
    if amount >= 1:
        return f"{sign}${amount.quantize(CENT, rounding=ROUND_HALF_UP):,.2f}"
    # Below a dollar: round to SIGNIFICANT digits, then drop trailing zeros past the cents.
    decimals = max(2, SIGNIFICANT - 1 - amount.adjusted())
    rounded = amount.quantize(Decimal(1).scaleb(-decimals), rounding=ROUND_HALF_UP)
    text = f"{rounded:f}"
    whole, _, fraction = text.partition(".")
    fraction = fraction.rstrip("0").ljust(2, "0")
    return f"{sign}${whole}.{fraction}"


class BudgetText(TypedDict):
    left: str  # "$0.0045 left" or "$0 left · over by $0.0104"
    label: str  # the composer's line: "$0.0045 of $0.01 left this month"
    title: str  # the line's tooltip: budget, spent, held
    over: bool


def budget_text(*, budget: Decimal, spent: Decimal, reserved: Decimal, remaining: Decimal) -> BudgetText:
    """How a budget reads on every page: what is left, never a negative amount (an overrun says "over by")."""
    over = remaining < 0
    left = f"$0 left · over by {money(-remaining)}" if over else f"{money(remaining)} left"
    label = (
        f"$0 of {money(budget)} left this month · over by {money(-remaining)}"
        if over
        else f"{money(remaining)} of {money(budget)} left this month"
    )
    held = f", {money(reserved)} held for replies in progress" if reserved else ""
    title = f"This month's budget: {money(budget)}; spent {money(spent)}{held}"
    return {"left": left, "label": label, "title": title, "over": over}
