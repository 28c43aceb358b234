"""The ASGI handler of the /v1/ API: Django's own, without the middleware and the signal that only pages need."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from django.core import signals
from django.core.exceptions import RequestAborted
from django.core.handlers.asgi import ASGIHandler, get_script_prefix
from django.core.handlers.exception import convert_exception_to_response
from django.http import HttpRequest, HttpResponseBase
from django.urls import set_script_prefix

API_PREFIX = "/v1/"


class ApiHandler(ASGIHandler):
    """Serves /v1/: bearer-authenticated JSON, so no sessions, CSRF, messages or page headers. Under ASGI each of
    Django's (sync) middlewares costs two thread hops a request, which were most of the API's added time to the
    first token (docs/benchmarks.md)."""

    def load_middleware(self, is_async: bool = False) -> None:
        self._view_middleware: list[Any] = []
        self._template_response_middleware: list[Any] = []
        self._exception_middleware: list[Any] = []
        self._middleware_chain = convert_exception_to_response(self._get_response_async)  # type: ignore[attr-defined]

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        # Django's handler wraps each request in a ThreadSensitiveContext, which starts a thread per request for
        # its thread-sensitive calls. The API makes none on the way to its answer: its database work runs on
        # threads of its own (conversations/api/db.py).
        if scope["type"] != "http":
            raise ValueError(f"the API serves HTTP only, not {scope['type']}")
        await self.handle(scope, receive, send)

    async def handle(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """Django's `handle` without the request_started signal: its receivers reset and close the database
        connections of asgiref's thread, which the API never uses, and sending it is a thread hop before the
        first token. The response is closed once it is sent, as in Django, which sends request_finished; a
        request whose view never answered sends request_finished itself. Both run here, on the loop, not on a
        thread as Django's handler does: the API's responses have no closers of their own (its streams are async
        generators, which a response does not close), and request_finished's receivers find nothing to do on
        this thread (no database connection: the API's database work runs on its own threads; the cache's close
        does nothing), so the hop was a quarter of a millisecond of CPU a request for nothing. As in Django, a
        client that goes away cancels the view or its streaming response (the relay then cancels the upstream and
        records the usage)."""
        try:
            body_file = await self.read_body(receive)
        except RequestAborted:
            return
        try:
            set_script_prefix(get_script_prefix(scope))
            request, error_response = self.create_request(scope, body_file)
            if request is None:
                assert error_response is not None  # create_request returns one or the other
                await self.send_response(error_response, send)
                error_response.close()
                return
            responding = asyncio.create_task(self._respond(request, send))
            listening = asyncio.create_task(self.listen_for_disconnect(receive))
            await asyncio.wait((responding, listening), return_when=asyncio.FIRST_COMPLETED)
            for task in (listening, responding):  # the disconnect listener first: it never fails otherwise
                if not task.done():
                    task.cancel()
                with contextlib.suppress(asyncio.CancelledError, RequestAborted):
                    await task
            response = None
            if not responding.cancelled() and responding.exception() is None:
                response = responding.result()
            if response is None:
                signals.request_finished.send(sender=self.__class__)
            else:
                response.close()  # its closers, then request_finished
        finally:
            body_file.close()

    async def _respond(self, request: HttpRequest, send: Any) -> HttpResponseBase:
        response = await self.run_get_response(request)
        with contextlib.suppress(asyncio.CancelledError):  # the client went away while it was being sent
            await self.send_response(response, send)
        return response
