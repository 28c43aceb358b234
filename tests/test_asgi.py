"""The ASGI app's own parts: the /v1 handler closes what it answers, ServeStatic serves /static/ with caching."""

from __future__ import annotations

import pytest
from channels.testing import HttpCommunicator
from django.core import signals

from chatweb.asgi import application


async def asgi_get(path: str, headers: tuple[tuple[bytes, bytes], ...] = ()) -> tuple[int, dict[str, str], bytes]:
    communicator = HttpCommunicator(application, "GET", path, headers=[(b"host", b"127.0.0.1:8000"), *headers])
    response = await communicator.get_response(timeout=10)
    await communicator.wait(timeout=10)  # the app's work after the last byte (closing the response) included
    return response["status"], {k.decode().lower(): v.decode() for k, v in response["headers"]}, response["body"]


@pytest.mark.django_db(transaction=True)
async def test_api_responses_are_closed_once_each():
    finished: list[object] = []

    def receiver(sender: object, **kwargs: object) -> None:
        finished.append(sender)

    signals.request_finished.connect(receiver)
    try:
        status, _, _ = await asgi_get("/v1/openapi.json")
        assert status == 200
        status, _, _ = await asgi_get("/v1/no-such-endpoint")
        assert status == 404
    finally:
        signals.request_finished.disconnect(receiver)
    assert len(finished) == 2  # response.close() ran for each: request_finished, once a request


async def test_static_files_are_cached_and_revalidated():
    status, headers, body = await asgi_get("/static/css/app.css")
    assert status == 200 and body
    assert "max-age=3600" in headers["cache-control"]
    assert headers["content-type"].startswith("text/css")
    assert "access-control-allow-origin" not in headers
    status, _, body = await asgi_get("/static/css/app.css", ((b"if-none-match", headers["etag"].encode()),))
    assert status == 304 and body == b""


@pytest.mark.django_db(transaction=True)
async def test_favicon_ico_points_at_the_svg_icon():
    status, headers, _ = await asgi_get("/favicon.ico")
    assert status == 301
    assert headers["location"] == "/static/favicon.svg"
    status, headers, _ = await asgi_get("/static/favicon.svg")
    assert status == 200 and headers["content-type"].startswith("image/svg+xml")
