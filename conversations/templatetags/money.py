"""`{% load money %}` then `{{ amount|money }}`: USD formatted by conversations/conversations/money.py."""

from __future__ import annotations

from decimal import Decimal

from django import template

from conversations.money import money as money_format

register = template.Library()


@register.filter
def money(value: Decimal | int | float | str | None) -> str:
    return money_format(value)
