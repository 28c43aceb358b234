"""Fixtures for the development upstream over real HTTP: one server per test session, a nonce per test."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator

import pytest

from conversations.devupstream.server import ThreadedUpstream
from conversations.upstream import client as upstream_client

__all__ = ["dev_upstream", "fast_backoff", "nonce", "upstream_http"]


@pytest.fixture(scope="session")
def dev_upstream() -> Iterator[ThreadedUpstream]:
    """The dev upstream on a free port; per-scenario switches go in the URL: `dev_upstream.v1(fail=429)`."""
    with ThreadedUpstream() as upstream:
        yield upstream


@pytest.fixture
def nonce() -> str:
    """A fresh `key=` for the upstream's per-key state (times=N) and counters (/_stats)."""
    return uuid.uuid4().hex[:12]


@pytest.fixture
async def upstream_http() -> AsyncIterator[None]:
    """Closes this test's pooled upstream client with its event loop (no leaked sockets)."""
    yield
    await upstream_client.close_client()


@pytest.fixture
def fast_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    """Retries without Retry-After back off in milliseconds instead of seconds."""
    monkeypatch.setattr(upstream_client, "BACKOFF_BASE", 0.01)
    monkeypatch.setattr(upstream_client, "BACKOFF_CAP", 0.05)
