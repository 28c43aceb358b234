"""Runs a reply as its own task: streams from the upstream, coalesces and numbers deltas, checkpoints, finishes.

A generation outlives the socket that started it (a closed tab does not stop a reply). It publishes to the
conversation's group, so every tab on every process sees it, and listens on its own reply group for
`stop` and for snapshot requests from sockets that resume, answering with the exact text so far.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any

from django.conf import settings

from conversations import db
from conversations.chat.admission import ReplyPlan
from conversations.chat.attachments import attachments_unsent_delete, unsent_max_age
from conversations.chat.groups import channel_layer, conversation_group, frame_event, reply_group
from conversations.chat.replies import ReplyOutcome, replies_checkpoint, replies_reap, reply_finish
from conversations.chat.temporary import held_here, temporary_reap, temporary_reply_ended
from conversations.chat.titles import title_after_reply
from conversations.models import Message
from conversations.upstream import client
from conversations.upstream.errors import ErrorCode, user_message
from conversations.upstream.events import (
    ContentDelta,
    Finish,
    ReasoningDelta,
    RefusalDelta,
    StreamError,
    UpstreamEvent,
    Usage,
)
from conversations.upstream.normalize import stream_cut
from conversations.usage.provider_cost import provider_cost_after_reply

log = logging.getLogger(__name__)

COALESCE_SECONDS = 0.04  # deltas are batched at most this long, so a fast model cannot flood the layer
COALESCE_PER_REPLY = 0.0002  # ... plus this per reply the process streams: 100 -> 60 ms, 1,000 -> 240 ms
COALESCE_MAX_SECONDS = 0.25  # (each delta costs the one core the same, whatever its length)
COALESCE_CHARS = 4096  # ... or until this much text is waiting
CHECKPOINT_SECONDS = 1.0  # the process's partial replies reach the database together, at most this often ...
CHECKPOINT_PER_REPLY = 0.004  # ... and less often the more it streams: 250 -> 1 s, 1,000 -> 4 s (each write
CHECKPOINT_MAX_SECONDS = 4.0  # rewrites every streaming reply's whole text so far)
HEARTBEAT_SECONDS = 5.0  # a reply waiting on a slow upstream still shows it is alive (and 3x per stale period)
REAP_EVERY_SECONDS = 15.0
REAP_STALE_SECONDS = 30.0  # default of settings.CHATWEB_REAP_STALE_SECONDS
UNSENT_SWEEP_SECONDS = 3600.0  # how often the reaper also deletes uploads never sent (CHATWEB_ATTACHMENT_UNSENT_HOURS)
# Turns of the event loop this reply's own task steps aside after starting its stream, so that the request is on
# the wire before the rest of the start: one turn for the stream task to hand the request to aiohttp, one for
# aiohttp's body writer (a task of its own before Python 3.12).
REQUEST_FIRST_TURNS = 2

# The upstream pool's size (CHATWEB_UPSTREAM_MAX_CONNECTIONS, docs/deployment.md), set before the first request.
client.configure(max_connections=getattr(settings, "CHATWEB_UPSTREAM_MAX_CONNECTIONS", 1000))

_running: dict[int, ReplyRun] = {}  # message id -> generation owned by this process
_background: set[asyncio.Task] = set()


def _being_cancelled() -> bool:
    """Whether the running task itself is being cancelled (rather than a task it awaits)."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


class ReplyRun:
    """One reply being generated in this process."""

    def __init__(self, plan: ReplyPlan) -> None:
        self.plan = plan
        self.layer = channel_layer()
        self.group = conversation_group(plan.conversation_id)
        self.content: list[str] = []  # published text
        self.reasoning: list[str] = []
        self.pending_content: list[str] = []  # received, not yet published
        self.pending_reasoning: list[str] = []
        self.pending_size = 0
        self.seq = 0
        self.wakeup = asyncio.Event()
        self.stream_task: asyncio.Task | None = None
        self.stopped = False
        self.checkpointed_seq = 0  # seq of the text the database holds (written by the process's checkpointer)
        self.heartbeat_at = time.monotonic()  # the admission wrote the first heartbeat
        self.sending = False  # a delta's group send is in flight
        self.closing = False  # the reply has ended: the publish loop returns after its current send
        self.response_ids: list[str] = []  # the upstream's id of the reply, once its first chunk came

    # --- the task -------------------------------------------------------------------------------------
    async def run(self) -> None:
        started = time.monotonic()
        outcome = ReplyOutcome(content="", reasoning="", status=Message.Status.COMPLETE, finish_reason="", seq=0)
        # The upstream request goes out first: its first token is on its way while the control channel is set up
        # and chat.started crosses the channel layer (with Redis, three round trips). Tokens that arrive before
        # the publisher starts wait in `pending`, so no delta can precede chat.started.
        self.stream_task = asyncio.create_task(self._stream(outcome, started))
        control: str | None = None
        listener = publisher = None
        try:
            for _ in range(REQUEST_FIRST_TURNS):
                await asyncio.sleep(0)
            control = await self.layer.new_channel()
            await self.layer.group_add(reply_group(self.plan.message_id), control)
            listener = asyncio.create_task(self._listen(control))
            await self._send(
                {"type": "chat.started", "request_id": self.plan.request_id,
                 "conversation_id": self.plan.conversation_id,
                 "user_message_id": self.plan.user_message_id, "message_id": self.plan.message_id,
                 "parent_id": self.plan.parent_id, "user_content": self.plan.user_content,
                 "model": self.plan.priced.model_name,
                 "attachments": self.plan.extra.get("attachments", []), "temporary": self.plan.temporary}
            )
            publisher = asyncio.create_task(self._publish_loop())
            try:
                await self.stream_task
            except asyncio.CancelledError:
                if not self.stopped or _being_cancelled():
                    raise  # not a stop: this task itself is being cancelled
            if self.stopped:
                outcome.status, outcome.finish_reason = Message.Status.STOPPED, "stopped"
        except asyncio.CancelledError:
            # The process is shutting down: no time for the database. The text so far is in the last
            # checkpoint, and the reaper marks the reply interrupted once its heartbeat is stale.
            for task in (self.stream_task, publisher, listener):
                if task is not None:
                    task.cancel()
            _running.pop(self.plan.message_id, None)
            raise
        except Exception:  # never lose the reply because of a bug in publishing (or a channel layer gone away)
            log.exception("reply %s failed", self.plan.message_id)
            self.stream_task.cancel()
            outcome.status, outcome.finish_reason = Message.Status.ERROR, "error"
            outcome.error_code, outcome.error_message = "internal_error", "chatweb failed while relaying this reply."
        if publisher is not None:
            await self._stop_publisher(publisher)
        try:
            await self._flush()
            outcome.duration_ms = int((time.monotonic() - started) * 1000)
            await self._finish(outcome)
            if self.plan.temporary:  # its tab may have closed while the reply was written
                try:
                    await db.chat.run(temporary_reply_ended, conversation_id=self.plan.conversation_id)
                except Exception:  # the reaper deletes it later
                    log.exception("reply %s: deleting its temporary chat failed", self.plan.message_id)
        finally:
            if control is not None:
                await self.layer.group_discard(reply_group(self.plan.message_id), control)
                if listener is not None:  # (it listens on `control`)
                    # Never cancel a channels_redis receive(): it shares one reader with every socket of the
                    # process and a cancelled one can swallow another socket's frame. Ask it to return instead.
                    await self.layer.send(control, {"type": "reply.end"})
                    try:
                        await asyncio.wait_for(listener, timeout=5)
                    except TimeoutError:
                        log.warning("reply %s: control listener did not end", self.plan.message_id)
            _running.pop(self.plan.message_id, None)

    async def _stream(self, outcome: ReplyOutcome, started: float) -> None:
        """Read the upstream's events into `pending` until its stream ends. A stop cancels this task while it reads
        or while it steps aside: `aclosing` closes the upstream request at once either way."""
        batches = client.stream_batches(
            self.plan.target, self.plan.path, self.plan.body, response_ids=self.response_ids
        )
        async with contextlib.aclosing(batches):
            async for batch in batches:
                waiting = outcome.ttft_ms is None
                for event in batch:  # the events of one read
                    self._take(event, outcome, started)
                if waiting and outcome.ttft_ms is not None:
                    # Let the publisher send the first token before this task reads on (the client steps aside too,
                    # when more of the answer is already there: FIRST_TOKEN_PAUSE).
                    await asyncio.sleep(0)
        if not outcome.finish_reason:
            outcome.finish_reason = "stop"

    def _take(self, event: UpstreamEvent, outcome: ReplyOutcome, started: float) -> None:
        """One upstream event into the reply: its text (queued to publish), usage, finish reason or failure."""
        if isinstance(event, ContentDelta | RefusalDelta | ReasoningDelta):
            if event.index != 0 or not event.text:
                return
            self._queue(self.pending_reasoning if isinstance(event, ReasoningDelta) else self.pending_content,
                        event.text)
            if outcome.ttft_ms is None:
                outcome.ttft_ms = int((time.monotonic() - started) * 1000)
        elif isinstance(event, Usage):
            outcome.usage = event
        elif isinstance(event, Finish):
            if event.index == 0:
                outcome.finish_reason = event.reason
        elif isinstance(event, StreamError):
            outcome.status, outcome.finish_reason = Message.Status.ERROR, "error"
            outcome.error_code = event.code
            outcome.error_message = _error_text(event)
            outcome.sent = event.sent
            outcome.cut = stream_cut(event, produced=bool(self.content or self.pending_content))
            if event.status and event.status >= 400 and not self.content and not self.pending_content:
                # Refused with an HTTP error before any output: the provider charged nothing.
                outcome.usage = Usage(prompt_tokens=0, completion_tokens=0, total_tokens=0)

    def _queue(self, pending: list[str], text: str) -> None:
        pending.append(text)
        self.pending_size += len(text)
        self.wakeup.set()

    # --- publishing and checkpoints -------------------------------------------------------------------
    async def _publish_loop(self) -> None:
        """Publish what is pending right away, then at most every COALESCE_SECONDS. (Checkpoints and heartbeats
        are the process's checkpointer's: one write a second for every reply, see `_checkpoint_forever`.)"""
        while True:
            await self.wakeup.wait()
            self.wakeup.clear()
            await self._flush()
            if self.closing:
                return
            if self.pending_size < COALESCE_CHARS:
                await asyncio.sleep(coalesce_seconds())

    async def _stop_publisher(self, publisher: asyncio.Task) -> None:
        """Stop the publish loop between two deltas, never inside one's send: a group send cancelled midway
        (channels_redis awaits the network) loses its delta, whose text and seq are already counted, and the
        reply reached its sockets with a hole (seen on PostgreSQL + Redis when a stream ends at once)."""
        if self.sending:
            self.closing = True  # the loop returns right after this send
        else:
            publisher.cancel()  # waiting for tokens or between two deltas: nothing is lost
        try:
            await publisher
        except asyncio.CancelledError:
            if not publisher.cancelled() or _being_cancelled():
                raise  # this task itself is being cancelled

    async def _flush(self) -> None:
        if not self.pending_content and not self.pending_reasoning:
            return
        content, reasoning = "".join(self.pending_content), "".join(self.pending_reasoning)
        self.pending_content.clear()
        self.pending_reasoning.clear()
        self.pending_size = 0
        # Published text and seq change together, with no await between: a snapshot is always exact.
        self.content.append(content)
        self.reasoning.append(reasoning)
        self.seq += 1
        delta: dict[str, Any] = {"type": "chat.delta", "message_id": self.plan.message_id, "seq": self.seq,
                                 "content": content}
        if reasoning:
            delta["reasoning"] = reasoning
        self.sending = True
        try:
            await self._send(delta, seq=self.seq)
        finally:
            self.sending = False

    def checkpoint(self, now: float, heartbeat_every: float) -> tuple[int, str, str, int] | int | None:
        """What the checkpointer should write for this reply now: its text so far (when published text changed
        since the last write), its id for a heartbeat alone (when due), or nothing."""
        if self.seq != self.checkpointed_seq:
            self.checkpointed_seq, self.heartbeat_at = self.seq, now
            return (self.plan.message_id, "".join(self.content), "".join(self.reasoning), self.seq)
        if now - self.heartbeat_at >= heartbeat_every:
            self.heartbeat_at = now
            return self.plan.message_id
        return None

    async def _send(self, payload: dict[str, Any], seq: int = 0) -> None:
        await self.layer.group_send(self.group, frame_event(payload, message_id=self.plan.message_id, seq=seq))

    # --- control: stop and snapshot -------------------------------------------------------------------
    async def _listen(self, channel: str) -> None:
        while True:
            message = await self.layer.receive(channel)
            if message.get("type") == "reply.end":
                return
            if message.get("type") == "reply.stop":
                self.stop()
            elif message.get("type") == "reply.snapshot" and message.get("reply_to"):
                await self.layer.send(message["reply_to"], self.snapshot_event())

    def stop(self) -> None:
        if self.stream_task is not None and not self.stream_task.done():
            self.stopped = True
            self.stream_task.cancel()  # closes the upstream request

    def snapshot_event(self) -> dict[str, Any]:
        payload = {"type": "chat.snapshot", "message_id": self.plan.message_id, "seq": self.seq,
                   "content": "".join(self.content), "reasoning": "".join(self.reasoning), "status": "streaming"}
        return frame_event(payload, message_id=self.plan.message_id, seq=self.seq)

    async def _finish(self, outcome: ReplyOutcome) -> None:
        outcome.content, outcome.reasoning, outcome.seq = "".join(self.content), "".join(self.reasoning), self.seq
        outcome.response_id = self.response_ids[0] if self.response_ids else None
        # Checkpoints run on their own lane, in any order with this finish: each writes only while the reply is
        # still streaming (its WHERE says so), so a checkpoint after the finish leaves the final text alone.
        usage = await db.chat.together(reply_finish, plan=self.plan, outcome=outcome)
        response_id = (outcome.usage.response_id if outcome.usage else None) or outcome.response_id
        provider_cost_after_reply(target=self.plan.target, provider=self.plan.priced.provider_name,
                                  response_id=response_id if outcome.sent else None)
        if outcome.error_code:
            await self._send({"type": "chat.error", "request_id": self.plan.request_id,
                              "message_id": self.plan.message_id, "code": outcome.error_code,
                              "message": outcome.error_message})
        await self._send({"type": "chat.done", "message_id": self.plan.message_id, "seq": self.seq,
                          "finish_reason": outcome.finish_reason, "status": outcome.status, "usage": usage})
        title_after_reply(conversation_id=self.plan.conversation_id, message_id=self.plan.message_id,
                          status=outcome.status, first_message=self.plan.user_message_id is not None)


def _error_text(error: StreamError) -> str:
    text = user_message(error.code)
    if error.code == ErrorCode.UPSTREAM_BAD_REQUEST and error.message:
        text = f"{text} The provider said: {error.message}"
    return text


def reply_start(plan: ReplyPlan) -> ReplyRun:
    """Start the generation task for an admitted reply; it runs to the end whatever happens to the socket."""
    ensure_reaper()
    run = ReplyRun(plan)
    _running[plan.message_id] = run
    _ensure_checkpointer()
    task = asyncio.create_task(run.run(), name=f"reply-{plan.message_id}")
    _background.add(task)
    task.add_done_callback(_background.discard)
    return run


def running_replies() -> list[ReplyRun]:
    return list(_running.values())


async def wait_for_replies(timeout: float = 30) -> None:  # noqa: ASYNC109 (one deadline for them all)
    """Wait until every generation of this process has finished (tests, graceful shutdown)."""
    tasks = [t for t in _background if t.get_name().startswith("reply-")]
    if tasks:
        await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), timeout)


_loop_tasks: dict[str, asyncio.Task] = {}  # the process's periodic tasks (reaper, checkpointer) by name


def _keep_running(name: str, start: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """Start `start()` as the task `name` unless it already runs on this event loop (one of each per loop)."""
    loop = asyncio.get_running_loop()
    task = _loop_tasks.get(name)
    if task is None or task.done() or task.get_loop() is not loop:
        _loop_tasks[name] = loop.create_task(start(), name=name)


def ensure_reaper() -> None:
    """Start this process's periodic reaper (once per event loop): at start-up and every REAP_EVERY_SECONDS."""
    _keep_running("reaper", _reap_forever)


def coalesce_seconds() -> float:
    """How long a reply batches its deltas: 40 ms alone, longer the more replies this process streams, so that
    the frames a second (each one a channel-layer message and a websocket write per tab) stay bounded by the
    core, not by the number of replies. The first token of every reply still goes out at once."""
    return min(COALESCE_MAX_SECONDS, COALESCE_SECONDS + COALESCE_PER_REPLY * len(_running))


def checkpoint_seconds(heartbeat_every: float) -> float:
    """How often the checkpointer writes: every second for up to 250 streaming replies, then less often (at most
    every CHECKPOINT_MAX_SECONDS, and never less often than heartbeats are due)."""
    scaled = CHECKPOINT_PER_REPLY * len(_running)
    return max(CHECKPOINT_SECONDS, min(scaled, CHECKPOINT_MAX_SECONDS, heartbeat_every))


def reap_stale_seconds() -> float:
    """A reply whose heartbeat is older than this is taken for dead (CHATWEB_REAP_STALE_SECONDS, default 30)."""
    return float(getattr(settings, "CHATWEB_REAP_STALE_SECONDS", REAP_STALE_SECONDS))


async def _reap_forever() -> None:
    from datetime import timedelta

    swept_at: float | None = None
    while True:
        stale = reap_stale_seconds()
        try:
            await db.chat.run(replies_reap, stale_after=timedelta(seconds=stale), alive=list(_running))
        except Exception:
            log.exception("reaping stale replies failed")
        try:  # holds are refreshed at least twice within their stale period
            await db.chat.run(temporary_reap, stale_after=timedelta(seconds=2 * stale), alive=held_here())
        except Exception:
            log.exception("reaping temporary chats failed")
        if swept_at is None or time.monotonic() - swept_at >= UNSENT_SWEEP_SECONDS:
            swept_at = time.monotonic()
            await _unsent_sweep()
        await asyncio.sleep(min(REAP_EVERY_SECONDS, stale / 2))


async def _unsent_sweep() -> None:
    """Delete the uploads never sent, once they are older than CHATWEB_ATTACHMENT_UNSENT_HOURS (on the pages' lane:
    the chat's is kept for replies)."""
    age = unsent_max_age()
    if age is None:
        return
    try:
        deleted = await db.pages.run(attachments_unsent_delete, older_than=age)
    except Exception:
        log.exception("deleting unsent uploads failed")
        return
    if deleted:
        log.info("deleted %d uploads never sent", deleted)


def _ensure_checkpointer() -> None:
    _keep_running("checkpointer", _checkpoint_forever)


async def _checkpoint_forever() -> None:
    """While this process generates replies: every `checkpoint_seconds()`, one database call stores the text so far
    of every reply that published more, and a heartbeat for those that are waiting (1,000 replies are one write
    a second, not a thousand). Ends when no reply is left; the next reply starts it again."""
    heartbeat_every = min(HEARTBEAT_SECONDS, reap_stale_seconds() / 3)
    while _running:
        await asyncio.sleep(checkpoint_seconds(heartbeat_every))
        now = time.monotonic()
        partial: list[tuple[int, str, str, int]] = []
        alive: list[int] = []
        for run in list(_running.values()):
            due = run.checkpoint(now, heartbeat_every)
            if isinstance(due, tuple):
                partial.append(due)
            elif due is not None:
                alive.append(due)
        if partial or alive:
            try:
                await db.checkpoints.run(replies_checkpoint, partial=partial, alive=alive)
            except Exception:
                log.exception("checkpointing %d replies failed", len(partial) + len(alive))
