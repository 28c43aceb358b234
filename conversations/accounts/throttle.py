"""Failure throttling (sign-ins, API keys): failures per account or address in the cache; slowed, then locked.

The schedule for a kind whose limit is N failures (settings CHATWEB_THROTTLE_*): the first N // 2 failures
cost nothing; each further one blocks the key for 2, 4, 8 ... seconds (at most SLOWDOWN_CAP); the N-th locks
it for CHATWEB_THROTTLE_LOCK_SECONDS and starts the count afresh. Failures older than the lock time are
forgotten.

Use::

    wait = throttle.check(throttle.API_ADDRESS, address)   # seconds still blocked; 0: go ahead
    ... on a bad credential:  throttle.fail(throttle.API_ADDRESS, address)   # returns the wait it caused
    ... when it is right:     throttle.clear(kind, key)    # only for account keys (see docs/security.md)
"""

from __future__ import annotations

import hashlib
import ipaddress
import math
import time
from collections.abc import Mapping
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.http import HttpRequest

LOGIN_ACCOUNT = "login-account"  # key: the username as typed (case-folded)
LOGIN_ADDRESS = "login-address"  # key: client_address(request)
API_ADDRESS = "api-address"  # key: client_address(request or scope), failures of Bearer keys

_LIMIT_SETTING = {
    LOGIN_ACCOUNT: "CHATWEB_THROTTLE_ACCOUNT_FAILURES",
    LOGIN_ADDRESS: "CHATWEB_THROTTLE_ADDRESS_FAILURES",
    API_ADDRESS: "CHATWEB_THROTTLE_ADDRESS_FAILURES",
}
SLOWDOWN_CAP = 60  # seconds: the longest pause before the lock


def _now() -> float:
    return time.time()  # one place, so tests can move the clock


def _limit(kind: str) -> int:
    try:
        return max(1, int(getattr(settings, _LIMIT_SETTING[kind])))
    except KeyError:
        raise ValueError(f"unknown throttle kind {kind!r}") from None


def _keys(kind: str, key: str) -> tuple[str, str]:
    _limit(kind)  # refuse unknown kinds
    digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:40]
    base = f"throttle:{kind}:{digest}"
    return f"{base}:failures", f"{base}:until"


def account_key(username: str) -> str:
    """Usernames that differ only in case share one counter."""
    return username.strip().casefold()


def check(kind: str, key: str) -> int:
    """Seconds until `key` may try again (0: it may try now)."""
    until = cache.get(_keys(kind, key)[1])
    if until is None:
        return 0
    return max(0, math.ceil(until - _now()))


def fail(kind: str, key: str) -> int:
    """Count one failure; returns how many seconds `key` is now blocked (0: not blocked)."""
    failures_key, until_key = _keys(kind, key)
    lock = max(1, int(settings.CHATWEB_THROTTLE_LOCK_SECONDS))
    cache.add(failures_key, 0, timeout=lock)
    try:
        failures = cache.incr(failures_key)  # atomic in Redis and in the local-memory cache
    except ValueError:  # expired between add() and incr()
        cache.set(failures_key, 1, timeout=lock)
        failures = 1
    limit = _limit(kind)
    if failures >= limit:
        wait = lock
        cache.delete(failures_key)  # once the lock ends, the schedule starts again
    elif failures > limit // 2:
        wait = min(2 ** (failures - limit // 2), SLOWDOWN_CAP, lock)
    else:
        return 0
    cache.set(until_key, _now() + wait, timeout=wait + 60)
    return wait


def clear(kind: str, key: str) -> None:
    """Forget `key`'s failures and lift its block."""
    cache.delete_many(list(_keys(kind, key)))


def client_address(source: HttpRequest | Mapping[str, Any]) -> str:
    """The client's address from a request or an ASGI scope: REMOTE_ADDR, or, when CHATWEB_TRUSTED_PROXIES = N
    proxies are in front, the X-Forwarded-For hop the outermost of them appended (N-th from the right; hops to
    its left are whatever the client sent). IPv6 clients are grouped by /64, as one host usually holds one."""
    if isinstance(source, HttpRequest):
        remote = source.META.get("REMOTE_ADDR") or ""
        forwarded = source.META.get("HTTP_X_FORWARDED_FOR") or ""
    else:
        client = source.get("client") or ("", 0)
        remote = client[0] or ""
        forwarded = b",".join(
            v for k, v in source.get("headers") or () if k.lower() == b"x-forwarded-for"
        ).decode("latin-1")
    address = remote
    proxies = settings.CHATWEB_TRUSTED_PROXIES
    if proxies > 0 and forwarded:
        hops = [hop.strip() for hop in forwarded.split(",") if hop.strip()]
        if hops:
            address = hops[-proxies] if len(hops) >= proxies else hops[0]
    return _normalise(address)


def _normalise(address: str) -> str:
    try:
        ip = ipaddress.ip_address(address.strip("[]"))
    except ValueError:
        return address[:100] or "unknown"
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


def wait_text(seconds: int) -> str:
    """`15 minutes`, `1 minute`, `4 seconds`: how long a blocked client waits, for messages."""
    if seconds >= 60:
        minutes = math.ceil(seconds / 60)
        return f"{minutes} minute{'s' if minutes != 1 else ''}"
    return f"{seconds} second{'s' if seconds != 1 else ''}"
