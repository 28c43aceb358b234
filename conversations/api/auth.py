"""Who is calling: `Authorization: Bearer <personal key>` checked in constant time, and the per-key RPM limit.

The rate limit is a sliding window kept in this process's memory: exact within one process, but with N
server processes behind a load balancer a key can make up to N × its limit per minute (each process
counts only what it served). Deployments that need a hard global limit run one process per key's
traffic or put a limit in the reverse proxy.
"""

from __future__ import annotations

import functools
import hmac
import threading
import time
from collections import deque
from datetime import timedelta

from django.db import connection
from django.utils import timezone

from conversations.accounts import throttle
from conversations.errors import AddressBlocked, InvalidApiKey, RateLimited
from conversations.models import ApiKey, User
from conversations.rows import RowObjects, select_columns
from conversations.usage.budgets import budgets_apply_sql

MAX_KEY_LENGTH = 200
LAST_USED_EVERY = timedelta(minutes=1)  # last_used_at is written at most this often per key
WINDOW_SECONDS = 60.0

_DUMMY_HASH = ApiKey.hash("cw-not-a-key")


def bearer_token(header: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header (scheme case-insensitive), else None."""
    if not header:
        return None
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return None
    return token


def api_key_authenticate(authorization: str | None, *, address: str | None = None) -> ApiKey:
    """`check_api_key`, then the key's use recorded (`api_key_touch`): for calls that are no admission."""
    key = check_api_key(authorization=authorization, address=address)
    api_key_touch(key=key)
    return key


def check_api_key(*, authorization: str | None, address: str | None = None) -> ApiKey:
    """The active key (with its user loaded) that the header names, or InvalidApiKey (AddressBlocked while the
    address is blocked). Reads only, besides counting a wrong key against the address.

    The key row is found by its public prefix, then the SHA-256 of the presented key is compared with the
    stored hash by hmac.compare_digest, so the comparison takes the same time wherever they differ.
    With the client's `address`, wrong keys are throttled per address (conversations/accounts/throttle.py, as
    sign-ins are): while the address is blocked every request from it is answered 429, key unchecked.
    """
    if address is not None:
        wait = throttle.check(throttle.API_ADDRESS, address)
        if wait:
            raise AddressBlocked(wait=wait)
    raw = bearer_token(authorization)
    if raw is None:
        raise InvalidApiKey(
            "You didn't provide an API key. Send it in the Authorization header: "
            "`Authorization: Bearer <key>`; create one on the /settings/ page."
        )
    key = None
    if len(raw) <= MAX_KEY_LENGTH and raw.startswith(ApiKey.PREFIX):
        key = _key_by_prefix(raw[:12])
    presented = ApiKey.hash(raw[:MAX_KEY_LENGTH])
    if not hmac.compare_digest(key.hashed if key else _DUMMY_HASH, presented) or key is None:
        if address is not None:
            throttle.fail(throttle.API_ADDRESS, address)
        raise InvalidApiKey("Incorrect API key provided. You can create a key on the /settings/ page.")
    if key.revoked_at is not None:
        raise InvalidApiKey("This API key has been revoked.")
    if not key.user.is_active:
        raise InvalidApiKey("The account of this API key is disabled.")
    return key


@functools.cache
def _key_sql() -> str:
    quote = connection.ops.quote_name
    # The last column: whether a budget limits the key's user, which every admission asks (one statement, not two).
    selected = [*select_columns("k", ApiKey), *select_columns("u", User), budgets_apply_sql("u")]
    return (  # names from the models' own metadata: the prefix is the one parameter
        f"SELECT {', '.join(selected)} FROM {quote(ApiKey._meta.db_table)} k "  # noqa: S608
        f"JOIN {quote(User._meta.db_table)} u ON u.id = k.user_id WHERE k.prefix = %s"
    )


def _key_of(row: tuple) -> ApiKey:
    key = ApiKey.objects.select_related("user").get(pk=row[0])  # the first column: the key's id
    key.budgeted = bool(row[-1])
    return key


_keys = RowObjects(_key_of)


def _key_by_prefix(prefix: str) -> ApiKey | None:
    """The key of that prefix with its user (and `budgeted`), read fresh in one hand-written statement (the ORM's
    query building was nine tenths of the API's admission); the objects are shared per row version
    (conversations/rows.py)."""
    with connection.cursor() as cursor:
        cursor.execute(_key_sql(), [prefix])
        row = cursor.fetchone()
    return None if row is None else _keys.get(row)


def api_key_touch(*, key: ApiKey) -> None:
    """Record that the key was used: one write a minute at most, whatever the request rate. (The key object is
    shared and left as it is: the next request reads the new time with the key's row.)"""
    now = timezone.now()
    if key.last_used_at is None or now - key.last_used_at >= LAST_USED_EVERY:
        ApiKey.objects.filter(pk=key.pk).update(last_used_at=now)


class SlidingWindow:
    """Requests per key in the last WINDOW_SECONDS, in this process; thread-safe."""

    def __init__(self, window: float = WINDOW_SECONDS) -> None:
        self.window = window
        self._hits: dict[int, deque[float]] = {}
        self._lock = threading.Lock()

    def admit(self, key_id: int, limit: int, now: float | None = None) -> float | None:
        """Count one request and return None, or return the seconds until one is allowed (not counted)."""
        now = time.monotonic() if now is None else now
        with self._lock:
            hits = self._hits.setdefault(key_id, deque())
            cutoff = now - self.window
            while hits and hits[0] <= cutoff:
                hits.popleft()
            if len(hits) >= limit:
                return hits[len(hits) - limit] + self.window - now
            hits.append(now)
            if len(self._hits) > 10_000:  # forget idle keys now and then
                for other in [k for k, q in self._hits.items() if not q or q[-1] <= cutoff]:
                    del self._hits[other]
            return None


_window = SlidingWindow()


def rate_limit_check(key: ApiKey) -> None:
    """RateLimited when the key has an RPM limit and has used it up (this request is counted otherwise)."""
    if not key.rpm_limit:
        return
    wait = _window.admit(key.pk, key.rpm_limit)
    if wait is not None:
        raise RateLimited(limit=key.rpm_limit, retry_after=wait)
