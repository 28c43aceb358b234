"""The /v1/ endpoints as async views: parse, call the relay, send. Bearer-authenticated, so CSRF-exempt."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Coroutine
from functools import wraps
from typing import Any

from django.http import HttpRequest, HttpResponse, HttpResponseBase, StreamingHttpResponse
from django.views.decorators.csrf import csrf_exempt

from conversations import db
from conversations.accounts.throttle import client_address
from conversations.api import relay
from conversations.api.catalog import model_retrieve, models_list
from conversations.api.errors import ApiError, api_error
from conversations.api.openapi import openapi_document
from conversations.api.parsing import MAX_BODY_BYTES, Endpoint, too_large
from conversations.errors import AdmissionError

log = logging.getLogger(__name__)

AsyncView = Callable[..., Coroutine[Any, Any, HttpResponseBase]]


def api_view(*methods: str) -> Callable[[AsyncView], AsyncView]:
    """CSRF-exempt, method-checked, every failure answered in OpenAI's error shape (never an HTML page)."""

    def decorate(view: AsyncView) -> AsyncView:
        @csrf_exempt
        @wraps(view)
        async def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponseBase:
            if request.method not in methods:
                error = ApiError(
                    405, f"Method {request.method} is not allowed here; use {' or '.join(methods)}."
                )
                response = error.response()
                response["Allow"] = ", ".join(methods)
                return response
            try:
                return await view(request, *args, **kwargs)
            except ApiError as error:
                return error.response()
            except AdmissionError as error:
                return api_error(error).response()
            except Exception:
                log.exception("API call %s %s failed", request.method, request.path)
                return ApiError(
                    500,
                    "chatweb failed while handling this request.",
                    type="server_error",
                    code="internal_error",
                ).response()

        return wrapper

    return decorate


def _json(payload: dict) -> HttpResponse:
    return HttpResponse(json.dumps(payload, ensure_ascii=False), content_type="application/json")


def _body(request: HttpRequest) -> bytes:
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        declared = 0
    if declared > MAX_BODY_BYTES:
        raise too_large(declared)
    raw = request.read(MAX_BODY_BYTES + 1)
    if len(raw) > MAX_BODY_BYTES:
        raise too_large(len(raw))
    return raw


async def _completion(request: HttpRequest, endpoint: Endpoint) -> HttpResponseBase:
    call = await relay.admit(
        authorization=request.headers.get("Authorization"),
        endpoint=endpoint,
        raw_body=_body(request),
        address=client_address(request),
    )
    if call.request.stream:
        body = await relay.stream_open(call)
        return StreamingHttpResponse(
            body,
            content_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
    return HttpResponse(await relay.complete(call), content_type="application/json")


@api_view("POST")
async def chat_completions(request: HttpRequest) -> HttpResponseBase:
    return await _completion(request, "chat")


@api_view("POST")
async def completions(request: HttpRequest) -> HttpResponseBase:
    return await _completion(request, "completions")


@api_view("GET")
async def models(request: HttpRequest) -> HttpResponseBase:
    return _json(
        await db.api.run(
            models_list, authorization=request.headers.get("Authorization"), address=client_address(request)
        )
    )


@api_view("GET")
async def model(request: HttpRequest, name: str) -> HttpResponseBase:
    return _json(
        await db.api.run(
            model_retrieve,
            authorization=request.headers.get("Authorization"),
            name=name,
            address=client_address(request),
        )
    )


@api_view("GET")
async def openapi(request: HttpRequest) -> HttpResponseBase:
    return HttpResponse(openapi_document(), content_type="application/json")


@csrf_exempt
async def not_found(request: HttpRequest, rest: str = "") -> HttpResponseBase:
    return ApiError(404, f"Invalid URL ({request.method} {request.path})").response()
