"""The ASGI handler of the /v1/ API: Django's own, without the middleware that only pages need."""

from __future__ import annotations

from typing import Any

from django.core.handlers.asgi import ASGIHandler
from django.core.handlers.exception import convert_exception_to_response

API_PREFIX = "/v1/"


class ApiHandler(ASGIHandler):
    """Serves /v1/: bearer-authenticated JSON, so no sessions, CSRF, messages or page headers. Under ASGI each of
    Django's (sync) middlewares costs two thread hops a request, which were most of the API's added time to the
    first token (docs/benchmarks.md)."""

    def load_middleware(self, is_async: bool = False) -> None:
        self._view_middleware = []
        self._template_response_middleware = []
        self._exception_middleware = []
        self._middleware_chain = convert_exception_to_response(self._get_response_async)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        # Django's handler wraps each request in a ThreadSensitiveContext, which starts a thread per request for
        # its thread-sensitive calls. The API's only such calls are Django's request signals and the response's
        # close (its database work runs on threads of its own, conversations/api/db.py): they share asgiref's one
        # sync thread instead.
        if scope["type"] != "http":
            raise ValueError(f"the API serves HTTP only, not {scope['type']}")
        await self.handle(scope, receive, send)
