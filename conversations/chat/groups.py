"""Channel-layer names and events of the chat: the generation sends on them, consumers and titles too."""

from __future__ import annotations

import json
from typing import Any


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
