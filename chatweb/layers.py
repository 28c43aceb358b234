"""The in-process channel layer (one Daphne, no REDIS_URL): channels' InMemoryChannelLayer without its
per-message scans.

channels' layer walks every channel and every group membership to expire old messages on *each* send, receive
and group send, starts a task per recipient of a group send, and deep-copies each message per recipient. With a
reply's deltas crossing it twice (group send, then the socket's receive), that is quadratic: at 250 streams the
scans alone took more than the server's one core. Here expiry runs at most once a second (messages live 30 s,
so nothing is kept noticeably longer), a group send puts the message straight on each queue, and a message of
plain values (every chat frame) is copied shallowly. Behaviour is otherwise the same (capacity per channel,
ChannelFull on a full channel, dropped silently by a group send, group expiry), except that an expired message
no longer removes its channel from every group (see `_clean_expired`).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from copy import deepcopy
from typing import Any

from channels.exceptions import ChannelFull
from channels.layers import InMemoryChannelLayer as ChannelsInMemoryChannelLayer

CLEAN_EVERY_SECONDS = 1.0
_PLAIN = (str, int, float, bool, bytes, type(None))


def _copy(message: dict[str, Any]) -> dict[str, Any]:
    if all(type(value) in _PLAIN for value in message.values()):
        return message.copy()
    return deepcopy(message)


class InMemoryChannelLayer(ChannelsInMemoryChannelLayer):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._cleaned_at = 0.0

    def _clean_expired(self) -> None:
        """Drop expired messages, at most once a second, of channels in no group. Unlike channels' layer, an
        expired message never removes its channel from every group, and a channel in a group keeps its messages:
        in one process every such channel is a live consumer's (a closed socket leaves its groups), and one that
        fell behind under load gets its frames late rather than losing one, or every later one, silently. Its
        capacity still bounds what waits for it."""
        now = time.monotonic()
        if now - self._cleaned_at < CLEAN_EVERY_SECONDS:
            return
        self._cleaned_at = now
        wall = time.time()
        members = set().union(*self.groups.values())
        for channel, queue in list(self.channels.items()):
            if channel in members:
                continue  # a live consumer's: late under load, never lost (capacity still bounds it)
            while not queue.empty() and queue._queue[0][0] < wall:  # type: ignore[attr-defined]
                queue.get_nowait()
                if queue.empty():  # no receiver waits on a queue that held messages: a new one is made on demand
                    self.channels.pop(channel, None)
        oldest = int(wall) - self.group_expiry
        for joined_at in self.groups.values():
            for name, joined in list(joined_at.items()):
                if joined and joined < oldest:
                    joined_at.pop(name, None)

    def _put(self, channel: str, message: dict[str, Any]) -> None:
        queue = self.channels.get(channel)
        if queue is None:
            queue = self.channels[channel] = asyncio.Queue(maxsize=self.get_capacity(channel))
        try:
            queue.put_nowait((time.time() + self.expiry, _copy(message)))
        except asyncio.QueueFull:
            raise ChannelFull(channel) from None

    async def send(self, channel: str, message: dict[str, Any]) -> None:
        assert isinstance(message, dict), "message is not a dict"
        self.require_valid_channel_name(channel)
        assert "__asgi_channel__" not in message
        self._put(channel, message)

    async def group_send(self, group: str, message: dict[str, Any]) -> None:
        assert isinstance(message, dict), "Message is not a dict"
        self.require_valid_group_name(group)
        self._clean_expired()
        for channel in list(self.groups.get(group, ())):
            with contextlib.suppress(ChannelFull):  # a full channel drops the message, as channels' layer does
                self._put(channel, message)
