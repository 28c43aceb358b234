"""Fixtures the chat package's tests share."""

from __future__ import annotations

import pytest


@pytest.fixture
def attachment_storage(settings, tmp_path):
    """Each test stores its files in its own folder (the folder, to look into)."""
    storages = dict(settings.STORAGES)
    storages["attachments"] = {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {"location": str(tmp_path / "attachments")},
    }
    settings.STORAGES = storages
    return tmp_path / "attachments"
