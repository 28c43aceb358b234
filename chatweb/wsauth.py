"""Who is on a websocket: channels' session and auth middleware, the user read on the `auth` database lane."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

from channels.auth import AuthMiddleware
from channels.sessions import CookieMiddleware, SessionMiddleware
from django.contrib.auth.models import AnonymousUser

from conversations import db
from conversations.accounts.sessions import session_user

if TYPE_CHECKING:
    from channels.auth import UserLazyObject
    from channels.consumer import _ChannelScope
    from django.contrib.auth.base_user import AbstractBaseUser


def _get_user(scope: _ChannelScope) -> AbstractBaseUser | AnonymousUser:
    """channels' `get_user`, in two statements (conversations/accounts/sessions.py)."""
    if "session" not in scope:
        raise ValueError("Cannot find session in scope. You should wrap your consumer in SessionMiddleware.")
    return session_user(scope["session"]) or AnonymousUser()


class ThreadAuthMiddleware(AuthMiddleware):
    """channels' AuthMiddleware, with the session and the user read on `db.auth`, whose threads keep their
    SQLite connection (conversations/db.py). channels runs that read through `database_sync_to_async`, which
    opened and closed a connection for every socket (WAL pragmas included): ~4-5.5 ms a connect."""

    async def resolve_scope(self, scope: _ChannelScope) -> None:
        # as channels' own resolve_scope: populate_scope, which runs first, has put a UserLazyObject there
        cast("UserLazyObject", scope["user"])._wrapped = await db.auth.run(_get_user, scope)


def auth_stack(inner: Any) -> Any:
    """channels' AuthMiddlewareStack (cookies, session, user), the user read on our threads."""
    return CookieMiddleware(SessionMiddleware(ThreadAuthMiddleware(inner)))
