"""`manage.py budget USERNAME --monthly 5.00` / `--clear` (docs/usage.md): set, remove or show a budget."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from django.core.management.base import BaseCommand, CommandError, CommandParser

from conversations.models import User
from conversations.money import money
from conversations.usage.budgets import budget_display, user_budget_set

SOURCE = "budget command"


def _amount(text: str) -> Decimal:
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise CommandError(f"--monthly: {text!r} is not an amount in USD, e.g. 5.00") from None
    if not value.is_finite() or value < 0:
        raise CommandError("--monthly: the budget must be a positive amount in USD (or use --clear)")
    if value != value.quantize(Decimal("0.0001")) or value >= Decimal("1e8"):
        raise CommandError("--monthly: at most 4 decimal places and below 100,000,000 USD")
    return value


class Command(BaseCommand):
    help = "Set (--monthly USD), remove (--clear) or show a user's monthly budget."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        action = parser.add_mutually_exclusive_group()
        action.add_argument("--monthly", metavar="USD", help="the budget per calendar month, e.g. 5.00")
        action.add_argument("--clear", action="store_true", help="remove the budget (no cap)")

    def handle(self, *args, **options) -> None:
        user = User.objects.filter(username=options["username"]).first()
        if user is None:
            raise CommandError(f"no user named {options['username']!r}")
        if options["clear"]:
            user_budget_set(user=user, monthly=None, source=SOURCE)
        elif options["monthly"] is not None:
            user_budget_set(user=user, monthly=_amount(options["monthly"]), source=SOURCE)
        status = budget_display(user)
        if status is None:
            self.stdout.write(f"{user.username}: no monthly budget")
            return
        self.stdout.write(
            f"{user.username}: monthly budget {money(status['budget'])}; since {status['month']} "
            f"{money(status['spent'])} spent, {money(status['reserved'])} reserved, {status['left']}"
        )
