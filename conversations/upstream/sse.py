"""Incremental server-sent-events framing: bytes from the wire in, SSEEvent objects out."""

from __future__ import annotations

from conversations.upstream.events import SSEEvent

_BOM = b"\xef\xbb\xbf"
_LINE_ENDS = (b"\n", b"\r")


class SSEDecoder:
    """Frames an SSE byte stream into events, following the WHATWG parsing rules with two deliberate
    differences: an event still pending at EOF is dispatched by close() (servers that just close the
    connection must not lose their last chunk), and old llama.cpp's non-standard `error: {...}` line
    becomes an event of type "error".

    Feed network reads of any size; the output does not depend on where the reads were split. `id`
    follows the spec's "last event ID": once set it carries over to later events.
    """

    __slots__ = ("_data", "_event", "_last_id", "_parts", "_pending_cr", "_started")

    def __init__(self) -> None:
        self._parts: list[bytes] = []  # pieces of a line whose end has not arrived yet
        self._pending_cr = False  # the previous read ended in "\r": a leading "\n" is its other half
        self._started = False  # the first line (which may carry a byte-order mark) was seen
        self._data: list[bytes] = []
        self._event: bytes | None = None
        self._last_id: str | None = None

    def feed(self, data: bytes) -> list[SSEEvent]:
        """Consume one read; return the events it completed."""
        if not data:
            return []
        if self._pending_cr:
            self._pending_cr = False
            if data[:1] == b"\n":
                data = data[1:]
                if not data:
                    return []
        has_cr = b"\r" in data
        if not has_cr and b"\n" not in data:
            # No line end: keep the piece and join once, so a long line read in small pieces stays linear.
            self._parts.append(data)
            return []
        if self._parts:  # held pieces never contain a line end, so has_cr still holds
            self._parts.append(data)
            data = b"".join(self._parts)
            self._parts = []
        if not self._started:  # data now starts with the stream's first line
            data = self._first_line(data)
        events: list[SSEEvent] = []
        if has_cr:
            # bytes.splitlines() breaks on exactly \n, \r and \r\n (never on U+2028 or other Unicode breaks).
            raw = data.splitlines(keepends=True)
            last = raw[-1]
            if not last.endswith(_LINE_ENDS):
                self._parts.append(raw.pop())
            elif last.endswith(b"\r"):
                self._pending_cr = True
            self._lines([line[:-2] if line.endswith(b"\r\n") else line[:-1] for line in raw], events)
            return events
        # The usual "\n"-only stream, cut into events at blank lines: an event that is one `data: ` line
        # (almost all of them) is built directly, anything else goes through the line rules.
        end = data.rfind(b"\n\n")
        if end < 0:
            tail = data
        else:
            tail = data[end + 2 :]
            # Complete events: decoded in one go ("\n" never continues a UTF-8 sequence, so this equals
            # decoding line by line), then split at blank lines.
            last_id = self._last_id
            append = events.append
            for block in data[:end].decode("utf-8", "replace").split("\n\n"):
                if block[:6] == "data: " and "\n" not in block and not self._data and self._event is None:
                    append(SSEEvent(block[6:], "message", last_id))
                else:
                    lines = block.encode().split(b"\n")
                    lines.append(b"")  # the blank line that ended the block
                    self._lines(lines, events)
                    last_id = self._last_id
        if tail:
            lines = tail.split(b"\n")
            rest = lines.pop()
            if rest:
                self._parts.append(rest)
            if lines:
                self._lines(lines, events)
        return events

    def close(self) -> list[SSEEvent]:
        """End of stream: process an unterminated last line and dispatch a pending event."""
        events: list[SSEEvent] = []
        if self._parts:
            line = b"".join(self._parts)
            self._parts = []
            if not self._started:
                line = self._first_line(line)
            if line:
                self._lines([line], events)
        self._pending_cr = False
        self._dispatch(events)
        return events

    def _first_line(self, data: bytes) -> bytes:
        self._started = True
        return data[3:] if data.startswith(_BOM) else data

    def _lines(self, lines: list[bytes], events: list[SSEEvent]) -> None:
        data_lines = self._data
        for line in lines:
            if line.startswith(b"data:"):  # by far the most common line: handled inline
                data_lines.append(line[6:] if line[5:6] == b" " else line[5:])
            elif line:
                self._line(line, events)
            else:
                self._dispatch(events)

    def _line(self, line: bytes, events: list[SSEEvent]) -> None:
        """A non-empty line (the common `data: ...` is handled inline by feed())."""
        colon = line.find(b":")
        if colon == 0:
            return  # a comment: keep-alives, OpenRouter's ": OPENROUTER PROCESSING"
        if colon < 0:
            field, value = line, b""
        else:
            field, value = line[:colon], line[colon + 1 :]
            if value.startswith(b" "):
                value = value[1:]
        if field == b"data":
            self._data.append(value)
        elif field == b"event":
            self._event = value
        elif field == b"id":
            if b"\x00" not in value:  # the spec ignores ids containing NUL
                self._last_id = value.decode("utf-8", "replace")
        elif field == b"error":
            # Older llama.cpp servers: `error: {...}` instead of an event.
            self._event = b"error"
            self._data.append(value)
        # "retry" and unknown fields are ignored.

    def _dispatch(self, events: list[SSEEvent]) -> None:
        event = self._event
        self._event = None
        if not self._data:
            # The spec drops an event without data; an error event is surfaced all the same.
            if event == b"error":
                events.append(SSEEvent(data="", event="error", id=self._last_id))
            return
        # Lines were split as bytes; decoding the joined event once is the same as decoding each line
        # ("\n" never continues a UTF-8 sequence) and invalid bytes become U+FFFD, never an exception.
        data = self._data[0] if len(self._data) == 1 else b"\n".join(self._data)
        self._data.clear()
        events.append(
            SSEEvent(
                data=data.decode("utf-8", "replace"),
                event="message" if not event else event.decode("utf-8", "replace"),
                id=self._last_id,
            )
        )
