"""The request type of page views behind a sign-in check, for the type checker (every package's views use it)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.http import HttpRequest

if TYPE_CHECKING:
    from conversations.models import User


class AuthenticatedHttpRequest(HttpRequest):
    """A request whose user is signed in (login_required or an equal check ran first): `request.user` is then
    always our User, never AnonymousUser. Only an annotation: Django still builds a plain HttpRequest."""

    user: User
