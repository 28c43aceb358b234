"""Request headers a provider is given: which can be sent at all, and which carry secrets."""

from __future__ import annotations

import re
from collections.abc import Iterable

import httpx

# RFC 9110 §5.1 token: what a header name may be made of.
_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# RFC 9110 §5.5 field value: visible characters, spaces and tabs inside, obs-text; never CR, LF or NUL.
_VALUE = re.compile(r"[\t\x20-\x7e\x80-\xff]*")

# A header whose name says it authenticates is stored encrypted, never shown, exported or logged.
_SECRET_NAMES = frozenset({"authorization", "proxy-authorization", "cookie", "api-key", "x-api-key"})
_SECRET_WORDS = ("key", "token", "secret", "password", "authorization", "credential", "signature")


def header_problem(name: str, value: str) -> str | None:
    """Why this header cannot be sent as it is (None: it can). Only the name is ever quoted back."""
    if not _NAME.fullmatch(name):
        return f"invalid header name {name[:40]!r}"
    if not _VALUE.fullmatch(value):
        return f"invalid value in header {name!r}"
    return None


def check_headers(headers: Iterable[tuple[str, str]]) -> None:
    """httpx.LocalProtocolError for the first header that would not be sent as one header line."""
    for name, value in headers:
        problem = header_problem(name, value)
        if problem is not None:
            raise httpx.LocalProtocolError(problem)


def is_secret_header(name: str) -> bool:
    """Whether a header's value is a credential: `Authorization`, `api-key`, `X-Api-Key`, or a name with key, token,
    secret, password, credential or signature in it."""
    lowered = name.strip().lower()
    return lowered in _SECRET_NAMES or any(word in lowered for word in _SECRET_WORDS)
