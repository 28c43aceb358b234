"""Typed events: what the SSE decoder and the stream normaliser produce, whatever the provider's dialect."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal


@dataclass(frozen=True, slots=True)
class SSEEvent:
    """One server-sent event as framed on the wire (before any JSON parsing)."""

    data: str
    event: str = "message"
    id: str | None = None


@dataclass(frozen=True, slots=True)
class ContentDelta:
    """A piece of the answer text of choice `index`."""

    text: str
    index: int = 0


@dataclass(frozen=True, slots=True)
class ReasoningDelta:
    """A piece of a reasoning model's thinking (`reasoning_content` / `reasoning`), apart from the answer."""

    text: str
    index: int = 0


@dataclass(frozen=True, slots=True)
class RefusalDelta:
    """A piece of a refusal (`delta.refusal`), sent instead of content."""

    text: str
    index: int = 0


@dataclass(frozen=True, slots=True)
class ToolCallDelta:
    """A fragment of a tool call: `id`/`name` arrive once, `arguments` in pieces."""

    call_index: int
    id: str | None = None
    name: str | None = None
    arguments: str = ""
    index: int = 0


@dataclass(frozen=True, slots=True)
class Usage:
    """Token counts as the upstream reported them, and its own cost when it sends one (USD).

    `response_id`: the upstream's own `id` of the reply (its chunks' or body's `id`), what its usage export
    lists, so that the ledger can be reconciled with the provider's account. It rides on Usage, given once at
    the end, rather than in an event of its own, so that the events of a stream stay what they were; it is
    not part of equality (two reports of the same counts are the same usage)."""

    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    cost: Decimal | None = None
    response_id: str | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class Finish:
    """Choice `index` finished. `reason` is the upstream's word (stop, length, ...), `raw` kept as sent."""

    reason: str
    index: int = 0


@dataclass(frozen=True, slots=True)
class StreamError:
    """The upstream failed: a stable `code` (errors.ErrorCode), a human message, whether a retry may help;
    `sent` False when the request never reached the provider (no connection), so nothing can be billed."""

    code: str
    message: str
    retryable: bool = False
    status: int | None = None
    sent: bool = True


UpstreamEvent = ContentDelta | ReasoningDelta | RefusalDelta | ToolCallDelta | Usage | Finish | StreamError
