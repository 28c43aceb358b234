"""Channel-layer names and events of the chat: the generation sends on them, consumers and titles too."""

from __future__ import annotations

import json
from typing import Any

from channels.layers import BaseChannelLayer, get_channel_layer
from django.core.exceptions import ImproperlyConfigured


def conversation_group(conversation_id: int) -> str:
    return f"conv.{conversation_id}"


def user_group(user_id: int) -> str:
    """Every socket of one user: news about their conversations (renamed, deleted) reaches each tab's sidebar."""
    return f"user.{user_id}"


def reply_group(message_id: int) -> str:
    return f"reply.{message_id}"


def frame_event(payload: dict[str, Any], *, message_id: int, seq: int = 0) -> dict[str, Any]:
    """A channel-layer event carrying one protocol frame, encoded once for every socket that forwards it."""
    return {"type": "chat.frame", "message_id": message_id, "seq": seq, "kind": payload["type"],
            "frame": json.dumps(payload, ensure_ascii=False)}


def channel_layer() -> BaseChannelLayer:
    """The channel layer the chat publishes on. chatweb/settings.py always configures one (in memory, or Redis
    from REDIS_URL): a reply or a title has no one to reach without it."""
    layer = get_channel_layer()
    if layer is None:
        raise ImproperlyConfigured("the chat needs a channel layer: set CHANNEL_LAYERS")
    return layer
