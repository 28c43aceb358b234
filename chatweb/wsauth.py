"""Who is on a websocket: channels' session and auth middleware, the user read on the `auth` database lane."""

from __future__ import annotations

from typing import Any

from channels.auth import AuthMiddleware, get_user
from channels.sessions import CookieMiddleware, SessionMiddleware

from conversations import db

_get_user = get_user.func  # channels' own lookup (session -> user, with its hash check), without its thread hop


class ThreadAuthMiddleware(AuthMiddleware):
    """channels' AuthMiddleware, with the session and the user read on `db.auth`, whose threads keep their
    SQLite connection (conversations/db.py). channels runs that read through `database_sync_to_async`, which
    opened and closed a connection for every socket (WAL pragmas included): ~4-5.5 ms a connect."""

    async def resolve_scope(self, scope: dict[str, Any]) -> None:
        scope["user"]._wrapped = await db.auth.run(_get_user, scope)


def auth_stack(inner: Any) -> Any:
    """channels' AuthMiddlewareStack (cookies, session, user), the user read on our threads."""
    return CookieMiddleware(SessionMiddleware(ThreadAuthMiddleware(inner)))
