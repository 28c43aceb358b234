"""Settings from the environment: SQLite by default, PostgreSQL and Redis from URLs, production refuses defaults."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def settings_in_subprocess(env: dict, expression: str) -> subprocess.CompletedProcess:
    """Import chatweb.settings afresh with exactly this environment and print an expression of it."""
    clean = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DATABASE_URL", "REDIS_URL", "DEBUG", "SECRET_KEY", "CHATWEB_"))
    }
    clean.update(env)
    code = f"import chatweb.settings as s; print({expression})"
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=clean, capture_output=True, text=True, timeout=60
    )


def test_default_is_sqlite_wal_and_in_memory_layer():
    result = settings_in_subprocess(
        {},
        "s.DATABASES['default']['ENGINE'], s.DATABASES['default']['OPTIONS'], s.CHANNEL_LAYERS['default']['BACKEND']",
    )
    assert result.returncode == 0, result.stderr
    assert "sqlite3" in result.stdout and "journal_mode=WAL" in result.stdout and "IMMEDIATE" in result.stdout
    assert "InMemoryChannelLayer" in result.stdout


def test_database_url_selects_postgresql_with_pool_and_no_persistent_connections():
    result = settings_in_subprocess(
        {"DATABASE_URL": "postgres://postgres@127.0.0.1:5432/test"},
        "s.DATABASES['default']['ENGINE'], s.DATABASES['default']['CONN_MAX_AGE'], "
        "'pool' in s.DATABASES['default']['OPTIONS']",
    )
    assert result.stdout.strip() == "django.db.backends.postgresql 0 True", result.stderr


def test_redis_url_selects_channels_redis():
    result = settings_in_subprocess(
        {"REDIS_URL": "redis://127.0.0.1:6379/0"},
        "s.CHANNEL_LAYERS['default']['BACKEND'], s.CHANNEL_LAYERS['default']['CONFIG']['hosts']",
    )
    assert (
        "channels_redis.core.RedisChannelLayer" in result.stdout
        and "redis://127.0.0.1:6379/0" in result.stdout
        and "socket_timeout" in result.stdout
        and "'max_connections': 2000" in result.stdout
    )


@pytest.mark.parametrize("missing", ["SECRET_KEY", "CHATWEB_ENCRYPTION_KEYS"])
def test_production_requires_secrets(missing):
    env = {"DEBUG": "false", "SECRET_KEY": "x" * 50, "CHATWEB_ENCRYPTION_KEYS": "a" * 43 + "="}
    del env[missing]
    result = settings_in_subprocess(env, "s.DEBUG")
    assert result.returncode != 0 and f"{missing} must be set" in result.stderr


def test_signup_switch_and_encryption_keys_list():
    result = settings_in_subprocess(
        {"CHATWEB_SIGNUP": "closed", "CHATWEB_ENCRYPTION_KEYS": "k1,k2"},
        "s.CHATWEB_SIGNUP, s.CHATWEB_ENCRYPTION_KEYS",
    )
    assert result.stdout.strip() == "closed ['k1', 'k2']", result.stderr
