"""Runs one API call: admission (key, rate limit, body, model, budget), upstream call, SSE encoding, ledger.

Admission is the check/do pair of conversations/api/admission.py, run as one synchronous call (one thread hop,
a few short queries) that raises ApiError before anything is sent upstream; the ledger row is one more.
Whatever ends the call (the reply finished, the upstream failed, the client went away), exactly one UsageRecord
is written and the budget reservation settled.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import AsyncGenerator, AsyncIterator

from django.db import transaction

from conversations import db
from conversations.api.admission import ApiCall, check_api_call, do_api_call
from conversations.api.auth import check_api_key, rate_limit_check
from conversations.api.encoding import DONE, Choice, ChunkEncoder, error_chunk, usage_payload, whole_response
from conversations.api.errors import api_error, upstream_failure
from conversations.api.parsing import Endpoint, json_body, parse_request
from conversations.errors import AdmissionError
from conversations.models import UsageRecord
from conversations.upstream import client
from conversations.upstream.events import StreamError, UpstreamEvent, Usage
from conversations.upstream.normalize import stream_cut
from conversations.usage.budgets import budget_settle
from conversations.usage.ledger import Reckoning, reckon, usage_record, usage_reported
from conversations.usage.provider_cost import provider_cost_after_reply

NO_USAGE = Usage(0, 0, 0)  # an upstream that refused before generating anything bills nothing
_recording: set[asyncio.Future] = set()  # ledger writes outliving a cancelled request


# --- admission (conversations/api/admission.py), run as one call on the API's database lane -------------


def api_call_admit(
    *, authorization: str | None, endpoint: Endpoint, raw_body: bytes, address: str | None = None
) -> ApiCall:
    """Check, in this order: the key (401), its rate limit (429), the body (400), the model (404), the budget
    (429, a reservation of the worst case is taken). Raises ApiError; nothing is sent upstream here."""
    try:
        key = check_api_key(authorization=authorization, address=address)
        rate_limit_check(key)
        request = parse_request(endpoint, json_body(raw_body))
        return do_api_call(check=check_api_call(key=key, request=request))
    except AdmissionError as exc:
        raise api_error(exc) from None


async def admit(
    *, authorization: str | None, endpoint: Endpoint, raw_body: bytes, address: str | None = None
) -> ApiCall:
    """api_call_admit off the event loop. A client that hangs up meanwhile gets its reservation released
    as soon as the admission finishes (instead of holding budget until the reservation goes stale)."""
    admission = db.api.submit(
        api_call_admit, authorization=authorization, endpoint=endpoint, raw_body=raw_body, address=address
    )
    try:
        return await asyncio.shield(admission)
    except asyncio.CancelledError:
        admission.add_done_callback(_release_abandoned)
        raise


def _release_abandoned(admission: asyncio.Future[ApiCall]) -> None:
    if admission.cancelled() or admission.exception() is not None or admission.result().reservation_id is None:
        return
    release = db.api.submit(budget_settle, admission.result().reservation_id)
    _recording.add(release)
    release.add_done_callback(_recording.discard)


@transaction.atomic
def api_call_record(
    *,
    call: ApiCall,
    usage: Usage | None,
    completion_text: str,
    finish_reason: str,
    ttft_ms: int | None,
    duration_ms: int,
    reckoning: Reckoning | None = None,
    sent: bool = True,
    upstream_request_id: str | None = None,
    outcome: str | None = None,
) -> UsageRecord:
    """The call's ledger row (source `api`), settling its budget reservation."""
    return usage_record(
        reckoning=reckoning,
        sent=sent,
        user_id=call.user_id,
        source=UsageRecord.Source.API,
        priced=call.priced,
        usage=usage,
        prompt_messages=call.prompt_messages,
        completion_text=completion_text,
        finish_reason=finish_reason,
        ttft_ms=ttft_ms,
        duration_ms=duration_ms,
        api_key_id=call.api_key_id,
        reservation_id=call.reservation_id,
        upstream_request_id=upstream_request_id,
        tz=call.owner_tz,
        outcome=outcome,
    )


# --- the relay --------------------------------------------------------------------------------------


class Relay:
    """One admitted call's reply as it arrives: gathered per choice, and recorded exactly once."""

    def __init__(self, call: ApiCall) -> None:
        self.call = call
        self.started = time.monotonic()
        self.ttft_ms: int | None = None
        self.choices: dict[int, Choice] = {}
        self.usage: Usage | None = None
        self.error: StreamError | None = None
        self._reckoning: Reckoning | None = None
        self._record: asyncio.Future[UsageRecord] | None = None
        self.response_ids: list[str] = []  # the upstream's id of the reply, once its first chunk came

    def take(self, event: UpstreamEvent) -> None:
        if isinstance(event, Usage):
            self.usage = event
        elif isinstance(event, StreamError):
            self.error = event
        else:
            if self.ttft_ms is None:
                self.ttft_ms = int((time.monotonic() - self.started) * 1000)
            index = event.index
            choice = self.choices.get(index)
            if choice is None:
                choice = self.choices[index] = Choice()
            choice.take(event)

    @property
    def produced(self) -> bool:
        return self.ttft_ms is not None

    def text(self) -> str:
        return "".join(c.text() for _, c in sorted(self.choices.items()))

    @property
    def sent(self) -> bool:
        """False when the request never reached the provider (no connection): nothing to bill."""
        return self.error is None or self.error.sent

    def cut(self) -> bool:
        """Whether an error cut the output short (rather than the provider failing the request)."""
        return self.error is not None and stream_cut(self.error, produced=bool(self.text()))

    def finish_reason(self) -> str:
        if self.error is not None:
            return "error" if self.error.sent else self.error.code
        first = self.choices.get(0)
        return (first.finish_reason if first else None) or "stop"

    async def reckon(self) -> Reckoning:
        """The numbers the ledger row will hold, worked out once, so that the client can be told them before the
        row is written (the write is then off the client's total time) and the two always agree."""
        if self._reckoning is None:
            text = self.text()
            count = functools.partial(
                reckon,
                priced=self.call.priced,
                usage=self.usage,
                prompt_messages=self.call.prompt_messages,
                completion_text=text,
                sent=self.sent,
            )
            # Counting tokens offline (no usage reported) can take milliseconds: not on the event loop.
            self._reckoning = count() if usage_reported(self.usage, text) else await db.api.run(count)
        return self._reckoning

    async def record(self, finish_reason: str | None = None, *, usage: Usage | None = None) -> UsageRecord:
        """Write the ledger row once (later calls wait for the same write). The write runs on a database thread
        with its own future, so a client that disconnects while it is under way cannot cancel it."""
        if self._record is None:
            self._record = db.api.submit_together(  # a burst's ledger rows share their transactions
                api_call_record,
                call=self.call,
                usage=usage or self.usage,
                completion_text=self.text(),
                finish_reason=self.finish_reason() if not self.sent else finish_reason or self.finish_reason(),
                sent=self.sent,
                ttft_ms=self.ttft_ms,
                duration_ms=int((time.monotonic() - self.started) * 1000),
                reckoning=None if usage is not None else self._reckoning,
                upstream_request_id=(usage or self.usage or NO_USAGE).response_id
                or next(iter(self.response_ids), None),
                outcome=UsageRecord.Outcome.CUT if self.cut() else None,
            )
            _recording.add(self._record)
            self._record.add_done_callback(_recording.discard)
            self._record.add_done_callback(self._look_up_cost)
        return await asyncio.shield(self._record)

    def _look_up_cost(self, written: asyncio.Future[UsageRecord]) -> None:
        """Once the row is written: ask the provider its own cost of the reply, when it is set to be asked."""
        if written.cancelled() or written.exception() is not None or not self.sent:
            return
        provider_cost_after_reply(target=self.call.target, provider=self.call.priced.provider_name,
                                  response_id=written.result().upstream_request_id)

    async def stopped(self) -> None:
        """The client went away: record what was generated so far (usage estimated unless reported)."""
        with contextlib.suppress(asyncio.CancelledError):  # cancelled again: the write goes on, on its thread
            await self.record("stopped")


async def stream_open(call: ApiCall) -> AsyncIterator[bytes]:
    """Start the upstream stream and wait for its first event. A failure before any output is raised as
    ApiError (502/504/400 with the stable code) instead of a 200 stream; otherwise the SSE body iterator."""
    relay = Relay(call)
    upstream = client.stream_batches(call.target, call.path, call.body, response_ids=relay.response_ids)
    first: list[UpstreamEvent] = []
    try:
        async for batch in upstream:
            for event in batch:
                relay.take(event)
            first.extend(batch)
            if not all(isinstance(event, Usage) for event in batch):
                break
    except BaseException:  # the client disconnected while the upstream was thinking
        await upstream.aclose()
        await relay.stopped()
        raise
    if relay.error is not None and not relay.produced:
        await upstream.aclose()
        await relay.record("error", usage=relay.usage or NO_USAGE)
        raise upstream_failure(relay.error)
    return _sse(relay, upstream, first)


async def _sse(
    relay: Relay, upstream: AsyncGenerator[list[UpstreamEvent], None], first: list[UpstreamEvent]
) -> AsyncIterator[bytes]:
    """The SSE body: the chunks of each upstream read written together (one write to the client, not one each)."""
    call = relay.call
    encoder = ChunkEncoder(call.request.endpoint, call.model_name, include_usage=call.request.include_usage)

    def encoded(events: list[UpstreamEvent]) -> bytes:
        return b"".join(chunk for event in events if (chunk := encoder.encode(event)) is not None)

    try:
        if chunks := encoded(first):
            yield chunks
        if relay.error is None:
            async for batch in upstream:
                for event in batch:
                    relay.take(event)
                if chunks := encoded(batch):
                    yield chunks
        if call.request.include_usage:
            yield encoder.usage_chunk(usage_payload(await relay.reckon()))
        if relay.error is not None:
            yield error_chunk(relay.error)
        yield DONE
        # The client need not wait for the ledger: the row is written after [DONE], with the numbers the usage
        # chunk gave (a client that hangs up at [DONE], as the official ones do, cannot cancel the write: see
        # Relay.record).
        await relay.record()
    finally:
        # Reached on a normal end, and when the client disconnects (Django cancels the response task, or
        # closes this generator): closing the upstream stream closes its connection, the provider stops.
        await upstream.aclose()
        if relay._record is None:
            await relay.stopped()


async def complete(call: ApiCall) -> bytes:
    """A non-streaming call: the whole `chat.completion` / `text_completion` body, or ApiError."""
    relay = Relay(call)
    try:
        events = await client.complete(call.target, call.path, call.body)
    except BaseException:
        await relay.stopped()
        raise
    for event in events:
        relay.take(event)
    if relay.error is not None:
        await relay.record("error", usage=None if relay.produced else (relay.usage or NO_USAGE))
        raise upstream_failure(relay.error)
    record = await relay.record()
    return whole_response(call.request.endpoint, call.model_name, relay.choices, usage_payload(record))
