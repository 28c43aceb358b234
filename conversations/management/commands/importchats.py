"""`manage.py importchats USERNAME FILE`: import ChatGPT's conversations.json or a chatweb JSON export for a user,
all or nothing (conversations/chat/importing.py; conversations the user imported before are skipped)."""

from __future__ import annotations

from pathlib import Path

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from conversations.chat.importing import ImportRefused, import_conversations


class Command(BaseCommand):
    help = (
        "Import ChatGPT's conversations.json or chatweb's JSON export for USERNAME. A malformed file is refused "
        "whole (the first bad entry is named); conversations imported before are skipped."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument("file", type=Path)

    def handle(self, *args, **options) -> None:
        user = get_user_model().objects.filter(username=options["username"]).first()
        if user is None:
            raise CommandError(f"No user named {options['username']!r}.")
        path: Path = options["file"]
        try:
            raw = path.read_bytes()
        except OSError as exc:
            raise CommandError(f"Cannot read {path}: {exc.strerror or exc}.") from None
        try:
            result = import_conversations(user=user, raw=raw)
        except ImportRefused as exc:
            raise CommandError(f"Nothing imported: {exc.message}") from None
        if result.skipped:
            self.stdout.write(f"skipped {result.skipped} conversations imported before")
        self.stdout.write(result.summary())
