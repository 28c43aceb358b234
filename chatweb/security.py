"""HTTP security headers on every response: a Content-Security-Policy without inline code, and more."""

from __future__ import annotations

import base64
import functools
import hashlib
import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from urllib.parse import urlsplit

import django.contrib.admin
from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.conf import settings
from django.core.exceptions import DisallowedHost
from django.http import HttpRequest, HttpResponseBase

ADMIN_PREFIX = "/admin/"

# Admin pages may carry static inline <style> blocks: Django 5.2's admin/change_list.html has one (a column
# width for a model admin without actions) and our templates/admin/ may add more. Rather than 'unsafe-inline',
# /admin/ pages allow exactly those blocks by their hashes, computed from the template files, so edits and
# upgrades cannot drift.
# Inline script stays refused everywhere (the admin has none: its data travels in data- attributes).
ADMIN_TEMPLATE_DIRS = (
    Path(django.contrib.admin.__file__).resolve().parent / "templates" / "admin",
    Path(settings.BASE_DIR) / "templates" / "admin",
)
_STYLE_BLOCK = re.compile(r"<style(?:\s[^>]*)?>(.*?)</style>", re.DOTALL | re.IGNORECASE)


def inline_style_hashes(directories: tuple[Path, ...] = ADMIN_TEMPLATE_DIRS) -> tuple[str, ...]:
    """CSP source expressions ('sha256-...') of the literal <style> blocks in these templates (blocks holding
    template tags vary per page and are skipped: such a template must use a static file instead)."""
    hashes: list[str] = []
    for directory in directories:
        for path in sorted(directory.rglob("*.html")):
            for block in _STYLE_BLOCK.findall(path.read_text(encoding="utf-8")):
                if any(tag in block for tag in ("{%", "{{", "{#")):
                    continue
                digest = base64.b64encode(hashlib.sha256(block.encode()).digest()).decode()
                hashes.append(f"'sha256-{digest}'")
    return tuple(dict.fromkeys(hashes))


@functools.cache
def _admin_style_hashes() -> tuple[str, ...]:
    return inline_style_hashes()


PERMISSIONS_POLICY = "camera=(), microphone=(), geolocation=(), payment=(), usb=()"

# Set on every response unless a view chose its own value (Django's SecurityMiddleware and
# XFrameOptionsMiddleware set some of these too; repeating them keeps the set whole if those move).
HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": PERMISSIONS_POLICY,
}


def _form_action() -> str:
    # Signing out posts a form here that redirects to the identity provider's end-session endpoint, and
    # browsers hold redirects after a form post to form-action too: the provider's origin is allowed then.
    issuer = settings.CHATWEB_OIDC_ISSUER
    if not issuer:
        return "'self'"
    parts = urlsplit(issuer)
    return f"'self' {parts.scheme}://{parts.netloc}"


def content_security_policy(*, websocket_origin: str | None = None, admin: bool = False) -> str:
    """The policy: our own files only, no inline script or style, no framing, no plugins, forms to us."""
    styles = " ".join(("'self'", *_admin_style_hashes())) if admin else "'self'"
    connect = f"'self' {websocket_origin}" if websocket_origin else "'self'"
    return "; ".join(
        (
            "default-src 'self'",
            "script-src 'self'",
            f"style-src {styles}",
            "img-src 'self' data:",
            f"connect-src {connect}",
            "frame-ancestors 'none'",
            "base-uri 'self'",
            f"form-action {_form_action()}",
            "object-src 'none'",
        )
    )


# The same set for /static/ files, which ServeStatic serves outside Django's middleware (chatweb/asgi.py).
STATIC_HEADERS: list[tuple[bytes, bytes]] = [
    (b"content-security-policy", content_security_policy().encode()),
    *((name.lower().encode(), value.encode()) for name, value in HEADERS.items()),
]


def _websocket_origin(request: HttpRequest) -> str | None:
    """The exact ws:// or wss:// origin of this site, for connect-src (None when the Host is not allowed)."""
    try:
        host = request.get_host()
    except DisallowedHost:
        return None
    return f"{'wss' if request.is_secure() else 'ws'}://{host}"


def add_security_headers(request: HttpRequest, response: HttpResponseBase) -> HttpResponseBase:
    for name, value in HEADERS.items():
        response.headers.setdefault(name, value)
    if "Content-Security-Policy" in response.headers:
        return response
    if (
        settings.DEBUG
        and response.status_code >= 400
        and response.get("Content-Type", "").startswith("text/html")
    ):
        return response  # Django's technical error pages (development only) use inline style and script
    response.headers["Content-Security-Policy"] = content_security_policy(
        websocket_origin=_websocket_origin(request), admin=request.path.startswith(ADMIN_PREFIX)
    )
    return response


class SecurityHeadersMiddleware:
    """Adds the headers above; sync and async (the /v1 views are async and stream), never buffering."""

    sync_capable = True
    async_capable = True

    def __init__(
        self, get_response: Callable[[HttpRequest], HttpResponseBase | Awaitable[HttpResponseBase]]
    ) -> None:
        self.get_response = get_response
        self.async_mode = iscoroutinefunction(get_response)
        if self.async_mode:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> HttpResponseBase | Awaitable[HttpResponseBase]:
        if self.async_mode:
            return self.__acall__(request)
        return add_security_headers(request, self.get_response(request))  # type: ignore[arg-type]

    async def __acall__(self, request: HttpRequest) -> HttpResponseBase:
        return add_security_headers(request, await self.get_response(request))  # type: ignore[misc]
