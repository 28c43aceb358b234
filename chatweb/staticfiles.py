"""Serves /static/ from inside the ASGI app (development and production alike), before Django's stack."""

from __future__ import annotations

import asyncio
import hashlib
import mimetypes
from email.utils import formatdate
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.staticfiles import finders

from chatweb.security import STATIC_HEADERS

Scope = dict[str, Any]


class StaticFilesApp:
    """Answers GET/HEAD under STATIC_URL with the file the staticfiles finders locate (or 404).

    Files are read in a thread and cached in memory with an ETag: the set is small (our CSS, JS and
    vendored libraries plus the admin's), so one Daphne process can serve them without a separate server.
    """

    def __init__(self, app: Any) -> None:
        self.app = app
        self.prefix = settings.STATIC_URL
        self.cache: dict[str, tuple[bytes, list[tuple[bytes, bytes]]] | None] = {}

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(self.prefix):
            await self.app(scope, receive, send)
            return
        if scope["method"] not in ("GET", "HEAD"):
            await self._respond(send, 405, b"method not allowed", [(b"allow", b"GET, HEAD")], scope)
            return
        relative = scope["path"][len(self.prefix):]
        entry = self.cache.get(relative) if not settings.DEBUG else None
        if entry is None:
            entry = await asyncio.to_thread(self._load, relative)
            self.cache[relative] = entry
        if entry is None:
            await self._respond(send, 404, b"not found", [], scope)
            return
        body, headers = entry
        etag = dict(headers)[b"etag"]
        if_none_match = dict(scope.get("headers", [])).get(b"if-none-match")
        if if_none_match == etag:
            await self._respond(send, 304, b"", headers, scope)
            return
        await self._respond(send, 200, body, headers, scope)

    def _load(self, relative: str) -> tuple[bytes, list[tuple[bytes, bytes]]] | None:
        if not relative or ".." in Path(relative).parts or relative.startswith("/"):
            return None
        found = finders.find(relative)
        if not found:
            return None
        path = Path(found)
        if not path.is_file():
            return None
        body = path.read_bytes()
        content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        if content_type.startswith("text/") or content_type in ("application/javascript", "image/svg+xml"):
            content_type += "; charset=utf-8"
        headers = [
            (b"content-type", content_type.encode()),
            (b"etag", ('"' + hashlib.sha256(body).hexdigest()[:32] + '"').encode()),
            (b"cache-control", b"public, max-age=3600"),
            (b"last-modified", formatdate(path.stat().st_mtime, usegmt=True).encode()),
        ]
        return body, headers

    @staticmethod
    async def _respond(send: Any, status: int, body: bytes, headers: list, scope: Scope) -> None:
        # The security headers Django's middleware adds to pages (chatweb/security.py), here outside Django.
        headers = [*headers, *STATIC_HEADERS, (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else body})
