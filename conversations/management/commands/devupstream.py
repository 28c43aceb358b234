"""`manage.py devupstream`: serve the built-in OpenAI-compatible development upstream (offline replies)."""

from django.core.management.base import BaseCommand

from conversations.devupstream.server import run


class Command(BaseCommand):
    help = "Serve the development upstream: an OpenAI-compatible server with plausible streamed replies."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8001)
        parser.add_argument("--delay", type=float, default=0.02, help="seconds between tokens")

    def handle(self, *args, **options) -> None:
        run(options["host"], options["port"], delay=options["delay"])
