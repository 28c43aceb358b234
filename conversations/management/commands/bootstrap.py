"""`manage.py bootstrap`: the way in for `make run` — an admin account and the development upstream provider."""

from __future__ import annotations

import secrets
from decimal import Decimal

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from conversations.catalog.localdev import DEV_MODELS, DEV_PROVIDER_NAME
from conversations.models import Model, Provider


class Command(BaseCommand):
    help = "Create an admin account if there is none, and register the development upstream as a provider."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--dev-upstream-url", default="http://127.0.0.1:8001/v1")
        parser.add_argument("--username", default="admin")

    def handle(self, *args, **options) -> None:
        self._ensure_admin(options["username"])
        self._ensure_dev_provider(options["dev_upstream_url"])

    def _ensure_admin(self, username: str) -> None:
        users = get_user_model()
        password_file = settings.VAR_DIR / "admin-password"
        if not users.objects.filter(is_superuser=True).exists():
            password = secrets.token_urlsafe(12)
            users.objects.create_superuser(username=username, email="", password=password)
            password_file.touch(mode=0o600)
            password_file.write_text(password + "\n")
        admin = users.objects.filter(username=username, is_superuser=True).first()
        if admin and password_file.exists() and admin.check_password(password_file.read_text().strip()):
            self.stdout.write(
                f"Sign in at /accounts/login/ as {username!r} with password {password_file.read_text().strip()!r} "
                f"(kept in {password_file.relative_to(settings.BASE_DIR)}; change it in /accounts/password_change/)."
            )
        else:
            self.stdout.write(
                "An admin account exists; sign in with its password (or `manage.py changepassword`)."
            )

    def _ensure_dev_provider(self, url: str) -> None:
        provider, _ = Provider.objects.update_or_create(
            name=DEV_PROVIDER_NAME, defaults={"base_url": url.rstrip("/"), "is_development": True}
        )
        for spec in DEV_MODELS:
            model = Model.objects.filter(provider=provider, upstream_id=spec.id).first() or Model(
                provider=provider,
                upstream_id=spec.id,
                input_price=Decimal(spec.input_price),
                output_price=Decimal(spec.output_price),
                context_length=spec.context_length,
                display_name=spec.display_name,
                description=spec.description,
            )
            model.api = spec.api
            model.context_length = model.context_length or spec.context_length
            model.max_output_tokens = model.max_output_tokens or spec.max_output_tokens
            model.vision = spec.vision
            model.save()
        self.stdout.write(f"Development upstream registered as provider {DEV_PROVIDER_NAME!r} at {url}.")
