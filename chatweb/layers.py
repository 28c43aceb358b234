"""The in-process channel layer (one Daphne, no REDIS_URL): channels' InMemoryChannelLayer without its
per-message scans (issue #9).

channels' layer walks every channel and every group membership to expire old messages on *each* send, receive
and group send, starts a task per recipient of a group send, and deep-copies each message per recipient. With a
reply's deltas crossing it twice (group send, then the socket's receive), that is quadratic: at 250 streams the
scans alone took more than the server's one core. Here expiry runs at most once a second (messages live 30 s,
so nothing is kept noticeably longer), a group send puts the message straight on each queue, and a message of
plain values (every chat frame) is copied shallowly. Behaviour is otherwise the same: capacity per channel,
ChannelFull on a full channel (dropped silently by a group send), group expiry.
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
        now = time.monotonic()
        if now - self._cleaned_at >= CLEAN_EVERY_SECONDS:
            self._cleaned_at = now
            super()._clean_expired()

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
