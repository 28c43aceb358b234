"""The ASGI handler of the /v1/ API: Django's own, without the middleware and the signals that only pages need."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from django.core.exceptions import RequestAborted
from django.core.handlers.asgi import ASGIHandler, get_script_prefix
from django.core.handlers.exception import convert_exception_to_response
from django.urls import set_script_prefix

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
        # its thread-sensitive calls. The API makes none: its database work runs on threads of its own
        # (conversations/api/db.py).
        if scope["type"] != "http":
            raise ValueError(f"the API serves HTTP only, not {scope['type']}")
        await self.handle(scope, receive, send)

    async def handle(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """Django's `handle` without the request_started and request_finished signals. Their receivers close and
        reset the database connections of asgiref's thread, which the API never uses, and each was a thread hop
        (~0.2 ms before the first token, ~0.2 ms after the last). As in Django, a client that goes away cancels
        the view or its streaming response (the relay then cancels the upstream and records the usage)."""
        try:
            body_file = await self.read_body(receive)
        except RequestAborted:
            return
        try:
            set_script_prefix(get_script_prefix(scope))
            request, error_response = self.create_request(scope, body_file)
            if request is None:
                await self.send_response(error_response, send)
                return
            responding = asyncio.create_task(self._respond(request, send))
            listening = asyncio.create_task(self.listen_for_disconnect(receive))
            await asyncio.wait((responding, listening), return_when=asyncio.FIRST_COMPLETED)
            for task in (listening, responding):  # the disconnect listener first: it never fails otherwise
                if not task.done():
                    task.cancel()
                with contextlib.suppress(asyncio.CancelledError, RequestAborted):
                    await task
        finally:
            body_file.close()

    async def _respond(self, request: Any, send: Any) -> None:
        response = await self.run_get_response(request)
        with contextlib.suppress(asyncio.CancelledError):  # the client went away while it was being sent
            await self.send_response(response, send)
