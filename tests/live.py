"""A live chatweb: Daphne in a subprocess on the test database, for the openai client and browser tests."""

from __future__ import annotations

import os

from django.conf import settings
from django.test.utils import override_settings

from bench.process import Service, daphne_argv, free_port


def test_database_url() -> str:
    """The URL of the database pytest-django created, for processes outside this one."""
    db = settings.DATABASES["default"]
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{db['NAME']}"
    user = db.get("USER") or "postgres"
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    return (
        f"postgres://{user}{password}@{db.get('HOST') or '127.0.0.1'}:{db.get('PORT') or 5432}/{db['NAME']}"
    )


class LiveServer(Service):
    """`daphne chatweb.asgi:application` on a free port, on the test database; `url` is its base URL."""

    def __init__(self, extra_env: dict[str, str] | None = None) -> None:
        port = free_port()
        env = {
            **os.environ,
            "DATABASE_URL": test_database_url(),
            "PYTHONUNBUFFERED": "1",
            **(extra_env or {}),
        }
        env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        env["CHATWEB_ENCRYPTION_KEYS"] = ",".join(settings.CHATWEB_ENCRYPTION_KEYS)
        env["SECRET_KEY"] = settings.SECRET_KEY
        # pytest-django's helper for a fixture named `live_server` enables this around each test (and
        # gives such tests `transactional_db`); our server needs no settings changed in this process.
        self._live_server_modified_settings = override_settings()
        super().__init__(daphne_argv(port), env, settings.VAR_DIR / f"live-{port}.log", port, timeout=30)

    def stop(self) -> None:
        super().stop()
        self.log_path.unlink(missing_ok=True)
