"""API errors in OpenAI's shape `{"error": {"message", "type", "param", "code"}}` with their HTTP status."""

from __future__ import annotations

import json
from collections.abc import Mapping

from django.http import HttpResponse

from conversations.accounts import throttle
from conversations.errors import (
    AddressBlocked,
    AdmissionError,
    AttachmentUnsupported,
    BadRequest,
    BudgetExceeded,
    InvalidApiKey,
    ModelUnavailable,
    NotFound,
    RateLimited,
)
from conversations.upstream.errors import ErrorCode
from conversations.upstream.events import StreamError


class ApiError(Exception):
    """A request answered with an error; `headers` go on the response (Retry-After, x-should-retry, ...)."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.code = code
        self.param = param
        self.headers = dict(headers or {})

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}

    def response(self) -> HttpResponse:
        response = HttpResponse(
            json.dumps(self.body(), ensure_ascii=False), status=self.status, content_type="application/json"
        )
        # The official clients retry 408/409/429/5xx on their own; chatweb's own refusals and upstream
        # failures (already retried towards the provider) are final; a per-key rate limit is worth a wait.
        response["x-should-retry"] = "true" if self.code == "rate_limit_exceeded" else "false"
        for name, value in self.headers.items():
            response[name] = value
        return response


def bad_request(message: str, param: str | None = None, code: str | None = None) -> ApiError:
    return ApiError(400, message, param=param, code=code)


def invalid_api_key(message: str) -> ApiError:
    return ApiError(
        401, message, code="invalid_api_key", headers={"WWW-Authenticate": 'Bearer realm="chatweb"'}
    )


def model_not_found(name: str) -> ApiError:
    return ApiError(
        404,
        f"The model `{name}` does not exist or you do not have access to it.",
        param="model",
        code="model_not_found",
    )


def budget_exceeded(message: str) -> ApiError:
    return ApiError(429, message, type="insufficient_quota", code="budget_exceeded")


def rate_limited(limit: int, retry_after: float) -> ApiError:
    seconds = max(1, int(retry_after + 0.999))
    return ApiError(
        429,
        f"Rate limit reached for this API key: {limit} requests per minute. Try again in {seconds} s.",
        type="rate_limit_error",
        code="rate_limit_exceeded",
        headers={"Retry-After": str(seconds)},
    )


def too_many_failures(wait: int) -> ApiError:
    """The client's address sent too many wrong keys: blocked for `wait` seconds (a retry now cannot help)."""
    return ApiError(
        429,
        "Too many requests with an incorrect API key from your address; "
        f"try again in {throttle.wait_text(wait)}.",
        type="rate_limit_error",
        code="too_many_failed_keys",
        headers={"Retry-After": str(wait)},
    )


def upstream_failure(error: StreamError) -> ApiError:
    """An upstream failure before any output: 504 for a timeout, 400 when the provider refused the request
    itself (its message says what to fix), 502 otherwise; `code` is the stable ErrorCode."""
    if error.code == ErrorCode.UPSTREAM_TIMEOUT:
        return ApiError(504, error.message, type="upstream_error", code=error.code)
    if error.code == ErrorCode.UPSTREAM_BAD_REQUEST:
        return ApiError(400, error.message, type="invalid_request_error", code=error.code)
    return ApiError(502, error.message, type="upstream_error", code=error.code)


def api_error(exc: AdmissionError) -> ApiError:
    """A domain error (conversations/errors.py) as the API answers it."""
    if isinstance(exc, InvalidApiKey):
        return invalid_api_key(exc.message)
    if isinstance(exc, AddressBlocked):
        return too_many_failures(exc.wait)
    if isinstance(exc, RateLimited):
        return rate_limited(exc.limit, exc.retry_after)
    if isinstance(exc, ModelUnavailable):
        if exc.name is None:
            return ApiError(404, exc.message, param="model", code="model_not_found")
        return model_not_found(exc.name)
    if isinstance(exc, BudgetExceeded):
        return budget_exceeded(exc.message)
    if isinstance(exc, BadRequest):
        return bad_request(exc.message, exc.param)
    if isinstance(exc, NotFound):
        return ApiError(404, exc.message, code=exc.code)
    if isinstance(exc, AttachmentUnsupported):
        return bad_request(exc.message, "messages", exc.code)
    return ApiError(400, exc.message, code=exc.code)
