"""Shared fixtures: named users (alice, bob, staff), the development upstream over real HTTP, CI's service checks."""

from __future__ import annotations

import contextlib
import os
import uuid

import pytest

# Each test session gets its own Redis channel-layer namespace, so runs never see each other's groups.
os.environ.setdefault("CHATWEB_CHANNEL_PREFIX", f"chatweb-test-{uuid.uuid4().hex[:8]}")
# Browser tests drive Playwright's sync API from the test thread, beside Django's ORM.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

pytest_plugins = ["tests.upstream_fixtures"]

PASSWORD = "correct horse battery staple"


def pytest_sessionstart(session: pytest.Session) -> None:
    """In CI (CHATWEB_REQUIRE_SERVICES=1) the suite must run on PostgreSQL + Redis: fail early if it would not."""
    if os.environ.get("CHATWEB_REQUIRE_SERVICES") != "1":
        return
    from django.conf import settings

    engine = settings.DATABASES["default"]["ENGINE"]
    layer = settings.CHANNEL_LAYERS["default"]["BACKEND"]
    if "postgresql" not in engine or "redis" not in layer.lower():
        raise pytest.UsageError(
            f"CHATWEB_REQUIRE_SERVICES=1 but the suite would run on {engine} / {layer}: set DATABASE_URL and REDIS_URL."
        )


def services_available() -> bool:
    from django.conf import settings

    return "postgresql" in settings.DATABASES["default"]["ENGINE"] and bool(settings.REDIS_URL)


@pytest.fixture
def require_services() -> None:
    """For tests that need PostgreSQL + Redis: skipped locally without them, a failure in CI."""
    if services_available():
        return
    if os.environ.get("CHATWEB_REQUIRE_SERVICES") == "1":
        pytest.fail("this test needs DATABASE_URL (PostgreSQL) and REDIS_URL")
    pytest.skip("needs DATABASE_URL (PostgreSQL) and REDIS_URL; CI runs it")


def _user(username: str, **extra):
    from django.contrib.auth import get_user_model

    return get_user_model().objects.create_user(username=username, password=PASSWORD, **extra)


@pytest.fixture
def alice(db):
    return _user("alice")


@pytest.fixture
def bob(db):
    return _user("bob")


@pytest.fixture
def staff(db):
    return _user("staff", is_staff=True, is_superuser=True)


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup, django_db_blocker):
    """pytest-django's, plus: before the PostgreSQL test database is dropped, end every other session on it
    (connections some thread still held, and psycopg's pool) so that the drop does not fail and leave a
    `test_test_<pid>` database behind. SQLite: the database threads' open connections leave the file's `-wal`
    and `-shm` behind when it is deleted; they are removed at the end of the session."""
    yield
    from django.db import connections

    for alias in connections:
        if connections[alias].vendor == "sqlite" and (name := connections[alias].settings_dict["NAME"]):
            _sqlite_leftovers.extend(f"{name}{suffix}" for suffix in ("-wal", "-shm"))

    with django_db_blocker.unblock():
        for alias in connections:
            connection = connections[alias]
            if connection.vendor != "postgresql":
                continue
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            connection.close()
            if connections.settings[alias].get("OPTIONS", {}).get("pool"):
                connection.close_pool()


_sqlite_leftovers: list[str] = []


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    for path in _sqlite_leftovers:
        if not os.path.exists(path.rsplit("-", 1)[0]):  # the database itself is gone
            with contextlib.suppress(FileNotFoundError):
                os.remove(path)


@pytest.fixture(scope="session")
def live_server(django_db_setup, django_db_blocker):
    """A live Daphne serving chatweb on the test database. Tests using it need `transactional_db`."""
    from tests.live import LiveServer

    server = LiveServer()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def fresh_channel_layer():
    """Each test gets its own channel-layer instance: every test runs its own event loop, and a layer's
    receive state (channels_redis holds one shared reader and its lock per instance) must not outlive its loop."""
    from channels.layers import channel_layers

    channel_layers.backends = {}
    yield
    channel_layers.backends = {}
