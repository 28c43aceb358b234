"""Stable error codes for upstream failures, and the mapping from HTTP answers to them."""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Mapping
from datetime import UTC
from email.utils import parsedate_to_datetime
from enum import StrEnum


class ErrorCode(StrEnum):
    UPSTREAM_AUTH = "upstream_auth"  # 401 / 403
    INSUFFICIENT_CREDITS = "insufficient_credits"  # 402
    UPSTREAM_RATE_LIMITED = "upstream_rate_limited"  # 429 after retries
    UPSTREAM_BAD_REQUEST = "upstream_bad_request"  # 400 / 404 / 422, with the provider's message
    UPSTREAM_UNAVAILABLE = "upstream_unavailable"  # 5xx, an answer that is not an API's
    UPSTREAM_UNREACHABLE = "upstream_unreachable"  # no connection: refused, unknown host, TLS, connect timeout
    UPSTREAM_TIMEOUT = "upstream_timeout"
    UPSTREAM_STREAM_BROKEN = "upstream_stream_broken"  # mid-stream error, dropped connection, bad stream


class UpstreamError(Exception):
    """An upstream failure with a stable code; `message` is safe to show to a user (never contains a key)."""

    def __init__(
        self,
        code: ErrorCode | str,
        message: str,
        *,
        status: int | None = None,
        retryable: bool = False,
        retry_after: float | None = None,
        detail: str | None = None,
        sent: bool = True,
    ) -> None:
        super().__init__(message)
        self.code = str(code)
        self.message = message
        self.status = status
        self.retryable = retryable
        self.retry_after = retry_after
        self.detail = detail  # the provider's own words (redacted), for logs and admins
        self.sent = sent  # False: the request never left chatweb (no connection), so nothing can be billed


# --- Turning an upstream's error answer into an UpstreamError ----------------------------------------

_MAX_DETAIL = 500  # characters of a provider's text kept: enough to explain, too little to flood a page
_MAX_RETRY_AFTER = 60.0  # seconds; a longer wait is the user's call, not an automatic retry's

# Key-like strings a provider may echo back ("Incorrect API key provided: sk-abc...xyz").
_SECRET_RE = re.compile(r"(?i)\b(?:bearer\s+\S+|(?:sk|gsk|xai)[-_][A-Za-z0-9_\-*]{6,})")

_USER_MESSAGES = {
    ErrorCode.UPSTREAM_AUTH: "The provider rejected chatweb's API key; an administrator needs to check it.",
    ErrorCode.INSUFFICIENT_CREDITS: "The provider account has run out of credits.",
    ErrorCode.UPSTREAM_RATE_LIMITED: "The provider is receiving too many requests; please try again shortly.",
    ErrorCode.UPSTREAM_BAD_REQUEST: "The provider could not accept this request.",
    ErrorCode.UPSTREAM_UNAVAILABLE: "The provider is unavailable right now; please try again later.",
    ErrorCode.UPSTREAM_UNREACHABLE: (
        "The provider could not be reached: chatweb could not connect to its address. An administrator needs "
        "to check the provider's base URL and the network."
    ),
    ErrorCode.UPSTREAM_TIMEOUT: "The provider took too long to answer; please try again.",
    ErrorCode.UPSTREAM_STREAM_BROKEN: "The provider stopped sending the reply before it was finished.",
}


def user_message(code: ErrorCode | str) -> str:
    """One human sentence for an error code, fit to show to any user."""
    try:
        return _USER_MESSAGES[ErrorCode(code)]
    except ValueError:
        return "Something went wrong while talking to the provider."


def redact(text: str, limit: int = _MAX_DETAIL) -> str:
    """A provider's text made fit to show or log: key-like strings masked, cut to `limit` characters."""
    text = _SECRET_RE.sub("[redacted]", text.strip())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def unreachable(detail: str, *, message: str | None = None) -> UpstreamError:
    """No connection to the provider could be opened (refused, unknown host name, TLS handshake, connect
    timeout, an unusable base URL): the request was never sent, so it is never billed; worth a retry."""
    return UpstreamError(
        ErrorCode.UPSTREAM_UNREACHABLE,
        message or user_message(ErrorCode.UPSTREAM_UNREACHABLE),
        retryable=message is None,
        detail=detail,
        sent=False,
    )


# What an admin should check for each failure, in plain words (the connection test and the import say it).
_ADVICE = {
    ErrorCode.UPSTREAM_UNREACHABLE: (
        "chatweb could not open a connection. Check the base URL (host name, port, http or https), that the "
        "host name resolves (DNS) from the machine chatweb runs on, that the server is running and that no "
        "firewall or proxy is in the way; for https, that its certificate is valid and trusted."
    ),
    ErrorCode.UPSTREAM_AUTH: "The provider refused the API key: check the key stored here and that the account "
    "behind it is active and may use these models.",
    ErrorCode.INSUFFICIENT_CREDITS: "The provider account has no credit left: top it up at the provider.",
    ErrorCode.UPSTREAM_RATE_LIMITED: "The provider is rate-limiting this key: wait a minute, or raise the "
    "account's limits at the provider.",
    ErrorCode.UPSTREAM_BAD_REQUEST: "The provider refused the request itself: check the base URL's path (most "
    "end in /v1) and, for a reply, the model id; the provider's own words are below.",
    ErrorCode.UPSTREAM_UNAVAILABLE: "The provider answered, but with an error or with something that is not an "
    "OpenAI-compatible API: check the base URL's path (most end in /v1) and the provider's status page.",
    ErrorCode.UPSTREAM_TIMEOUT: "The provider accepted the connection but did not answer in time: check the "
    "provider's status, or raise the provider's timeouts here.",
    ErrorCode.UPSTREAM_STREAM_BROKEN: "The connection dropped during the answer: check for a proxy that cuts "
    "long responses, then try again.",
}


def admin_advice(code: ErrorCode | str) -> str:
    """What to check, in plain words, when a connection test or an import fails with this code."""
    try:
        return _ADVICE[ErrorCode(code)]
    except (ValueError, KeyError):
        return "Check the base URL, the network and the API key."


def error_fields(obj: object) -> tuple[str | None, str | None, object]:
    """(message, type, code) from any error shape providers use, or (None, None, None).

    Shapes: `{"error": {"message", "type", "param", "code"}}` (code a string, an int or null),
    `{"error": "text"}`, vLLM's flat `{"object": "error", "message": ...}`, FastAPI's `{"detail": ...}`,
    and a one-element list of those (some gateways wrap the body in a list).
    """
    if isinstance(obj, list) and obj:
        obj = obj[0]
    if not isinstance(obj, dict):
        return None, None, None
    err = obj.get("error")
    if isinstance(err, dict):
        obj = err
    elif isinstance(err, str) and err:
        return err, None, None
    message = obj.get("message")
    if not isinstance(message, str) or not message:
        detail = obj.get("detail")
        message = detail if isinstance(detail, str) and detail else None
    kind = obj.get("type")
    return message, kind if isinstance(kind, str) else None, obj.get("code")


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is None:  # a plain dict is case-sensitive, httpx.Headers is not
        for key, val in headers.items():
            if key.lower() == name:
                return val
    return value


def retry_after_seconds(headers: Mapping[str, str], *, now: float | None = None) -> float | None:
    """The delay the upstream asks for (`retry-after-ms`, then `retry-after` in seconds or as an HTTP
    date), only when 0 < delay <= 60 s; otherwise None and the caller backs off on its own."""
    delay: float | None = None
    raw = _header(headers, "retry-after-ms")
    if raw is not None:
        try:
            delay = float(raw) / 1000
        except ValueError:
            delay = None
    if delay is None:
        raw = _header(headers, "retry-after")
        if raw is None:
            return None
        try:
            delay = float(raw)
        except ValueError:
            try:
                when = parsedate_to_datetime(raw)
            except (TypeError, ValueError, IndexError):
                return None
            if when.tzinfo is None:
                when = when.replace(tzinfo=UTC)
            delay = when.timestamp() - (time.time() if now is None else now)
    if not math.isfinite(delay) or not 0 < delay <= _MAX_RETRY_AFTER:
        return None
    return delay


def error_from_response(
    status: int, headers: Mapping[str, str], body: bytes, *, now: float | None = None
) -> UpstreamError:
    """Map a non-2xx HTTP answer to an UpstreamError.

    Only `upstream_bad_request` shows the provider's own message (it says what to fix: context too
    long, unknown model, ...); the other codes show `user_message(code)`, since their bodies are often
    HTML pages or echo account details. The provider's text is always kept, redacted, in `.detail`.
    """
    text = body.decode("utf-8", "replace")
    try:
        parsed = json.loads(text)
    except ValueError:
        parsed = None
    message, kind, code = error_fields(parsed)
    if message is None and parsed is None and text.strip():
        message = text  # plain text (or an HTML page from a proxy in front of the provider)
    detail = redact(message) if message else None

    retryable = False
    if status in (401, 403):
        ecode = ErrorCode.UPSTREAM_AUTH
    elif status == 402 or (status == 429 and "insufficient_quota" in (code, kind)):
        ecode = ErrorCode.INSUFFICIENT_CREDITS  # OpenAI says "out of quota" with a 429: final all the same
    elif status == 429:
        ecode, retryable = ErrorCode.UPSTREAM_RATE_LIMITED, True
    elif status == 408:
        ecode, retryable = ErrorCode.UPSTREAM_TIMEOUT, True
    elif status == 409 or status >= 500:
        ecode, retryable = ErrorCode.UPSTREAM_UNAVAILABLE, True
    elif 400 <= status < 500:
        ecode = ErrorCode.UPSTREAM_BAD_REQUEST  # 400, 404, 422 and the rarer 4xx (413, 415, ...)
    else:
        ecode = ErrorCode.UPSTREAM_UNAVAILABLE  # a 1xx/3xx here means a misconfigured base URL or proxy

    shown = detail if ecode == ErrorCode.UPSTREAM_BAD_REQUEST and detail else user_message(ecode)
    return UpstreamError(
        ecode,
        shown,
        status=status,
        retryable=retryable,
        retry_after=retry_after_seconds(headers, now=now) if retryable else None,
        detail=detail,
    )
