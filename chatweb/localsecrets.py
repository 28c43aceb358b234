"""Development secrets kept in an ignored local file, so `make run` needs no configuration."""

from __future__ import annotations

import base64
import hashlib
import secrets
from pathlib import Path


def local_secret(path: Path) -> str:
    """Return the secret stored at `path`, creating it (0600) on first use."""
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    value = secrets.token_urlsafe(50)
    path.touch(mode=0o600)
    path.write_text(value + "\n")
    return value


def derived_fernet_key(secret_key: str) -> str:
    """A Fernet key derived from SECRET_KEY: development only (production sets CHATWEB_ENCRYPTION_KEYS)."""
    digest = hashlib.sha256(b"chatweb-encryption-key:" + secret_key.encode()).digest()
    return base64.urlsafe_b64encode(digest).decode()
