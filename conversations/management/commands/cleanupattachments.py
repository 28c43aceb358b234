"""`manage.py cleanupattachments`: delete the uploads never sent with a message (rows and stored files)."""

from datetime import timedelta

from django.core.management.base import BaseCommand, CommandError

from conversations.chat.attachments import attachments_unsent_delete, unsent_max_age


class Command(BaseCommand):
    help = (
        "Delete uploads never sent with a message once older than CHATWEB_ATTACHMENT_UNSENT_HOURS "
        "(or --older-than-hours); server processes also do this about hourly."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--older-than-hours", type=float, default=None,
                            help="age in hours (default: CHATWEB_ATTACHMENT_UNSENT_HOURS)")

    def handle(self, *args, **options) -> None:
        hours = options["older_than_hours"]
        if hours is not None and hours < 0:
            raise CommandError("--older-than-hours must be 0 or more")
        age = timedelta(hours=hours) if hours is not None else unsent_max_age()
        if age is None:
            self.stdout.write("kept: CHATWEB_ATTACHMENT_UNSENT_HOURS is 0 (pass --older-than-hours to delete)")
            return
        deleted = attachments_unsent_delete(older_than=age)
        self.stdout.write(f"deleted {deleted} unsent uploads")
