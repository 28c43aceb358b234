"""The websocket protocol's client commands (docs/protocol.md), decoded from JSON frames into typed values."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

MAX_CONTENT_CHARS = 100_000
MAX_SYSTEM_CHARS = 20_000
# Room for the longest content and system prompt at 4 bytes a character, plus the rest.
# Daphne refuses bigger messages itself (close 1009) at --websocket-max-message-size, 1 MiB by default.
MAX_FRAME_BYTES = 512 * 1024
MAX_ATTACHMENT_IDS = 50  # what a frame may name; the per-message limit (a setting) is checked at admission


class CommandError(Exception):
    """A frame that cannot be obeyed; answered with `chat.error` and the socket stays open."""

    def __init__(
        self, code: str, message: str, *, request_id: str | None = None, message_id: int | None = None
    ):
        super().__init__(message)
        self.code = code
        self.message = message
        self.request_id = request_id
        self.message_id = message_id


@dataclass(frozen=True)
class ChatSend:
    request_id: str | None
    conversation_id: int | None
    model: str
    content: str
    system: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    parent_id: int | None = None  # extension: branch from this message (edit and resend)
    attachments: tuple[str, ...] = ()  # ids of the user's uploads (POST /attachments/)
    temporary: bool = False  # extension: a new conversation that is not kept (conversations/chat/temporary.py)


@dataclass(frozen=True)
class ChatStop:
    message_id: int


@dataclass(frozen=True)
class ChatRegenerate:
    message_id: int
    request_id: str | None = None


@dataclass(frozen=True)
class ChatEdit:
    """Extension: resend an edited user message; it becomes a sibling of the original (a new branch)."""

    message_id: int
    content: str
    request_id: str | None = None


@dataclass(frozen=True)
class ChatSubscribe:
    conversation_id: int


@dataclass(frozen=True)
class ChatEstimate:
    """What a message would cost before it is sent: the prompt as it would go upstream, the reply at its cap."""

    request_id: str | None
    conversation_id: int | None
    model: str
    content: str
    system: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    attachments: tuple[str, ...] = ()  # the draft's uploads: they count as they would go upstream


Command = ChatSend | ChatStop | ChatRegenerate | ChatEdit | ChatSubscribe | ChatEstimate


def _optional_id(frame: dict, name: str, request_id: str | None) -> int | None:
    return None if frame.get(name) is None else _id(frame, name, request_id)


def _id(frame: dict, name: str, request_id: str | None) -> int:
    value = frame.get(name)
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise CommandError("bad_request", f"`{name}` must be a positive integer id", request_id=request_id)
    return value


def _request_id(frame: dict) -> str | None:
    value = frame.get("request_id")
    if value is None:
        return None
    if not isinstance(value, (str, int)) or isinstance(value, bool) or len(str(value)) > 100:
        raise CommandError("bad_request", "`request_id` must be a short string")
    return str(value)


def parse_command(text: str | None) -> Command:
    """Decode one text frame; raises CommandError(bad_request) with a clear message for anything malformed."""
    if text is None:
        raise CommandError("bad_request", "frames must be JSON text, not binary")
    if len(text.encode()) > MAX_FRAME_BYTES:
        raise CommandError("frame_too_large", f"a frame may hold at most {MAX_FRAME_BYTES // 1024} KiB")
    try:
        frame = json.loads(text)
    except (ValueError, RecursionError):
        raise CommandError("bad_request", "the frame is not valid JSON") from None
    if not isinstance(frame, dict):
        raise CommandError("bad_request", "a frame must be a JSON object with a `type`")
    request_id = _request_id(frame)
    kind = frame.get("type")
    if kind == "chat.send":
        return _parse_send(frame, request_id)
    if kind == "chat.stop":
        return ChatStop(message_id=_id(frame, "message_id", request_id))
    if kind == "chat.regenerate":
        return ChatRegenerate(message_id=_id(frame, "message_id", request_id), request_id=request_id)
    if kind == "chat.edit":
        return ChatEdit(
            message_id=_id(frame, "message_id", request_id),
            content=_content(frame, request_id),
            request_id=request_id,
        )
    if kind == "chat.subscribe":
        return ChatSubscribe(conversation_id=_id(frame, "conversation_id", request_id))
    if kind == "chat.estimate":
        return _parse_estimate(frame, request_id)
    raise CommandError("bad_request", f"unknown frame type {str(kind)[:40]!r}", request_id=request_id)


def _content(frame: dict, request_id: str | None) -> str:
    content = frame.get("content")
    if not isinstance(content, str) or not content.strip():
        raise CommandError("bad_request", "`content` must be a non-empty string", request_id=request_id)
    if len(content) > MAX_CONTENT_CHARS:
        raise CommandError(
            "message_too_long",
            f"a message may hold at most {MAX_CONTENT_CHARS:,} characters",
            request_id=request_id,
        )
    return content


def _attachments(frame: dict, request_id: str | None) -> tuple[str, ...]:
    ids = frame.get("attachments") or []
    if (
        not isinstance(ids, list) or len(ids) > MAX_ATTACHMENT_IDS
        or not all(isinstance(i, str) and 0 < len(i) <= 64 for i in ids)
    ):
        raise CommandError("bad_request", "`attachments` must be a list of attachment ids", request_id=request_id)
    return tuple(ids)


def _parse_send(frame: dict, request_id: str | None) -> ChatSend:
    attachments = _attachments(frame, request_id)
    # A message of attachments alone needs no text.
    content = "" if attachments and frame.get("content") in ("", None) else _content(frame, request_id)
    model = frame.get("model")
    if not isinstance(model, str) or not model:
        raise CommandError("bad_request", "`model` must name a model", request_id=request_id)
    system = frame.get("system")
    if system is not None and (not isinstance(system, str) or len(system) > MAX_SYSTEM_CHARS):
        raise CommandError(
            "bad_request", "`system` must be a string of reasonable length", request_id=request_id
        )
    params = frame.get("params") or {}
    if not isinstance(params, dict):
        raise CommandError("bad_request", "`params` must be an object", request_id=request_id)
    temporary = frame.get("temporary", False)
    if not isinstance(temporary, bool):
        raise CommandError("bad_request", "`temporary` must be true or false", request_id=request_id)
    return ChatSend(
        request_id=request_id,
        conversation_id=_optional_id(frame, "conversation_id", request_id),
        model=model,
        content=content,
        system=system,
        params=params,
        parent_id=_optional_id(frame, "parent_id", request_id),
        attachments=attachments,
        temporary=temporary,
    )


def _parse_estimate(frame: dict, request_id: str | None) -> ChatEstimate:
    content = frame.get("content", "")
    if not isinstance(content, str) or len(content) > MAX_CONTENT_CHARS:
        raise CommandError("bad_request", "`content` must be a string of reasonable length", request_id=request_id)
    # The rest is checked as for chat.send (an empty draft is fine: it estimates the history alone).
    send = _parse_send({**frame, "content": content or "-"}, request_id)
    return ChatEstimate(
        request_id=request_id,
        conversation_id=send.conversation_id,
        model=send.model,
        content=content,
        system=send.system,
        params=send.params,
        attachments=send.attachments,
    )
