"""Helpers for websocket tests: an authenticated communicator, a provider per upstream scenario, frame readers."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
from django.contrib.sessions.backends.db import SessionStore

from chatweb.asgi import application
from conversations.models import Model, Provider

ORIGIN = (b"origin", b"http://127.0.0.1:8000")


def _session_cookie(user: Any) -> str:
    session = SessionStore()
    session[SESSION_KEY] = str(user.pk)
    session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
    session[HASH_SESSION_KEY] = user.get_session_auth_hash()
    session.save()
    return session.session_key


async def connect(user: Any | None, *, origin: tuple[bytes, bytes] = ORIGIN) -> WebsocketCommunicator:
    headers = [origin]
    if user is not None:
        key = await sync_to_async(_session_cookie)(user)
        headers.append((b"cookie", f"{settings.SESSION_COOKIE_NAME}={key}".encode()))
    communicator = WebsocketCommunicator(application, "/ws/chat/", headers=headers)
    connected, _ = await communicator.connect()
    assert connected
    return communicator


def make_model(
    base_url: str, *, name: str = "dev", upstream_id: str = "dev-chat", **provider_fields: Any
) -> Model:
    provider = Provider.objects.create(name=name, base_url=base_url, **provider_fields)
    return Model.objects.create(
        provider=provider,
        upstream_id=upstream_id,
        input_price=Decimal("0.5"),
        output_price=Decimal("1.5"),
        max_output_tokens=1024,
    )


async def send(communicator: WebsocketCommunicator, frame: dict | str) -> None:
    await communicator.send_to(text_data=frame if isinstance(frame, str) else json.dumps(frame))


async def receive(communicator: WebsocketCommunicator, timeout: float = 10) -> dict:
    return json.loads(await communicator.receive_from(timeout=timeout))


async def until(
    communicator: WebsocketCommunicator, kind: str, timeout: float = 20, message_id: int | None = None
) -> tuple[dict, list[dict]]:
    """Read frames until one of `kind` (for `message_id`, if given); returns it and every frame before it."""
    seen: list[dict] = []
    while True:
        frame = await receive(communicator, timeout)
        if frame["type"] == kind and (message_id is None or frame.get("message_id") == message_id):
            return frame, seen
        seen.append(frame)


def chat_send(model: str, content: str = "Hello there", **extra: Any) -> dict:
    return {
        "type": "chat.send",
        "request_id": "r1",
        "conversation_id": None,
        "model": model,
        "content": content,
        **extra,
    }
