"""Typed upstream events re-encoded in OpenAI's standard shapes: SSE chunks and whole responses (pure)."""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from conversations.api.parsing import Endpoint
from conversations.upstream.events import (
    ContentDelta,
    Finish,
    ReasoningDelta,
    RefusalDelta,
    StreamError,
    ToolCallDelta,
    UpstreamEvent,
)

DONE = b"data: [DONE]\n\n"

FINISH_REASONS = {"stop", "length", "tool_calls", "content_filter", "function_call"}
_FINISH_ALIASES = {
    "eos": "stop",
    "eos_token": "stop",
    "end_turn": "stop",
    "stop_sequence": "stop",
    "end": "stop",
    "max_tokens": "length",
    "model_length": "length",
    "max_length": "length",
    "tool_use": "tool_calls",
    "tool_call": "tool_calls",
    "function": "function_call",
    "safety": "content_filter",
    "recitation": "content_filter",
    "refusal": "content_filter",
}


def finish_reason(raw: str) -> str:
    """An upstream's finish word as one of OpenAI's; anything unknown counts as `stop`."""
    reason = raw.strip().lower()
    if reason in FINISH_REASONS:
        return reason
    return _FINISH_ALIASES.get(reason, "stop")


def new_id(endpoint: Endpoint) -> str:
    return ("chatcmpl-" if endpoint == "chat" else "cmpl-") + uuid.uuid4().hex


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _bytes(text: str) -> bytes:
    # A lone surrogate (an upstream may send "\ud800") can only sit inside a JSON string, where
    # backslashreplace writes it back as the same JSON escape: the output stays valid UTF-8 and JSON.
    return text.encode("utf-8", "backslashreplace")


def usage_json(usage: dict[str, Any]) -> str:
    """`usage` as JSON, its Decimal `estimated_cost` written as an exact JSON number (as DeepInfra does)."""
    cost = usage.get("estimated_cost")
    rest = {k: v for k, v in usage.items() if k != "estimated_cost"}
    text = _dumps(rest)
    if isinstance(cost, Decimal):
        number = format(cost.normalize(), "f") if cost else "0"
        text = text[:-1] + ("," if rest else "") + f'"estimated_cost":{number}}}'
    return text


def usage_payload(record: Any) -> dict[str, Any]:
    """The `usage` object of a response from its ledger row."""
    return {
        "prompt_tokens": record.prompt_tokens,
        "completion_tokens": record.completion_tokens,
        "total_tokens": record.total_tokens,
        "estimated_cost": record.estimated_cost,
        "estimated": record.usage_estimated,
    }


def error_chunk(error: StreamError) -> bytes:
    """A failure after the stream started: an `error` event (the official clients raise APIError on it)."""
    body = {"error": {"message": error.message, "type": "upstream_error", "param": None, "code": error.code}}
    return _bytes(f"data: {_dumps(body)}\n\n")


class ChunkEncoder:
    """SSE chunks of one streamed response: `chat.completion.chunk` or `text_completion` objects."""

    def __init__(self, endpoint: Endpoint, model: str, *, include_usage: bool) -> None:
        self.endpoint = endpoint
        self.id = new_id(endpoint)
        self.created = int(time.time())
        self.model = model
        self.include_usage = include_usage
        obj = "chat.completion.chunk" if endpoint == "chat" else "text_completion"
        self._envelope = (
            f'{{"id":"{self.id}","object":"{obj}","created":{self.created},"model":{_dumps(model)}'
        )
        self._head = f'data: {self._envelope},"choices":['
        self._tail = ("]" + (',"usage":null' if include_usage else "") + "}\n\n").encode()
        self._head_bytes = _bytes(self._head)
        self._started: set[int] = set()  # choices whose first chunk (with the role) went out

    def _chunk(self, choice: dict[str, Any]) -> bytes:
        return self._head_bytes + _bytes(_dumps(choice)) + self._tail

    def _delta(self, index: int, delta: dict[str, Any]) -> bytes:
        if index not in self._started:
            self._started.add(index)
            delta = {"role": "assistant", **delta}
        return self._chunk({"index": index, "delta": delta, "logprobs": None, "finish_reason": None})

    def encode(self, event: UpstreamEvent) -> bytes | None:
        """The chunk for one event, or None (usage is held for the end; errors are sent by the caller)."""
        if self.endpoint == "completions":
            if isinstance(event, ContentDelta):
                return self._chunk(
                    {"text": event.text, "index": event.index, "logprobs": None, "finish_reason": None}
                )
            if isinstance(event, Finish):
                return self._chunk(
                    {
                        "text": "",
                        "index": event.index,
                        "logprobs": None,
                        "finish_reason": finish_reason(event.reason),
                    }
                )
            return None
        if isinstance(event, ContentDelta):
            if event.index in self._started:  # the common case, kept short
                return b"".join(
                    (
                        self._head_bytes,
                        b'{"index":',
                        str(event.index).encode(),
                        b',"delta":{"content":',
                        _bytes(_dumps(event.text)),
                        b'},"logprobs":null,"finish_reason":null}',
                        self._tail,
                    )
                )
            return self._delta(event.index, {"content": event.text})
        if isinstance(event, ReasoningDelta):
            return self._delta(event.index, {"reasoning_content": event.text})
        if isinstance(event, RefusalDelta):
            return self._delta(event.index, {"refusal": event.text})
        if isinstance(event, ToolCallDelta):
            call: dict[str, Any] = {"index": event.call_index}
            if event.id:
                call["id"] = event.id
                call["type"] = "function"
            function: dict[str, Any] = {}
            if event.name:
                function["name"] = event.name
            function["arguments"] = event.arguments
            call["function"] = function
            return self._delta(event.index, {"tool_calls": [call]})
        if isinstance(event, Finish):
            delta: dict[str, Any] = (
                {} if event.index in self._started else {"role": "assistant", "content": ""}
            )
            self._started.add(event.index)
            return self._chunk(
                {
                    "index": event.index,
                    "delta": delta,
                    "logprobs": None,
                    "finish_reason": finish_reason(event.reason),
                }
            )
        return None

    def usage_chunk(self, usage: dict[str, Any]) -> bytes:
        """The final chunk with `choices: []` and the usage (only when the client asked for it)."""
        return _bytes(f'data: {self._envelope},"choices":[],"usage":{usage_json(usage)}}}\n\n')


@dataclass
class Choice:
    """One choice's reply, gathered from the events."""

    content: list[str] = field(default_factory=list)
    reasoning: list[str] = field(default_factory=list)
    refusal: list[str] = field(default_factory=list)
    tool_calls: dict[int, dict[str, Any]] = field(default_factory=dict)
    finish_reason: str | None = None

    def take(self, event: UpstreamEvent) -> None:
        if isinstance(event, ContentDelta):
            self.content.append(event.text)
        elif isinstance(event, ReasoningDelta):
            self.reasoning.append(event.text)
        elif isinstance(event, RefusalDelta):
            self.refusal.append(event.text)
        elif isinstance(event, ToolCallDelta):
            call = self.tool_calls.setdefault(event.call_index, {"id": None, "name": "", "arguments": []})
            call["id"] = call["id"] or event.id
            call["name"] = call["name"] or event.name or ""
            call["arguments"].append(event.arguments)
        elif isinstance(event, Finish):
            self.finish_reason = finish_reason(event.reason)

    def text(self) -> str:
        """Everything generated, for offline token counts."""
        calls = "".join(c["name"] + "".join(c["arguments"]) for c in self.tool_calls.values())
        return "".join(self.reasoning) + "".join(self.content) + "".join(self.refusal) + calls

    def message(self) -> dict[str, Any]:
        content = "".join(self.content)
        message: dict[str, Any] = {
            "role": "assistant",
            "content": content if content or not self.tool_calls else None,
        }
        if self.reasoning:
            message["reasoning_content"] = "".join(self.reasoning)
        message["refusal"] = "".join(self.refusal) or None
        if self.tool_calls:
            message["tool_calls"] = [
                {
                    "id": c["id"] or f"call_{i}",
                    "type": "function",
                    "function": {"name": c["name"], "arguments": "".join(c["arguments"])},
                }
                for i, c in sorted(self.tool_calls.items())
            ]
        return message


def whole_response(
    endpoint: Endpoint, model: str, choices: dict[int, Choice], usage: dict[str, Any]
) -> bytes:
    """A non-streaming `chat.completion` or `text_completion` body."""
    if endpoint == "chat":
        listed = [
            {"index": i, "message": c.message(), "logprobs": None, "finish_reason": c.finish_reason or "stop"}
            for i, c in sorted(choices.items())
        ]
    else:
        listed = [
            {
                "text": "".join(c.content),
                "index": i,
                "logprobs": None,
                "finish_reason": c.finish_reason or "stop",
            }
            for i, c in sorted(choices.items())
        ]
    body = {
        "id": new_id(endpoint),
        "object": "chat.completion" if endpoint == "chat" else "text_completion",
        "created": int(time.time()),
        "model": model,
        "choices": listed,
    }
    return _bytes(_dumps(body)[:-1] + ',"usage":' + usage_json(usage) + "}")

