"""The development upstream: an OpenAI-compatible ASGI server (real HTTP + SSE) with switches for failures.

Endpoints
    GET  /v1/models                 the dev models (see MODELS)
    GET  /v1/models/<id>
    POST /v1/chat/completions       streaming (SSE) and not
    POST /v1/completions            legacy text completions, streaming and not
    GET  /v1/generation?id=<id>     what a reply cost, as OpenRouter's generation endpoint answers it:
                                    {"data": {"id", "model", "created_at", "tokens_prompt", "tokens_completion",
                                    "total_cost", ...}} for a reply served (streamed, stopped or cut: the tokens
                                    actually sent), 404 for an id it never served or no longer keeps
    GET  /_stats?key=<k>            {"requests", "completed", "disconnected", "failed", "dropped", "active"}
                                    for one key (without ?key: totals over all keys)
    GET  /_received?key=<k>         the `messages` (or `prompt`) of the last requests with that key, oldest
                                    first: what a client really sent, to compare with what it shows
    GET  /healthz                   "ok"

Models: ``dev-chat`` (chat), ``dev-reasoner`` (chat; streams ``delta.reasoning_content`` before the
answer), ``dev-complete`` (``/v1/completions`` only), ``dev-vision`` (chat; answers with what
the last user message held: how many images and their sizes, each text part's length and first words).
The others' replies are markdown-ish prose seeded by the prompt (the messages, the model and the
request's ``seed``): the same request gives the same reply.
Usage is exact for what was sent: prompt tokens from ``count_prompt_tokens(messages)`` (or
``count_tokens(prompt)``), completion tokens ``count_tokens`` of the reasoning plus the answer sent.

Switches. Server-wide defaults come from ``DevUpstream(**defaults)`` / ``server.run(..., **defaults)``,
the ``DEVUPSTREAM_OPTIONS`` environment variable or ``--options`` on the command line, all in the
syntax below. Per request, a path prefix overrides them, so a test can give each scenario its own
base URL::

    http://127.0.0.1:PORT/s/<opts>/v1        <opts> = key=value[,key=value...]
    e.g. http://127.0.0.1:PORT/s/fail=429,times=2,retry_after=1,key=t1/v1

A "token" in the switches below is one streamed piece (one SSE content chunk, about a word).

    delay=S            seconds between tokens (default 0; ``make run`` uses 0.02). Late tokens are
                       sent together so the rate holds under load.
    first_delay=S      seconds before the first byte of the response (slow first token). With
                       dialect=openrouter the headers and ``: OPENROUTER PROCESSING`` comments come at
                       once and every second, the first token after S. Non-streaming: the whole
                       answer waits first_delay + delay × tokens.
    tokens=N           answer length in tokens (default: 60–260, seeded by the prompt).
    fail=CODE          answer HTTP CODE (400, 401, 402, 403, 404, 408, 409, 429, 500, 502, 503, ...)
                       with an OpenAI-shaped error body, to every /v1 request ...
    times=N            ... but only to the first N requests with the same ``key`` (default: forever).
    retry_after=S      send ``Retry-After: S`` with the failure (S as given, e.g. 1 or 0.2).
    retry_after_ms=MS  send ``retry-after-ms: MS`` with the failure.
    error_after=N      after N tokens send ``data: {"error": {...}}`` (HTTP 200), then [DONE].
                       Non-streaming: HTTP 500.
    drop_after=N       after N tokens close the connection abruptly (no finish chunk, no [DONE], an
                       incomplete chunked body). Non-streaming: the body is cut short.
    eof_after=N        after N tokens end the response cleanly but without finish chunk or [DONE]
                       (a truncated reply, as some servers do).
    malformed_after=N  after N tokens send one broken JSON data line, then carry on.
    no_usage=1         never send usage (any dialect, streaming or not).
    require_key=X      401 (OpenAI's invalid_api_key) unless ``Authorization: Bearer X``.
    dialect=D          where usage goes and other quirks of real providers:
                       openai      usage in a final ``choices: []`` chunk when
                                   stream_options.include_usage, ``"usage": null`` on other chunks
                       deepinfra   usage with ``estimated_cost`` on the finish chunk (always)
                       groq        usage in ``x_groq.usage`` on the finish chunk (always)
                       vllm        cumulative usage on every chunk plus the final usage chunk (with
                                   include_usage); 400 when stream_options comes with stream=false;
                                   flat error bodies ``{"object": "error", "message", "code": 400}``
                       openrouter  ``: OPENROUTER PROCESSING`` comments, usage with ``cost`` in a
                                   final chunk (always), ``provider`` on chunks
                       llamacpp    first chunk ``{"role": "assistant", "content": null}``, ``timings``
                                   on the finish chunk, usage chunk with include_usage
    echo=1             the answer is the last user message (or the prompt) verbatim.
    charge_factor=F    /v1/generation reports the reply's cost × F (default 1): a provider whose account
                       differs from its prices, for reconciliation tests.
    key=K              names the state of ``times`` and the counters of /_stats (default: no key;
                       ``times`` then counts per distinct <opts> string).

Request parameters honoured: ``model``, ``messages`` / ``prompt``, ``stream``,
``stream_options.include_usage``, ``max_tokens`` / ``max_completion_tokens`` (finish_reason
``length``), ``stop`` (string or up to 4 strings; finish_reason ``stop``), ``seed``; ``n`` must be 1.
Others (temperature, top_p, ...) are accepted and ignored. Unknown models answer 404, a chat model on
/v1/completions (or the reverse) 404, a prompt over the context length 400.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, fields, replace
from functools import lru_cache
from typing import Any
from urllib.parse import parse_qs

from conversations.catalog.localdev import DEV_MODELS
from conversations.upstream.tokens import count_prompt_tokens, count_tokens

from . import replies

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

DIALECTS = ("openai", "deepinfra", "groq", "vllm", "openrouter", "llamacpp")
OPTIONS_ENV = "DEVUPSTREAM_OPTIONS"
MAX_BODY = 8 * 1024 * 1024
SERVED_KEPT = 10_000  # replies /v1/generation still knows (the oldest are forgotten first)
KEEPALIVE_EVERY = 1.0  # seconds between OpenRouter-style comments while the first token is pending


@dataclass(frozen=True, slots=True)
class DevModel:
    id: str
    api: str  # "chat" or "completions"
    reasoning: bool = False
    describes: bool = False  # answers with what it received (images, text parts) instead of prose
    # Not in /v1/models: an import of the dev upstream's models brings the general ones, and `bootstrap`
    # registers this one itself, with `vision = true`.
    listed: bool = True
    context_length: int = 32768
    input_price: float = 0.0  # USD per 1M tokens, for the dialects that report a cost
    output_price: float = 0.0


MODELS: dict[str, DevModel] = {
    m.id: DevModel(
        m.id,
        m.api,
        reasoning=m.reasoning,
        context_length=m.context_length,
        input_price=float(m.input_price),
        output_price=float(m.output_price),
        describes=m.vision,
        listed=m.listed,
    )
    for m in DEV_MODELS  # the one list `bootstrap` registers too
}


@dataclass(frozen=True, slots=True)
class Options:
    """The switches (see the module docstring); server defaults, overridden per request by /s/<opts>/."""

    delay: float = 0.0
    first_delay: float = 0.0
    tokens: int | None = None
    fail: int | None = None
    times: int | None = None
    retry_after: str | None = None
    retry_after_ms: int | None = None
    error_after: int | None = None
    drop_after: int | None = None
    eof_after: int | None = None
    malformed_after: int | None = None
    no_usage: bool = False
    require_key: str | None = None
    dialect: str = "openai"
    echo: bool = False
    key: str | None = None
    charge_factor: float = 1.0


def _nonneg_float(v: str) -> float:
    x = float(v)
    if not x >= 0 or x == float("inf"):
        raise ValueError("must be a finite number >= 0")
    return x


def _nonneg_int(v: str) -> int:
    x = int(v)
    if x < 0:
        raise ValueError("must be >= 0")
    return x


def _status(v: str) -> int:
    x = int(v)
    if not 400 <= x <= 599:
        raise ValueError("must be an HTTP error status (400-599)")
    return x


def _flag(v: str) -> bool:
    if v.lower() in ("1", "true", "yes", "on"):
        return True
    if v.lower() in ("0", "false", "no", "off"):
        return False
    raise ValueError("must be 1 or 0")


def _dialect(v: str) -> str:
    if v not in DIALECTS:
        raise ValueError(f"must be one of {', '.join(DIALECTS)}")
    return v


def _retry_after(v: str) -> str:
    _nonneg_float(v)
    return v


_PARSERS: dict[str, Callable[[str], Any]] = {
    "delay": _nonneg_float,
    "first_delay": _nonneg_float,
    "tokens": _nonneg_int,
    "fail": _status,
    "times": _nonneg_int,
    "retry_after": _retry_after,
    "retry_after_ms": _nonneg_int,
    "error_after": _nonneg_int,
    "drop_after": _nonneg_int,
    "eof_after": _nonneg_int,
    "malformed_after": _nonneg_int,
    "no_usage": _flag,
    "require_key": str,
    "dialect": _dialect,
    "echo": _flag,
    "key": str,
    "charge_factor": _nonneg_float,
}
OPTION_NAMES = tuple(f.name for f in fields(Options))
assert set(_PARSERS) == set(OPTION_NAMES)


@lru_cache(maxsize=1024)
def parse_options(text: str) -> dict[str, Any]:
    """Parse ``key=value,key=value`` into typed option values; ValueError names the bad switch."""
    values: dict[str, Any] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, sep, raw = item.partition("=")
        name = name.strip()
        if not sep or name not in _PARSERS:
            raise ValueError(f"unknown switch {item!r}; known: {', '.join(OPTION_NAMES)}")
        try:
            values[name] = _PARSERS[name](raw.strip())
        except ValueError as exc:
            raise ValueError(f"bad value for {name}: {raw!r} ({exc})") from None
    return values


def coerce_options(values: dict[str, Any]) -> dict[str, Any]:
    """Typed option values from Python keyword arguments (numbers, bools or strings)."""
    out: dict[str, Any] = {}
    for name, value in values.items():
        if name not in _PARSERS:
            raise ValueError(f"unknown switch {name!r}; known: {', '.join(OPTION_NAMES)}")
        if value is None:
            out[name] = None
        elif isinstance(value, bool):
            out[name] = value if name in ("no_usage", "echo") else _PARSERS[name](str(int(value)))
        else:
            out[name] = _PARSERS[name](str(value))
    return out


def options_from_env() -> dict[str, Any]:
    return parse_options(os.environ.get(OPTIONS_ENV, ""))


# --- errors ----------------------------------------------------------------------------------

_ERRORS: dict[int, tuple[str, str, str | None]] = {
    400: (
        "Invalid request: the dev upstream was asked to fail with 400 (switch fail=400).",
        "invalid_request_error",
        "invalid_request",
    ),
    401: (
        "Incorrect API key provided. You can find your API key in your account settings.",
        "invalid_request_error",
        "invalid_api_key",
    ),
    402: (
        "Insufficient credits. Add more credits to your account to continue.",
        "insufficient_quota",
        "insufficient_credits",
    ),
    403: ("You are not allowed to access this model.", "permission_error", "forbidden"),
    404: (
        "The model does not exist or you do not have access to it.",
        "invalid_request_error",
        "model_not_found",
    ),
    408: ("Request timed out.", "timeout", "request_timeout"),
    409: ("Conflict: a concurrent request is in progress.", "invalid_request_error", "conflict"),
    429: ("Rate limit reached for requests. Please try again later.", "requests", "rate_limit_exceeded"),
    500: ("The server had an error while processing your request.", "server_error", None),
    502: ("Bad gateway: the model backend did not answer.", "server_error", "bad_gateway"),
    503: ("The model is currently overloaded. Please try again later.", "server_error", "overloaded"),
}


class HTTPError(Exception):
    def __init__(
        self,
        status: int,
        message: str | None = None,
        *,
        code: str | None = None,
        type_: str | None = None,
        param: str | None = None,
        headers: tuple[tuple[bytes, bytes], ...] = (),
    ) -> None:
        default_message, default_type, default_code = _ERRORS.get(
            status,
            (
                f"The dev upstream answered {status}.",
                "server_error" if status >= 500 else "invalid_request_error",
                None,
            ),
        )
        super().__init__(message or default_message)
        self.status = status
        self.message = message or default_message
        self.type = type_ or default_type
        self.code = code if code is not None else default_code
        self.param = param
        self.headers = headers

    def body(self, dialect: str) -> dict[str, Any]:
        if dialect == "vllm":  # older vLLM: a flat error object with an integer code
            return {
                "object": "error",
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.status,
            }
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


class _DropConnection(Exception):
    """Raised after the response started: uvicorn then closes the socket without ending the body."""


class _ClientGone(Exception):
    """The client left while we were reading its request."""


class _QuietDrops(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and record.exc_info[0] is _DropConnection)


# --- state -----------------------------------------------------------------------------------


@dataclass(slots=True)
class Counters:
    requests: int = 0  # /v1 requests received (models included)
    completed: int = 0  # responses sent to the end (errors and error_after/eof_after included)
    disconnected: int = 0  # the client went away before the response was complete
    failed: int = 0  # answered with an HTTP error status
    dropped: int = 0  # closed abruptly on purpose (drop_after)
    active: int = 0  # responses in progress now

    def as_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True, slots=True)
class Plan:
    """Everything a response will carry, decided before the first byte."""

    reasoning: replies.Reply
    answer: replies.Reply
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int
    reasoning_tokens: int

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@lru_cache(maxsize=4096)
def _prompt_tokens(api: str, key: str) -> int:
    data = json.loads(key)
    return count_prompt_tokens(data) if api == "chat" else count_tokens(data)


@lru_cache(maxsize=4096)
def _text_tokens(reply: replies.Reply) -> int:
    return count_tokens(reply.text)


def _cut_to_budget(reply: replies.Reply, budget: int) -> replies.Reply:
    """The longest prefix of the reply whose token count fits the budget."""
    counts = replies.piece_token_counts(reply)
    k, used = 0, 0
    while k < len(counts) and used + counts[k] <= budget:
        used += counts[k]
        k += 1
    # Per-piece counts are an upper bound (BPE may merge across pieces): grow, then check exactly.
    while k < len(counts) and count_tokens("".join(reply.pieces[: k + 1])) <= budget:
        k += 1
    while k and count_tokens("".join(reply.pieces[:k])) > budget:
        k -= 1
    return replies.make_reply(reply.pieces[:k])


def _cut_at_stop(reply: replies.Reply, stops: list[str]) -> replies.Reply | None:
    text = reply.text
    positions = [i for i in (text.find(s) for s in stops if s) if i >= 0]
    if not positions:
        return None
    end, pieces, at = min(positions), [], 0
    for piece in reply.pieces:
        if at + len(piece) > end:
            if end > at:
                pieces.append(piece[: end - at])
            break
        pieces.append(piece)
        at += len(piece)
    return replies.make_reply(pieces)


def make_plan(api: str, body: dict[str, Any], model: DevModel, opts: Options) -> Plan:
    """Validate the generation parameters and decide the reply (400 via HTTPError when invalid)."""
    if api == "chat":
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages or not all(isinstance(m, dict) for m in messages):
            raise HTTPError(400, "'messages' must be a non-empty array of message objects.", param="messages")
        prompt_key = json.dumps(messages, sort_keys=True, ensure_ascii=False)
        prompt = replies.prompt_text(messages)
    else:
        raw_prompt = body.get("prompt")
        if isinstance(raw_prompt, list) and len(raw_prompt) == 1 and isinstance(raw_prompt[0], str):
            raw_prompt = raw_prompt[0]
        if not isinstance(raw_prompt, str):
            raise HTTPError(400, "'prompt' must be a string.", param="prompt")
        prompt_key = json.dumps(raw_prompt, ensure_ascii=False)
        prompt = raw_prompt

    n = body.get("n", 1)
    if n not in (1, None):
        raise HTTPError(400, "The dev upstream supports only n=1.", param="n")
    max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
    if max_tokens is not None and (
        not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1
    ):
        raise HTTPError(400, "'max_tokens' must be an integer >= 1.", param="max_tokens")
    stop = body.get("stop")
    stops = [stop] if isinstance(stop, str) else stop
    if stops is not None and (
        not isinstance(stops, list) or len(stops) > 4 or not all(isinstance(s, str) for s in stops)
    ):
        raise HTTPError(400, "'stop' must be a string or an array of up to 4 strings.", param="stop")

    prompt_tokens = _prompt_tokens(api, prompt_key)
    if prompt_tokens + (max_tokens or 0) > model.context_length:
        raise HTTPError(
            400,
            f"This model's maximum context length is {model.context_length} tokens. However, you "
            f"requested {prompt_tokens + (max_tokens or 0)} tokens ({prompt_tokens} in the messages, "
            f"{max_tokens or 0} in the completion). Please reduce the length of the messages or completion.",
            param="messages",
            code="context_length_exceeded",
        )

    if api == "chat" and model.describes:
        reasoning, answer = replies.make_reply(()), replies.echo(replies.describe_received(body["messages"]))
    elif opts.echo:
        reasoning, answer = replies.make_reply(()), replies.echo(prompt)
        if opts.tokens is not None:
            answer = replies.make_reply(answer.pieces[: opts.tokens])
    else:
        seed = replies.seed_of(model.id, prompt_key, body.get("seed"))
        reasoning, answer = replies.generate(
            seed, prompt, reasoning=model.reasoning, markdown=api == "chat", length=opts.tokens
        )

    finish = "stop"
    if stops and (cut := _cut_at_stop(answer, stops)) is not None:
        answer = cut
    if max_tokens is not None:
        reasoning_tokens = _text_tokens(reasoning)
        if reasoning_tokens >= max_tokens:
            reasoning, answer = _cut_to_budget(reasoning, max_tokens), replies.make_reply(())
            finish = "length"
        elif reasoning_tokens + _text_tokens(answer) > max_tokens:
            answer, finish = _cut_to_budget(answer, max_tokens - reasoning_tokens), "length"
    reasoning_tokens = _text_tokens(reasoning)
    return Plan(
        reasoning, answer, finish, prompt_tokens, reasoning_tokens + _text_tokens(answer), reasoning_tokens
    )


# --- the ASGI app ------------------------------------------------------------------------------

_JSON = (b"content-type", b"application/json")
_SSE_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]


def _dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"))


RECEIVED_KEPT = 50  # prompts kept per key for /_received


class DevUpstream:
    """The ASGI application. ``DevUpstream(delay=0.02, dialect="groq")`` sets server-wide defaults."""

    def __init__(self, **defaults: Any) -> None:
        self.defaults = Options(**coerce_options(defaults))
        self.counters: dict[str, Counters] = {}
        self.received: dict[str, deque[Any]] = {}  # key -> the prompts of its last RECEIVED_KEPT requests
        self._failures: dict[str, int] = {}
        self.served: OrderedDict[str, dict[str, Any]] = OrderedDict()  # reply id -> /v1/generation's data
        logging.getLogger("uvicorn.error").addFilter(_QUIET_DROPS)

    # Entry point.
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        path: str = scope["path"]
        method: str = scope["method"]
        opts, dialect = self.defaults, self.defaults.dialect
        try:
            if path.startswith("/s/"):
                raw, _, rest = path[3:].partition("/")
                path = "/" + rest
                try:
                    opts = replace(self.defaults, **parse_options(raw))  # the server decoded %XX already
                except ValueError as exc:
                    raise HTTPError(400, f"dev upstream: {exc}", code="bad_switch") from None
                dialect = opts.dialect
            if path == "/_stats" and method == "GET":
                await self._stats(scope, send)
            elif path == "/_received" and method == "GET":
                key = parse_qs(scope.get("query_string", b"").decode()).get("key", [""])[0]
                await _send_json(send, 200, list(self.received.get(key, ())))
            elif path in ("/healthz", "/_health") and method == "GET":
                await _send_bytes(send, 200, b"ok", (b"content-type", b"text/plain"))
            elif path.startswith("/v1/"):
                await self._v1(scope, receive, send, path[3:], method, opts)
            else:
                raise HTTPError(404, f"No route for {method} {path}.", code="not_found")
        except HTTPError as exc:
            await _send_json(send, exc.status, exc.body(dialect), *exc.headers)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return

    def counters_for(self, key: str | None) -> Counters:
        k = key or ""
        counters = self.counters.get(k)
        if counters is None:
            counters = self.counters[k] = Counters()
        return counters

    async def _stats(self, scope: Scope, send: Send) -> None:
        query = parse_qs(scope.get("query_string", b"").decode())
        if "key" in query:
            counters = self.counters.get(query["key"][0], Counters())
            await _send_json(send, 200, counters.as_dict())
            return
        total = Counters()
        for c in self.counters.values():
            for f in fields(total):
                setattr(total, f.name, getattr(total, f.name) + getattr(c, f.name))
        await _send_json(send, 200, total.as_dict())

    async def _v1(
        self, scope: Scope, receive: Receive, send: Send, path: str, method: str, opts: Options
    ) -> None:
        counters = self.counters_for(opts.key)
        counters.requests += 1
        try:
            await self._v1_checked(scope, receive, send, path, method, opts, counters)
        except HTTPError:
            counters.failed += 1
            counters.completed += 1
            raise
        except _ClientGone:
            counters.disconnected += 1

    async def _v1_checked(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        path: str,
        method: str,
        opts: Options,
        counters: Counters,
    ) -> None:
        api = {"/chat/completions": "chat", "/completions": "completions"}.get(path)
        if path == "/generation" and method == "GET":
            if opts.require_key is not None:
                auth = dict(scope["headers"]).get(b"authorization", b"").decode("latin-1")
                if auth != f"Bearer {opts.require_key}":
                    raise HTTPError(401)
            await self._generation(scope, send)
            counters.completed += 1
            return
        if api is None and not path.startswith("/models"):
            raise HTTPError(404, f"No route for {method} /v1{path}.", code="not_found")
        if method != ("GET" if api is None else "POST"):
            raise HTTPError(405, f"Method {method} is not allowed on /v1{path}.", code="method_not_allowed")
        body_bytes = await _read_body(receive) if method == "POST" else b""

        if opts.require_key is not None:
            auth = dict(scope["headers"]).get(b"authorization", b"").decode("latin-1")
            if auth != f"Bearer {opts.require_key}":
                raise HTTPError(401)
        if opts.fail is not None and self._should_fail(opts):
            headers: list[tuple[bytes, bytes]] = []
            if opts.retry_after is not None:
                headers.append((b"retry-after", opts.retry_after.encode()))
            if opts.retry_after_ms is not None:
                headers.append((b"retry-after-ms", str(opts.retry_after_ms).encode()))
            raise HTTPError(opts.fail, headers=tuple(headers))

        if api is None:
            await self._models(send, path)
            counters.completed += 1
            return

        try:
            body = json.loads(body_bytes)
        except ValueError:
            raise HTTPError(400, "We could not parse the JSON body of your request.") from None
        if not isinstance(body, dict):
            raise HTTPError(400, "The request body must be a JSON object.")
        if opts.key:
            kept = self.received.setdefault(opts.key, deque(maxlen=RECEIVED_KEPT))
            kept.append(body.get("messages") if api == "chat" else body.get("prompt"))
        model = MODELS.get(body.get("model"))  # type: ignore[arg-type]
        if model is None:
            raise HTTPError(404, f"The model `{body.get('model')}` does not exist.", param="model")
        if model.api != api:
            raise HTTPError(
                404,
                f"{model.id} is a {model.api} model and is not supported on /v1{path}.",
                param="model",
                code="model_not_supported",
            )
        stream = bool(body.get("stream"))
        stream_options = body.get("stream_options")
        if opts.dialect == "vllm" and stream_options is not None and not stream:
            raise HTTPError(
                400, "Stream options can only be defined when `stream=True`.", param="stream_options"
            )
        plan = make_plan(api, body, model, opts)
        include_usage = bool(isinstance(stream_options, dict) and stream_options.get("include_usage"))
        writer = _Writer(api, model, plan, opts, include_usage, self._served)
        respond = writer.stream if stream else writer.whole
        await self._watched(receive, counters, lambda: respond(send))

    def _served(self, data: dict[str, Any]) -> None:
        self.served[data["id"]] = data
        while len(self.served) > SERVED_KEPT:
            self.served.popitem(last=False)

    async def _generation(self, scope: Scope, send: Send) -> None:
        """OpenRouter's GET /api/v1/generation?id=...: the reply's tokens and cost as the provider bills it."""
        reply_id = parse_qs(scope.get("query_string", b"").decode()).get("id", [""])[0]
        if not reply_id:
            raise HTTPError(400, "The query parameter `id` is required.", param="id")
        data = self.served.get(reply_id)
        if data is None:
            raise HTTPError(404, f"Generation {reply_id} not found.", code="not_found")
        await _send_json(send, 200, {"data": data})

    def _should_fail(self, opts: Options) -> bool:
        if opts.times is None:
            return True
        state_key = opts.key if opts.key is not None else repr(opts)
        served = self._failures.get(state_key, 0)
        if served >= opts.times:
            return False
        self._failures[state_key] = served + 1
        return True

    async def _models(self, send: Send, path: str) -> None:
        created = 1_700_000_000

        def describe(m: DevModel) -> dict[str, Any]:
            return {
                "id": m.id,
                "object": "model",
                "created": created,
                "owned_by": "chatweb-dev",
                "context_length": m.context_length,
            }

        if path in ("/models", "/models/"):
            await _send_json(send, 200, {"object": "list", "data": [describe(m) for m in MODELS.values() if m.listed]})
            return
        model = MODELS.get(path.removeprefix("/models/"))
        if model is None:
            raise HTTPError(404, param="model")
        await _send_json(send, 200, describe(model))

    async def _watched(
        self, receive: Receive, counters: Counters, respond: Callable[[], Awaitable[None]]
    ) -> None:
        """Run a response while watching for the client going away; count how it ended."""
        task = asyncio.current_task()
        assert task is not None
        state = {"finished": False, "gone": False}

        async def watch() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            if not state["finished"]:
                state["gone"] = True
                counters.disconnected += 1
                task.cancel()

        watcher = asyncio.create_task(watch())
        counters.active += 1
        try:
            await respond()
            state["finished"] = True
            counters.completed += 1
        except _DropConnection:
            state["finished"] = True
            counters.dropped += 1
            raise
        except asyncio.CancelledError:
            if not state["gone"]:
                raise
            task.uncancel()  # our own cancel: the client left, nothing to report
        finally:
            state["finished"] = True
            counters.active -= 1
            watcher.cancel()


_QUIET_DROPS = _QuietDrops()


async def _read_body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _ClientGone
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY:
            raise HTTPError(413, "Request body too large.")
        chunks.append(chunk)
        if not message.get("more_body"):
            return b"".join(chunks)


async def _send_bytes(send: Send, status: int, body: bytes, *headers: tuple[bytes, bytes]) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [*headers, (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def _send_json(send: Send, status: int, obj: Any, *headers: tuple[bytes, bytes]) -> None:
    await _send_bytes(send, status, json.dumps(obj).encode(), _JSON, *headers)


# --- response writing ----------------------------------------------------------------------------

_PROCESSING = b": OPENROUTER PROCESSING\n\n"
_PIECE = '"@@piece@@"'  # placeholders json.dumps leaves alone, replaced by text per token
_USAGE = '"@@usage@@"'


class _Writer:
    """Turns a Plan into the bytes of one response in the requested dialect."""

    def __init__(
        self, api: str, model: DevModel, plan: Plan, opts: Options, include_usage: bool,
        served: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        self.api, self.model, self.plan, self.opts = api, model, plan, opts
        self.dialect = opts.dialect
        self.include_usage = include_usage
        self.id = ("chatcmpl-" if api == "chat" else "cmpl-") + uuid.uuid4().hex[:24]
        self.created = int(time.time())
        self._on_served = served
        self.pieces_sent = 0

    def _cost(self, completion_tokens: int) -> float:
        return (self.plan.prompt_tokens * self.model.input_price + completion_tokens * self.model.output_price) / 1e6

    def _served(self, pieces_sent: int | None) -> None:
        """Remember the reply for /v1/generation: all of it, or (stopped, cut) the tokens of the pieces sent."""
        if self._on_served is None:
            return
        p = self.plan
        if pieces_sent is None:
            completion = p.completion_tokens
        else:
            counts = replies.piece_token_counts(p.reasoning) + replies.piece_token_counts(p.answer)
            completion = min(sum(counts[:pieces_sent]), p.completion_tokens)
        self._on_served({
            "id": self.id, "model": self.model.id, "created_at": time.strftime(
                "%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.created)
            ),
            "tokens_prompt": p.prompt_tokens, "tokens_completion": completion,
            "native_tokens_prompt": p.prompt_tokens, "native_tokens_completion": completion,
            "total_cost": round(self._cost(completion) * self.opts.charge_factor, 10),
            "provider_name": "DevProvider", "streamed": True,
        })

    # Shared pieces of every chunk.
    def _envelope(self) -> dict[str, Any]:
        env: dict[str, Any] = {
            "id": self.id,
            "object": "chat.completion.chunk" if self.api == "chat" else "text_completion",
            "created": self.created,
            "model": self.model.id,
        }
        if self.dialect == "openai":
            env["system_fingerprint"] = "fp_dev"
        elif self.dialect == "openrouter":
            env["provider"] = "DevProvider"
        return env

    def _usage(self, completion_tokens: int | None = None) -> dict[str, Any]:
        p = self.plan
        c = p.completion_tokens if completion_tokens is None else completion_tokens
        usage: dict[str, Any] = {
            "prompt_tokens": p.prompt_tokens,
            "completion_tokens": c,
            "total_tokens": p.prompt_tokens + c,
        }
        cost = self._cost(c)
        if self.dialect == "openai":
            usage["prompt_tokens_details"] = {"cached_tokens": 0}
            usage["completion_tokens_details"] = {"reasoning_tokens": p.reasoning_tokens}
        elif self.dialect == "deepinfra":
            usage["estimated_cost"] = round(cost, 10)
        elif self.dialect == "openrouter":
            usage["cost"] = round(cost, 10)
            usage["is_byok"] = False
        elif self.dialect == "groq":
            usage.update(queue_time=0.01, prompt_time=0.001, completion_time=0.1, total_time=0.111)
        return usage

    def _choice(self, delta: dict[str, Any] | str, finish: str | None) -> dict[str, Any]:
        if self.api == "chat":
            return {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return {"index": 0, "text": delta, "logprobs": None, "finish_reason": finish}

    @staticmethod
    def _event(obj: dict[str, Any]) -> str:
        return f"data: {_dumps(obj)}\n\n"

    def _token_template(self, field_name: str) -> tuple[str, str, str]:
        """(prefix, middle, suffix) around the JSON piece and, for vLLM, the cumulative usage."""
        env = self._envelope()
        delta: Any = {field_name: "@@piece@@"} if self.api == "chat" else "@@piece@@"
        env["choices"] = [self._choice(delta, None)]
        if self.dialect == "vllm" and self.include_usage and not self.opts.no_usage:
            env["usage"] = "@@usage@@"
        elif self.dialect == "openai" and self.include_usage and not self.opts.no_usage:
            env["usage"] = None
        text = self._event(env)
        before, _, after = text.partition(_PIECE)
        middle, _, suffix = after.partition(_USAGE)
        return before, middle, suffix

    def _stream_events(self) -> tuple[list[str], list[str], list[str]]:
        """(head, tokens, tail) as SSE text: the role chunk, one event per piece, finish/usage/[DONE]."""
        p, opts, dialect = self.plan, self.opts, self.dialect
        send_usage = not opts.no_usage
        head: list[str] = []
        if self.api == "chat":
            env = self._envelope()
            role: dict[str, Any] = {"role": "assistant", "content": None if dialect == "llamacpp" else ""}
            if dialect == "groq":
                env["x_groq"] = {"id": "req_" + self.id[-20:]}
            env["choices"] = [self._choice(role, None)]
            if dialect == "vllm" and self.include_usage and send_usage:
                env["usage"] = self._usage(0)
            elif dialect == "openai" and self.include_usage and send_usage:
                env["usage"] = None
            head.append(self._event(env))

        tokens: list[str] = []
        cumulative = 0
        vllm_usage = dialect == "vllm" and self.include_usage and send_usage
        counts: tuple[int, ...] = ()
        for reply, field_name in ((p.reasoning, "reasoning_content"), (p.answer, "content")):
            if not reply.pieces:
                continue
            before, middle, suffix = self._token_template(field_name)
            if vllm_usage:
                counts = replies.piece_token_counts(reply)
                for enc, n in zip(reply.encoded, counts, strict=True):
                    # Per-piece counts may overshoot the exact total: never report more than it.
                    cumulative = min(cumulative + n, p.completion_tokens)
                    tokens.append(before + enc + middle + _dumps(self._usage(cumulative)) + suffix)
            else:
                tokens.extend(before + enc + middle + suffix for enc in reply.encoded)

        tail: list[str] = []
        env = self._envelope()
        env["choices"] = [self._choice({} if self.api == "chat" else "", p.finish_reason)]
        if send_usage and dialect in ("deepinfra", "vllm") and (dialect == "deepinfra" or self.include_usage):
            env["usage"] = self._usage()
        elif dialect == "groq":
            env["x_groq"] = {"id": "req_" + self.id[-20:], **({"usage": self._usage()} if send_usage else {})}
        elif dialect == "llamacpp":
            env["timings"] = {"prompt_n": p.prompt_tokens, "predicted_n": p.completion_tokens}
        elif dialect == "openai" and self.include_usage and send_usage:
            env["usage"] = None
        tail.append(self._event(env))
        if send_usage and (
            dialect == "openrouter" or (self.include_usage and dialect in ("openai", "vllm", "llamacpp"))
        ):
            env = self._envelope()
            env["choices"] = []
            env["usage"] = self._usage()
            tail.append(self._event(env))
        tail.append("data: [DONE]\n\n")
        return head, tokens, tail

    def _mid_stream_error(self) -> str:
        error = {
            "error": {
                "message": "The model backend failed while generating (switch error_after).",
                "type": "server_error",
                "code": 500,
            }
        }
        if self.dialect == "openrouter":
            env = self._envelope()
            env.update(error)
            env["choices"] = [self._choice({"content": ""} if self.api == "chat" else "", "error")]
            return self._event(env)
        return self._event(error)

    async def stream(self, send: Send) -> None:
        opts = self.opts
        head, tokens, tail = self._stream_events()
        loop = asyncio.get_running_loop()

        if self.dialect == "openrouter":
            await send({"type": "http.response.start", "status": 200, "headers": _SSE_HEADERS})
            await send({"type": "http.response.body", "body": _PROCESSING, "more_body": True})
            first_at = loop.time() + opts.first_delay
            while (left := first_at - loop.time()) > 0:
                await asyncio.sleep(min(left, KEEPALIVE_EVERY))
                if first_at - loop.time() > 0:
                    await send({"type": "http.response.body", "body": _PROCESSING, "more_body": True})
        else:
            if opts.first_delay:
                await asyncio.sleep(opts.first_delay)
            await send({"type": "http.response.start", "status": 200, "headers": _SSE_HEADERS})

        # Which abnormal ending, after how many tokens (the earliest switch wins).
        endings = [
            (n, kind)
            for n, kind in ((opts.error_after, "error"), (opts.drop_after, "drop"), (opts.eof_after, "eof"))
            if n is not None
        ]
        stop_at, ending = min(endings) if endings else (len(tokens), "normal")
        stop_at = min(stop_at, len(tokens))
        malformed_at = opts.malformed_after
        # A data line cut inside a JSON string: the blank line ends the event there.
        broken = 'data: {"id": "' + self.id + '", "choices": [{"index": 0, "delta": {"content": "unfinis\n\n'

        batch: list[str] = list(head)
        start, delay = loop.time(), opts.delay
        self.pieces_sent = 0  # what a stopped or cut reply is billed for
        try:
            for i in range(stop_at):
                if delay:
                    wait = start + i * delay - loop.time()
                    if wait > 0:
                        # Tokens that came due while we were late go out together in one write.
                        if batch:
                            await send(
                                {"type": "http.response.body", "body": "".join(batch).encode(), "more_body": True}
                            )
                            batch = []
                            self.pieces_sent = i
                        await asyncio.sleep(wait)
                if i == malformed_at:
                    batch.append(broken)
                batch.append(tokens[i])
            if malformed_at is not None and malformed_at >= stop_at:
                batch.append(broken)

            if ending == "drop":
                if batch:
                    await send({"type": "http.response.body", "body": "".join(batch).encode(), "more_body": True})
                self.pieces_sent = stop_at
                raise _DropConnection
            if ending == "error":
                batch.append(self._mid_stream_error())
                batch.append("data: [DONE]\n\n")
            elif ending == "normal":
                batch.extend(tail)
            await send({"type": "http.response.body", "body": "".join(batch).encode(), "more_body": False})
            self.pieces_sent = stop_at
        finally:
            whole = ending == "normal" and self.pieces_sent == len(tokens)
            self._served(None if whole else self.pieces_sent)

    async def whole(self, send: Send) -> None:
        """A non-streaming answer, after the time streaming would have taken."""
        p, opts = self.plan, self.opts
        n_tokens = len(p.reasoning.pieces) + len(p.answer.pieces)
        wait = opts.first_delay + opts.delay * n_tokens
        if wait:
            await asyncio.sleep(wait)
        if opts.error_after is not None:
            error = HTTPError(500, "The model backend failed while generating (switch error_after).")
            await _send_json(send, 500, error.body(self.dialect))
            return
        if self.api == "chat":
            message: dict[str, Any] = {"role": "assistant", "content": p.answer.text}
            if p.reasoning.pieces:
                message["reasoning_content"] = p.reasoning.text
            choice: dict[str, Any] = {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": p.finish_reason,
            }
        else:
            choice = {"index": 0, "text": p.answer.text, "logprobs": None, "finish_reason": p.finish_reason}
        obj = self._envelope()
        obj["object"] = "chat.completion" if self.api == "chat" else "text_completion"
        obj["choices"] = [choice]
        if not opts.no_usage:
            obj["usage"] = self._usage()
            if self.dialect == "groq":
                obj["x_groq"] = {"id": "req_" + self.id[-20:]}
        body = json.dumps(obj).encode()
        cut = opts.drop_after if opts.drop_after is not None else opts.malformed_after
        if opts.drop_after is not None or opts.malformed_after is not None:
            # Cut the JSON roughly where token N would be; drop: declare the full length, then close.
            cut_at = min(len(body) - 1, 40 + 6 * (cut or 0))
            if opts.drop_after is not None:
                await send(
                    {
                        "type": "http.response.start",
                        "status": 200,
                        "headers": [_JSON, (b"content-length", str(len(body)).encode())],
                    }
                )
                await send({"type": "http.response.body", "body": body[:cut_at], "more_body": True})
                raise _DropConnection
            body = body[:cut_at]
        await _send_bytes(send, 200, body, _JSON)
        self._served(None)


def warm_up() -> None:
    """Load the tokenizer now (about 2 s), not while the first requests wait for it."""
    count_tokens("warm up")


def create_app(**defaults: Any) -> DevUpstream:
    """The ASGI app with server-wide defaults (keyword switches, over ``DEVUPSTREAM_OPTIONS``)."""
    return DevUpstream(**{**options_from_env(), **defaults})
