"""Provider dialects of OpenAI-compatible answers (streamed chunks or whole JSON bodies) to typed events."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

from conversations.upstream.errors import ErrorCode, error_fields, redact
from conversations.upstream.events import (
    ContentDelta,
    Finish,
    ReasoningDelta,
    RefusalDelta,
    SSEEvent,
    StreamError,
    ToolCallDelta,
    UpstreamEvent,
    Usage,
)

Api = Literal["chat", "completions"]

BROKEN = str(ErrorCode.UPSTREAM_STREAM_BROKEN)
TRUNCATED_MESSAGE = "the upstream closed the stream before the reply finished"
_REPORTED = "the upstream reported an error"  # when the provider gave no message of its own

# DeepInfra documents a stream whose last content delta is exactly "</s>": the model's end-of-sequence
# token leaked as text. A whole delta equal to it is dropped; "</s>" inside longer text is kept, since a
# reply may legitimately write that HTML tag (a tokenizer splits typed "</s>" into several tokens).
_EOS_LEAK = "</s>"

_raw_decode = json.JSONDecoder().raw_decode
_COST_KEYS = ("cost", "estimated_cost")  # OpenRouter, DeepInfra: what the provider bills, in USD


class StreamNormalizer:
    """Turns the SSE events of one streamed reply into UpstreamEvents, whatever the provider's dialect.

    Ordering: content, reasoning, refusal and tool-call deltas come as their chunks arrive, then a Finish
    per choice index (once, the first finish_reason seen for it). Usage is held back and given exactly
    once at the end (with the upstream's response id, the first chunk `id` seen), merged over every
    chunk that carried any (per field maximum, never a sum): on
    `[DONE]`, or in finish() at EOF, or just before a StreamError. A StreamError is always the last event;
    after it, and after `[DONE]`, further input is ignored. finish() must be called at EOF: it reports a
    stream cut before its reply finished (the partial text the caller holds stays valid).
    """

    __slots__ = (
        "_api", "_done", "_ended", "_error", "_finish_reason", "_finished", "_response_id", "_seen", "_usage"
    )

    def __init__(self, api: Api = "chat") -> None:
        self._api = api
        self._done = False
        self._ended = False  # [DONE], finish() or a StreamError: nothing more is produced
        self._error: StreamError | None = None
        self._finish_reason: str | None = None
        self._finished: set[int] = set()  # choice indexes that sent a finish_reason
        self._seen: set[int] = set()  # choice indexes that appeared at all
        self._usage: Usage | None = None
        self._response_id: str | None = None

    @property
    def api(self) -> Api:
        """The endpoint the stream answers. Both chunk shapes (`delta` and `text`) are read in either
        mode, since some servers mix them."""
        return self._api

    @property
    def done(self) -> bool:
        """The upstream sent `data: [DONE]`."""
        return self._done

    @property
    def finish_reason(self) -> str | None:
        """The finish_reason of choice 0, as the upstream spelt it."""
        return self._finish_reason

    @property
    def usage(self) -> Usage | None:
        """The best usage seen so far (None when the upstream reported none)."""
        return self._usage

    @property
    def response_id(self) -> str | None:
        """The upstream's id of this reply (the first chunk `id` seen), if it sent one."""
        return self._response_id

    @property
    def error(self) -> StreamError | None:
        """The StreamError that ended the stream, if one did."""
        return self._error

    def feed(self, event: SSEEvent) -> list[UpstreamEvent]:
        """Normalise one SSE event."""
        if self._ended:
            return []
        data = event.data
        if event.event == "error":
            return self._fail(_error_message(data) or _REPORTED)
        if data[:1] != "{":  # the rare cases, off the hot path
            data = data.strip()
            if data == "[DONE]":
                self._done = True
                return self._end()
            if not data:
                return []  # an empty data event is a keep-alive
        try:
            chunk, end = _raw_decode(data)  # json.loads minus two layers of Python calls: this is hot
        except ValueError:
            return self._malformed(data)
        if end != len(data) and not data[end:].isspace():
            return self._malformed(data)
        if chunk.__class__ is not dict:
            return self._fail(f"the upstream sent something other than a chunk: {redact(data, 200)}")
        out: list[UpstreamEvent] = []
        self._chunk(chunk, data, out)
        return out

    def finish(self) -> list[UpstreamEvent]:
        """End of stream (connection closed). Reports a reply cut short; idempotent."""
        if self._ended:
            return []
        if self._seen and self._seen <= self._finished:
            return self._end()  # every choice finished: a missing [DONE] does not matter
        return self._fail(TRUNCATED_MESSAGE)

    # -- internals ---------------------------------------------------------------------------------------

    def _end(self) -> list[UpstreamEvent]:
        self._ended = True
        if self._usage is None:
            return []
        if self._response_id is not None:
            self._usage = replace(self._usage, response_id=self._response_id)
        return [self._usage]

    def _fail(self, message: str, *, code: object = None) -> list[UpstreamEvent]:
        self._error = _stream_error(message, code)
        out = self._end()
        out.append(self._error)
        return out

    def _malformed(self, data: str) -> list[UpstreamEvent]:
        # Some servers omit the blank line between events, so several chunks (and maybe [DONE]) arrive as
        # one multi-line data field: take them one by one when every line parses.
        if "\n" in data:
            lines = [line.strip() for line in data.split("\n") if line.strip()]
            done = lines[-1] == "[DONE]"
            if done:
                lines.pop()
            try:
                chunks = [json.loads(line) for line in lines]
            except ValueError:
                chunks = []
            if chunks and all(isinstance(c, dict) for c in chunks):
                out: list[UpstreamEvent] = []
                for chunk, line in zip(chunks, lines, strict=True):
                    if not self._ended:
                        self._chunk(chunk, line, out)
                if done and not self._ended:
                    self._done = True
                    out.extend(self._end())
                return out
        return self._fail(f"the upstream sent malformed data: {redact(data, 200)}")

    def _chunk(self, chunk: dict[str, Any], raw: str, out: list[UpstreamEvent]) -> None:
        if chunk.get("error") or chunk.get("object") == "error":
            message, _kind, code = error_fields(chunk)
            out.extend(self._fail(redact(message) if message else _REPORTED, code=code))
            return
        if self._response_id is None:
            response_id = chunk.get("id")
            if response_id and response_id.__class__ is str:
                self._response_id = response_id[:255]
        choices = chunk.get("choices")
        if choices and choices.__class__ is list:
            for position, choice in enumerate(choices):
                if choice.__class__ is not dict:
                    continue
                index = choice.get("index", position)
                if index.__class__ is not int:
                    index = position
                self._seen.add(index)
                delta = choice.get("delta")
                if delta and delta.__class__ is dict:
                    content = delta.get("content")
                    if len(delta) == 1 and content.__class__ is str:  # the usual content chunk, inline
                        if content and content != _EOS_LEAK:
                            out.append(ContentDelta(content, index))
                    else:
                        _delta(delta, index, out)
                else:
                    text = choice.get("text")  # legacy completions; a few chat servers too
                    if text and text.__class__ is str:
                        out.append(ContentDelta(text, index))
                reason = choice.get("finish_reason")
                if reason and reason.__class__ is str and index not in self._finished:
                    self._finished.add(index)
                    if index == 0:
                        self._finish_reason = reason
                    out.append(Finish(reason, index))
        usage = chunk.get("usage")
        if usage:
            self._take_usage(usage, raw, "usage")
        x_groq = chunk.get("x_groq")
        if x_groq and x_groq.__class__ is dict and x_groq.get("usage"):
            self._take_usage(x_groq["usage"], raw, "x_groq")

    def _take_usage(self, raw_usage: object, raw_chunk: str, where: str) -> None:
        if not isinstance(raw_usage, dict):
            return
        cost = None
        if any(k in raw_usage for k in _COST_KEYS):
            # Costs are money: re-read this one chunk with exact decimals instead of binary floats.
            exact = json.loads(raw_chunk, parse_float=Decimal)
            cost = _cost(exact["usage"] if where == "usage" else exact["x_groq"]["usage"])
        usage = _usage(raw_usage, cost)
        if usage is not None:
            self._usage = usage if self._usage is None else _merge(self._usage, usage)


def normalize_response(body: dict[str, Any], api: Api = "chat") -> list[UpstreamEvent]:
    """Events of a non-streaming JSON answer, in the same order as a stream: deltas, Finish, Usage.

    A whole body is complete by construction, so a choice without finish_reason gets Finish("unknown");
    a body with neither choices nor an error is a StreamError. Costs come exact when the caller parsed
    the body with `json.loads(text, parse_float=Decimal)`; a float cost is converted through its repr.
    """
    if not isinstance(body, dict):
        return [StreamError(BROKEN, "the upstream answered with something other than a JSON object")]
    if body.get("error") or body.get("object") == "error":
        message, _kind, code = error_fields(body)
        return [_stream_error(redact(message) if message else _REPORTED, code)]
    out: list[UpstreamEvent] = []
    choices = body.get("choices")
    if isinstance(choices, list):
        seen: set[int] = set()
        for position, choice in enumerate(choices):
            if not isinstance(choice, dict):
                continue
            index = choice.get("index", position)
            if type(index) is not int:
                index = position
            if index in seen:  # a malformed body names one choice twice: the first one stands, as in a stream
                continue
            seen.add(index)
            message = choice.get("message")
            if isinstance(message, dict):
                _delta(message, index, out, whole=True)
            text = choice.get("text")
            if text and isinstance(text, str) and not isinstance(message, dict):
                out.append(ContentDelta(text, index))
            reason = choice.get("finish_reason")
            out.append(Finish(reason if reason and isinstance(reason, str) else "unknown", index))
    if not out:
        return [StreamError(BROKEN, "the upstream answered without any choices")]
    raw_usage = body.get("usage")
    if not raw_usage and isinstance(body.get("x_groq"), dict):
        raw_usage = body["x_groq"].get("usage")
    if isinstance(raw_usage, dict):
        usage = _usage(raw_usage, _cost(raw_usage))
        if usage is not None:
            response_id = body.get("id")
            if response_id and isinstance(response_id, str):
                usage = replace(usage, response_id=response_id[:255])
            out.append(usage)
    return out


# -- helpers shared by both paths ----------------------------------------------------------------------


def _delta(delta: dict[str, Any], index: int, out: list[UpstreamEvent], *, whole: bool = False) -> None:
    # Several servers send both spellings during a rename (vLLM): take one, never both.
    reasoning = delta.get("reasoning_content") or delta.get("reasoning")
    if reasoning and isinstance(reasoning, str):
        out.append(ReasoningDelta(reasoning, index))
    content = delta.get("content")
    if content:
        if isinstance(content, str):
            if whole or content != _EOS_LEAK:
                out.append(ContentDelta(content, index))
        elif isinstance(content, list):  # content parts: [{"type": "text", "text": ...}]
            text = "".join(
                p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str)
            )
            if text:
                out.append(ContentDelta(text, index))
    refusal = delta.get("refusal")
    if refusal and isinstance(refusal, str):
        out.append(RefusalDelta(refusal, index))
    tool_calls = delta.get("tool_calls")
    if tool_calls and isinstance(tool_calls, list):
        for position, call in enumerate(tool_calls):
            if isinstance(call, dict):
                _tool_call(call, position, index, out)
    function_call = delta.get("function_call")  # the pre-tools spelling of a single call
    if function_call and isinstance(function_call, dict) and not tool_calls:
        _tool_call({"function": function_call}, 0, index, out)


def _tool_call(call: dict[str, Any], position: int, index: int, out: list[UpstreamEvent]) -> None:
    call_index = call.get("index", position)
    if type(call_index) is not int:
        call_index = position
    call_id = call.get("id")
    function = call.get("function")
    name = arguments = None
    if isinstance(function, dict):
        name = function.get("name")
        arguments = function.get("arguments")
        if isinstance(arguments, dict | list):  # a few servers send the arguments already parsed
            arguments = json.dumps(arguments, ensure_ascii=False)
    call_id = call_id if call_id and isinstance(call_id, str) else None
    name = name if name and isinstance(name, str) else None
    arguments = arguments if isinstance(arguments, str) else ""
    if call_id or name or arguments:
        out.append(ToolCallDelta(call_index, call_id, name, arguments, index))


def stream_cut(error: StreamError, *, produced: bool) -> bool:
    """Whether the error cut a reply short that had output (the connection broke, the stream ended early or went
    silent mid-reply), rather than the provider reporting a failure: the ledger marks the two apart."""
    if not produced:
        return False
    return error.message == TRUNCATED_MESSAGE or error.code == ErrorCode.UPSTREAM_TIMEOUT


def _stream_error(message: str, code: object) -> StreamError:
    status = code if type(code) is int and 400 <= code < 600 else None
    return StreamError(
        code=BROKEN,
        message=message,
        # A provider's HTTP-like code tells whether trying again may help; the caller still retries
        # only before the first token was relayed.
        retryable=status is not None and (status in (408, 409, 429) or status >= 500),
        status=status,
    )


def _error_message(data: str) -> str | None:
    try:
        parsed = json.loads(data)
    except ValueError:
        parsed = None
    message, _kind, _code = error_fields(parsed)
    if message:
        return redact(message)
    return redact(data) if data.strip() else None


def _count(value: object) -> int:
    if type(value) is int:
        return max(value, 0)
    if isinstance(value, float | Decimal) and math.isfinite(value) and abs(float(value)) < 1e15:
        return max(int(value), 0)
    return 0


def _cost(raw_usage: object) -> Decimal | None:
    if not isinstance(raw_usage, dict):
        return None
    for key in _COST_KEYS:
        value = raw_usage.get(key)
        if value is None or isinstance(value, bool):
            continue
        try:
            cost = value if isinstance(value, Decimal) else Decimal(str(value))
        except (InvalidOperation, ValueError):
            continue
        if cost.is_finite() and cost >= 0:
            return cost
    return None


def _usage(raw: dict[str, Any], cost: Decimal | None) -> Usage | None:
    prompt = _count(raw.get("prompt_tokens", raw.get("input_tokens")))
    completion = _count(raw.get("completion_tokens", raw.get("output_tokens")))
    total = _count(raw.get("total_tokens")) or prompt + completion
    if not (prompt or completion or total) and cost is None:
        return None  # all zeros: a proxy that does not count, i.e. no usage reported
    return Usage(prompt, completion, total, cost)


def _merge(old: Usage, new: Usage) -> Usage:
    # Cumulative reports (vLLM's continuous usage, xAI, a repeated final usage) only grow: keep the
    # largest of each field; a sum would double-count.
    cost = new.cost if old.cost is None else old.cost if new.cost is None else max(old.cost, new.cost)
    return Usage(
        max(old.prompt_tokens, new.prompt_tokens),
        max(old.completion_tokens, new.completion_tokens),
        max(old.total_tokens, new.total_tokens),
        cost,
    )
