"""The chat's channel-layer names and events: a conversation's group (every tab on every process), a reply's
control group, and one protocol frame encoded once for every socket that forwards it."""

from __future__ import annotations

import json
from typing import Any


def conversation_group(conversation_id: int) -> str:
    return f"conv.{conversation_id}"


def reply_group(message_id: int) -> str:
    return f"reply.{message_id}"


def frame_event(payload: dict[str, Any], *, message_id: int, seq: int = 0) -> dict[str, Any]:
    """A channel-layer event carrying one protocol frame, encoded once for every socket that forwards it."""
    return {"type": "chat.frame", "message_id": message_id, "seq": seq, "kind": payload["type"],
            "frame": json.dumps(payload, ensure_ascii=False)}
