"""`manage.py group NAME [--monthly 20.00 | --clear] [--add USER ...] [--remove USER ...] [--manager USER ...]`."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError, CommandParser

from conversations.accounts.teams import TeamError, team_managers, team_members, team_update
from conversations.management.commands.budget import _amount
from conversations.usage.budgets import team_budget_status

SOURCE = "group command"


class Command(BaseCommand):
    help = "Create or update a group: its shared monthly budget, its members and its managers; then show it."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name")
        budget = parser.add_mutually_exclusive_group()
        budget.add_argument("--monthly", metavar="USD", help="the group's shared budget per calendar month")
        budget.add_argument("--clear", action="store_true", help="remove the group's shared budget")
        parser.add_argument("--add", nargs="+", default=[], metavar="USER", help="add members")
        parser.add_argument("--remove", nargs="+", default=[], metavar="USER", help="remove members (and managers)")
        parser.add_argument("--manager", nargs="+", default=[], metavar="USER",
                            help="make managers (they see the group's usage; they become members)")

    def handle(self, *args, **options) -> None:
        monthly = _amount(options["monthly"]) if options["monthly"] is not None else None
        try:
            team = team_update(
                name=options["name"], monthly=monthly, clear=options["clear"], add=options["add"],
                remove=options["remove"], managers=options["manager"], source=SOURCE,
            )
        except TeamError as exc:
            raise CommandError(str(exc)) from None
        status = team_budget_status(team)
        budget = "no shared budget" if status is None else (
            f"monthly budget ${status.budget:.2f}; since {status.month} ${status.spent:.4f} spent, "
            f"${status.reserved:.4f} reserved, ${status.remaining:.4f} left"
        )
        self.stdout.write(f"group {team.group.name}: {budget}")
        self.stdout.write(f"  members: {', '.join(team_members(team)) or '(none)'}")
        self.stdout.write(f"  managers: {', '.join(team_managers(team)) or '(none)'}")
