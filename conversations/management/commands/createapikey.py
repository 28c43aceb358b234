"""`manage.py createapikey USERNAME`: a new personal API key, printed once, alone on the last line."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from conversations.accounts.apikeys import ApiKeyLimit, api_key_create


class Command(BaseCommand):
    help = "Create a personal API key for USERNAME and print it once (only its hash is stored)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument("--name", default="", help="A label for the key (shown on the settings page).")
        parser.add_argument("--rpm", type=int, default=None, help="Requests-per-minute limit for this key.")

    def handle(self, *args, **options) -> None:
        user = get_user_model().objects.filter(username=options["username"]).first()
        if user is None:
            raise CommandError(f"No user named {options['username']!r}.")
        if options["rpm"] is not None and options["rpm"] < 1:
            raise CommandError("--rpm must be a positive number of requests per minute.")
        try:
            key, raw = api_key_create(
                user=user, name=options["name"] or "createapikey", rpm_limit=options["rpm"]
            )
        except ApiKeyLimit as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(f"API key {key.prefix}… for {user.get_username()} (shown once; store it now):")
        self.stdout.write(raw)
