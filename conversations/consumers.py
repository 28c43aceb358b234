"""The chat websocket (/ws/chat/): decodes frames into commands, checks access, calls services, forwards events."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer

from conversations.chat import ChatError, reply_start_regenerate, reply_start_send
from conversations.commands import ChatRegenerate, ChatSend, ChatStop, ChatSubscribe, CommandError, parse_command
from conversations.generation import conversation_group, ensure_reaper, reply_group, reply_start
from conversations.models import Conversation, Message

log = logging.getLogger(__name__)

SNAPSHOT_WAIT_SECONDS = 2.0  # how long a resuming socket waits for the owning process before using the checkpoint


class ChatConsumer(AsyncWebsocketConsumer):
    async def connect(self) -> None:
        self.user = self.scope.get("user")
        if self.user is None or not self.user.is_authenticated:
            await self.close(code=4401)
            return
        self.groups_joined: set[str] = set()
        self.last_seq: dict[int, int] = {}  # message id -> last seq forwarded
        self.awaiting: dict[int, list[dict]] = {}  # message id -> frames held until its snapshot
        await self.accept()
        ensure_reaper()

    async def disconnect(self, code: int) -> None:
        for group in getattr(self, "groups_joined", ()):
            await self.channel_layer.group_discard(group, self.channel_name)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        command = None
        try:
            command = parse_command(text_data)
            await self.dispatch_command(command)
        except CommandError as exc:
            await self.send_error(exc.code, exc.message, request_id=exc.request_id, message_id=exc.message_id)
        except ChatError as exc:
            await self.send_error(exc.code, exc.message, request_id=getattr(command, "request_id", None))

    async def dispatch_command(self, command: Any) -> None:
        if isinstance(command, ChatSend):
            await self.start(reply_start_send, command)
        elif isinstance(command, ChatRegenerate):
            await self.start(reply_start_regenerate, command)
        elif isinstance(command, ChatStop):
            await self.stop(command)
        elif isinstance(command, ChatSubscribe):
            await self.subscribe(command.conversation_id)

    # --- commands -----------------------------------------------------------------------------------------
    async def start(self, service: Any, command: ChatSend | ChatRegenerate) -> None:
        plan = await database_sync_to_async(service)(user=self.user, command=command)
        await self.join(conversation_group(plan.conversation_id))
        self.last_seq[plan.message_id] = 0
        reply_start(plan)

    async def stop(self, command: ChatStop) -> None:
        owned = await database_sync_to_async(
            Message.objects.for_user(self.user).filter(pk=command.message_id, role=Message.Role.ASSISTANT).exists
        )()
        if not owned:
            raise CommandError("not_found", "no such reply", message_id=command.message_id)
        # Whichever process owns the generation is in its reply group; it stops within one event.
        await self.channel_layer.group_send(reply_group(command.message_id), {"type": "reply.stop"})

    async def subscribe(self, conversation_id: int) -> None:
        streaming = await database_sync_to_async(_streaming_replies)(self.user, conversation_id)
        if streaming is None:
            raise CommandError("not_found", "no such conversation")
        await self.join(conversation_group(conversation_id))
        for message_id in streaming:
            self.awaiting.setdefault(message_id, [])
            await self.channel_layer.group_send(
                reply_group(message_id), {"type": "reply.snapshot", "reply_to": self.channel_name}
            )
        if streaming:
            asyncio.get_running_loop().call_later(
                SNAPSHOT_WAIT_SECONDS, lambda: asyncio.ensure_future(self.snapshot_fallback(streaming))
            )

    async def snapshot_fallback(self, message_ids: list[int]) -> None:
        """No process answered for these replies (its owner died): resume from the stored checkpoint."""
        for message_id in message_ids:
            if message_id not in self.awaiting:
                continue
            message = await database_sync_to_async(
                Message.objects.for_user(self.user).filter(pk=message_id).values("content", "reasoning", "seq", "status").first
            )()
            if message is None:
                continue
            await self.deliver_snapshot(
                message_id, message["seq"],
                json.dumps({"type": "chat.snapshot", "message_id": message_id, **message}, ensure_ascii=False),
            )

    # --- events from the channel layer ------------------------------------------------------------------
    async def chat_frame(self, event: dict[str, Any]) -> None:
        message_id, seq, kind = event["message_id"], event["seq"], event["kind"]
        if kind == "chat.snapshot":
            await self.deliver_snapshot(message_id, seq, event["frame"])
            return
        if message_id in self.awaiting:
            self.awaiting[message_id].append(event)
            return
        if kind == "chat.delta":
            if seq <= self.last_seq.get(message_id, 0):
                return  # already part of a snapshot this socket sent
            self.last_seq[message_id] = seq
        await self.send(text_data=event["frame"])

    async def deliver_snapshot(self, message_id: int, seq: int, frame: str) -> None:
        held = self.awaiting.pop(message_id, None)
        if held is None:
            return  # answered already (owner and fallback may both answer)
        await self.send(text_data=frame)
        self.last_seq[message_id] = seq
        for event in held:
            await self.chat_frame(event)

    # --- helpers ---------------------------------------------------------------------------------------------
    async def join(self, group: str) -> None:
        if group not in self.groups_joined:
            await self.channel_layer.group_add(group, self.channel_name)
            self.groups_joined.add(group)

    async def send_error(self, code: str, message: str, *, request_id: str | None = None,
                         message_id: int | None = None) -> None:
        frame: dict[str, Any] = {"type": "chat.error", "code": code, "message": message, "request_id": request_id}
        if message_id is not None:
            frame["message_id"] = message_id
        await self.send(text_data=json.dumps(frame))


def _streaming_replies(user: Any, conversation_id: int) -> list[int] | None:
    """Ids of the conversation's replies still streaming, or None if it is not this user's conversation."""
    if not Conversation.objects.for_user(user).filter(pk=conversation_id).exists():
        return None
    return list(
        Message.objects.filter(conversation_id=conversation_id, status=Message.Status.STREAMING).values_list("pk", flat=True)
    )
