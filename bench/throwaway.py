"""A throwaway chatweb site for benchmarks and live-server tests: a fresh database, migrated, with users that each
have a session (no sign-in form, no password) and providers with one priced model each.

In a process of its own (Django is set up on that database here, not on the caller's):

    python -m bench.throwaway '{"users": 100, "providers": {"dev": "http://127.0.0.1:8001/v1"}}'

with DATABASE_URL, SECRET_KEY (sessions are signed with it) and CHATWEB_ENCRYPTION_KEYS in the environment;
prints {"models": {provider: public name}, "cookies": ["sessionid=...", ...]}.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def prepare(*, users: int, providers: dict[str, str], prefix: str = "load", api_key: bool = False) -> dict[str, Any]:
    """Migrate the database of DATABASE_URL and fill it (in this process: call once, before anything else).
    `api_key`: also a /v1 key of the first user, without a rate limit (as a lab's evaluation script has one)."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatweb.settings")
    import django

    django.setup()
    from decimal import Decimal

    from django.conf import settings
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
    from django.contrib.sessions.backends.db import SessionStore
    from django.core.management import call_command
    from django.db import transaction

    from conversations.models import Model, Provider, User

    call_command("migrate", interactive=False, verbosity=0)
    unusable = "!unusable"  # no password: these users have a session only
    with transaction.atomic():
        User.objects.bulk_create([User(username=f"{prefix}{i:05d}", password=unusable) for i in range(users)])
        cookies = []
        for user in User.objects.filter(username__startswith=prefix).order_by("username"):
            session = SessionStore()
            session[SESSION_KEY] = str(user.pk)
            session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
            session[HASH_SESSION_KEY] = user.get_session_auth_hash()
            session.create()
            cookies.append(f"{settings.SESSION_COOKIE_NAME}={session.session_key}")
        models = {}
        for name, base_url in providers.items():
            provider = Provider.objects.create(name=name, base_url=base_url)
            models[name] = Model.objects.create(
                provider=provider, upstream_id="dev-chat", input_price=Decimal("0.5"), output_price=Decimal("1.5"),
                context_length=32768, max_output_tokens=1024,
            ).public_name
        out: dict[str, Any] = {"models": models, "cookies": cookies}
        if api_key:
            try:
                from conversations.accounts.apikeys import api_key_create
            except ImportError:  # an older tree (--server-root b1b186c) keeps it in the API's package
                from conversations.api.keys import api_key_create  # type: ignore[import-not-found,no-redef]

            out["api_key"] = api_key_create(user=User.objects.order_by("username").first(), name="bench")[1]
    return out


def prepare_in_subprocess(env: dict[str, str], *, root: Path = ROOT, **kwargs: Any) -> dict[str, Any]:
    """prepare() in a child process with this environment (the caller's own Django stays as it is); `root`: the
    source tree whose migrations and models it uses (this file runs from this tree: an older one may lack it)."""
    env = {**env, "PYTHONPATH": str(root)}
    out = subprocess.run([sys.executable, str(Path(__file__).resolve()), json.dumps(kwargs)], cwd=root, env=env,
                         capture_output=True, text=True, check=False, timeout=300)
    if out.returncode != 0:
        raise RuntimeError(f"preparing the throwaway site failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    print(json.dumps(prepare(**json.loads(sys.argv[1]))))
