"""The chat websocket (/ws/chat/): decodes frames into commands, runs their admission (check, then do:
conversations/chat/admission.py), maps domain errors to `chat.error` frames, forwards events."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Any, cast

from channels.consumer import get_handler_name
from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings

from conversations import db
from conversations.chat.admission import (
    admit,
    check_reply_edit,
    check_reply_regenerate,
    check_reply_send,
    do_reply_edit,
    do_reply_regenerate,
    do_reply_send,
    reply_estimate,
)
from conversations.chat.commands import (
    ChatEdit,
    ChatEstimate,
    ChatRegenerate,
    ChatSend,
    ChatStop,
    ChatSubscribe,
    CommandError,
    parse_command,
)
from conversations.chat.generation import ensure_reaper, reply_start
from conversations.chat.groups import conversation_group, reply_group, user_group
from conversations.chat.temporary import temporary_hold, temporary_release
from conversations.errors import AdmissionError
from conversations.models import Conversation, Message, User

if TYPE_CHECKING:
    from asgiref.typing import WebSocketDisconnectEvent

log = logging.getLogger(__name__)

IDLE_CLOSE_CODE = 4408  # no frame from the client and nothing streamed to it for CHATWEB_WS_IDLE_SECONDS
SNAPSHOT_WAIT_SECONDS = 2.0  # how long a resuming socket waits for the owning process before using the checkpoint

# Each command that starts a reply, and its admission: (check, do).
ADMISSIONS: dict[type, tuple[Callable[..., Any], Callable[..., Any]]] = {
    ChatSend: (check_reply_send, do_reply_send),
    ChatRegenerate: (check_reply_regenerate, do_reply_regenerate),
    ChatEdit: (check_reply_edit, do_reply_edit),
}


class ChatConsumer(AsyncWebsocketConsumer):
    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=4401)
            return
        # channels' UserLazyObject, which stands for the signed-in User it wraps (chatweb/wsauth.py fills it)
        self.user = cast(User, user)
        self.groups_joined: set[str] = set()
        self.tasks: set[asyncio.Task] = set()  # the socket's own background tasks, referenced until done
        self.last_seq: dict[int, int] = {}  # message id -> last seq forwarded
        self.awaiting: dict[int, list[dict]] = {}  # message id -> frames held until its snapshot
        self.temporary_held: set[int] = set()  # temporary conversations this socket keeps alive
        await self.accept()
        await self.join(user_group(self.user.pk))
        ensure_reaper()
        self.following: set[int] = set()  # replies seen streaming to this socket (the idle check asks the DB)
        self.idle = IdleTimer(settings.CHATWEB_WS_IDLE_SECONDS, self.close_idle, busy=self.is_busy)

    async def dispatch(self, message: dict[str, Any]) -> None:
        """channels' dispatch, without the thread hop it makes before every message to close stale database
        connections (one hop per delta per socket, the largest cost of relaying at 1,000 streams).
        This consumer touches the database only through conversations/db.py's lanes, which look after their
        connections themselves."""
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)

    async def websocket_disconnect(self, message: WebSocketDisconnectEvent) -> None:
        """channels' own, without its thread hop to close stale database connections (see `dispatch`): one hop per
        socket closed, which a class's burst of sockets ending together pays a hundred times. (This consumer lists
        no `groups` of channels' kind: it joins its groups itself, and `disconnect` leaves them.)"""
        await self.disconnect(message["code"])
        raise StopConsumer()

    async def disconnect(self, code: int) -> None:
        if hasattr(self, "idle"):
            self.idle.cancel()
        for group in getattr(self, "groups_joined", ()):
            await self.channel_layer.group_discard(group, self.channel_name)
        if getattr(self, "temporary_held", None):
            held, self.temporary_held = self.temporary_held, set()
            grace = settings.CHATWEB_TEMPORARY_GRACE_SECONDS
            if grace > 0:  # the same tab reconnecting within it keeps its chat
                _keep(_release_later(self.channel_layer, self.channel_name, held, grace))
            else:
                await _release(self.channel_layer, self.channel_name, held)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        self.idle.begin()  # a socket is not idle while its frame is being handled
        command = None
        try:
            command = parse_command(text_data)
            await self.dispatch_command(command)
        except CommandError as exc:
            await self.send_error(exc.code, exc.message, request_id=exc.request_id, message_id=exc.message_id)
        except AdmissionError as exc:  # the domain's codes are the protocol's (docs/protocol.md)
            await self.send_error(exc.code, exc.message, request_id=getattr(command, "request_id", None))
        self.idle.end()

    async def dispatch_command(self, command: Any) -> None:
        if isinstance(command, ChatSend | ChatRegenerate | ChatEdit):
            await self.start(command)
        elif isinstance(command, ChatStop):
            await self.stop(command)
        elif isinstance(command, ChatSubscribe):
            await self.subscribe(command.conversation_id)
        elif isinstance(command, ChatEstimate):
            answer = await db.chat.run(reply_estimate, user=self.user, command=command)
            await self.send(text_data=json.dumps(answer))

    # --- commands -----------------------------------------------------------------------------------------
    async def start(self, command: ChatSend | ChatRegenerate | ChatEdit) -> None:
        check, do = ADMISSIONS[type(command)]
        # Alone, never in a shared transaction: a plan can start its upstream request only once its transaction has
        # committed, and in a batch every admission would wait for the whole batch's (its first token with them).
        plan = await db.chat.run(admit, check, do, user=self.user, command=command)
        if plan.temporary:
            await self.hold(plan.conversation_id)
        await self.join(conversation_group(plan.conversation_id))
        self.last_seq[plan.message_id] = 0
        reply_start(plan)

    async def stop(self, command: ChatStop) -> None:
        owned = await db.chat.run(
            Message.objects.for_user(self.user).filter(pk=command.message_id, role=Message.Role.ASSISTANT).exists
        )
        if not owned:
            raise CommandError("not_found", "no such reply", message_id=command.message_id)
        # Whichever process owns the generation is in its reply group; it stops within one event.
        await self.channel_layer.group_send(reply_group(command.message_id), {"type": "reply.stop"})

    async def subscribe(self, conversation_id: int) -> None:
        found = await db.chat.run(_streaming_replies, self.user, conversation_id)
        if found is None:
            raise CommandError("not_found", "no such conversation")
        streaming, temporary = found
        if temporary:
            await self.hold(conversation_id)
        await self.join(conversation_group(conversation_id))
        for message_id in streaming:
            self.awaiting.setdefault(message_id, [])
            await self.channel_layer.group_send(
                reply_group(message_id), {"type": "reply.snapshot", "reply_to": self.channel_name}
            )
        if streaming:
            asyncio.get_running_loop().call_later(
                SNAPSHOT_WAIT_SECONDS, lambda: self.keep_task(self.snapshot_fallback(streaming))
            )

    async def snapshot_fallback(self, message_ids: list[int]) -> None:
        """No process answered for these replies (its owner died): resume from the stored checkpoint."""
        for message_id in message_ids:
            if message_id not in self.awaiting:
                continue
            message = await db.chat.run(
                Message.objects.for_user(self.user).filter(pk=message_id)
                .values("content", "reasoning", "seq", "status").first
            )
            if message is None:
                continue
            await self.deliver_snapshot(
                message_id, message["seq"],
                json.dumps({"type": "chat.snapshot", "message_id": message_id, **message}, ensure_ascii=False),
            )

    # --- events from the channel layer ------------------------------------------------------------------
    async def chat_frame(self, event: dict[str, Any]) -> None:
        message_id, seq, kind = event["message_id"], event["seq"], event["kind"]
        self.idle.touch()  # a reply streaming to this socket keeps it open
        if kind == "chat.done":
            self.following.discard(message_id)
        elif kind in ("chat.started", "chat.delta"):
            self.following.add(message_id)
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
    def keep_task(self, coroutine: Coroutine[Any, Any, None]) -> None:
        """Run `coroutine` as a task held by this socket until it ends (the loop keeps only weak references)."""
        task = asyncio.get_running_loop().create_task(coroutine)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def hold(self, conversation_id: int) -> None:
        """Keep a temporary conversation while this socket is open (released in `disconnect`)."""
        if conversation_id not in self.temporary_held:
            await db.chat.run(temporary_hold, conversation_id=conversation_id, channel_name=self.channel_name)
            self.temporary_held.add(conversation_id)

    async def join(self, group: str) -> None:
        if group not in self.groups_joined:
            await self.channel_layer.group_add(group, self.channel_name)
            self.groups_joined.add(group)

    async def close_idle(self) -> None:
        await self.close(code=IDLE_CLOSE_CODE, reason="idle")

    async def is_busy(self) -> bool:
        """Whether the idle timer must leave this socket open: it keeps a temporary chat alive (closing it would
        delete the chat while its tab is open), or it follows a reply."""
        return bool(self.temporary_held) or await self.is_following_a_reply()

    async def is_following_a_reply(self) -> bool:
        """Whether a reply this socket follows is still streaming, or has just ended and its `chat.done` may still be
        on its way (one query, and only when the socket looks idle)."""
        if not self.following:
            return False
        self.following = await db.chat.run(_still_streaming, self.following)
        return True

    async def send_error(self, code: str, message: str, *, request_id: str | None = None,
                         message_id: int | None = None) -> None:
        frame: dict[str, Any] = {"type": "chat.error", "code": code, "message": message, "request_id": request_id}
        if message_id is not None:
            frame["message_id"] = message_id
        await self.send(text_data=json.dumps(frame))


_releasing: set[asyncio.Task] = set()  # temporary chats waiting out their grace after their socket closed


def _keep(coroutine: Coroutine[Any, Any, None]) -> None:
    task = asyncio.get_running_loop().create_task(coroutine)
    _releasing.add(task)
    task.add_done_callback(_releasing.discard)


async def _release(layer: Any, channel_name: str, held: set[int]) -> None:
    """Let go of a closed socket's temporary chats: each one no other socket shows is deleted, and a reply still
    being written in it is stopped (nobody can see it; the chat goes when it ends)."""
    try:
        released = await db.chat.run(temporary_release, channel_name=channel_name, conversation_ids=held)
    except Exception:  # the reaper deletes them later
        log.exception("releasing the temporary chats of %s failed", channel_name)
        return
    for message_id in released.streaming:
        await layer.group_send(reply_group(message_id), {"type": "reply.stop"})


async def _release_later(layer: Any, channel_name: str, held: set[int], grace: float) -> None:
    await asyncio.sleep(grace)
    await _release(layer, channel_name, held)


async def wait_for_releases(timeout: float = 30) -> None:  # noqa: ASYNC109 (one deadline for them all)
    """Wait until the temporary chats of closed sockets have been let go of (tests, graceful shutdown)."""
    if _releasing:
        await asyncio.wait_for(asyncio.gather(*_releasing, return_exceptions=True), timeout)


def _still_streaming(message_ids: set[int]) -> set[int]:
    return set(
        Message.objects.filter(pk__in=message_ids, status=Message.Status.STREAMING).values_list("pk", flat=True)
    )


def _streaming_replies(user: Any, conversation_id: int) -> tuple[list[int], bool] | None:
    """Ids of the conversation's replies still streaming and whether it is a temporary chat, or None if it is not
    this user's conversation."""
    temporary = Conversation.objects.for_user(user).filter(pk=conversation_id).values_list("temporary", flat=True)
    found = list(temporary)
    if not found:
        return None
    streaming = list(
        Message.objects.filter(conversation_id=conversation_id, status=Message.Status.STREAMING)
        .values_list("pk", flat=True)
    )
    return streaming, found[0]


class IdleTimer:
    """Calls `on_idle` once nothing has touched it for `seconds` and `busy()` says no (seconds <= 0: never)."""

    def __init__(
        self, seconds: float, on_idle: Callable[[], Awaitable[None]], *, busy: Callable[[], Awaitable[bool]]
    ) -> None:
        self.seconds = float(seconds)
        self.on_idle = on_idle
        self.busy = busy
        self.deadline = 0.0
        self.handling = 0  # frames being handled
        self.touch()
        self.task = asyncio.create_task(self._watch()) if self.seconds > 0 else None

    def touch(self) -> None:
        self.deadline = asyncio.get_running_loop().time() + self.seconds

    def begin(self) -> None:
        self.handling += 1
        self.touch()

    def end(self) -> None:
        self.handling -= 1
        self.touch()

    def cancel(self) -> None:
        if self.task is not None:
            self.task.cancel()

    async def _watch(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            left = self.deadline - loop.time()
            if left > 0:
                await asyncio.sleep(left)
            elif self.handling or await self.busy():
                self.touch()
            else:
                break
        await self.on_idle()
