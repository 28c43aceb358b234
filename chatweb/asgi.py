"""The ASGI entry point: static files, Django's HTTP views, and the chat websocket behind origin and auth checks."""

import gc
import os
from typing import Any

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatweb.settings")

from django.core.asgi import get_asgi_application

django_http = get_asgi_application()  # sets Django up before the imports below touch models

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402
from django.conf import settings  # noqa: E402
from django.contrib.staticfiles import finders  # noqa: E402
from servestatic import ServeStaticASGI  # noqa: E402

from chatweb.apihandler import API_PREFIX, ApiHandler  # noqa: E402
from chatweb.handshake import quiet_handshake_debug_text  # noqa: E402
from chatweb.listen import widen_listen_backlog  # noqa: E402
from chatweb.security import STATIC_HEADERS  # noqa: E402
from chatweb.wsauth import auth_stack  # noqa: E402
from conversations.chat.routing import websocket_urlpatterns  # noqa: E402

api_http = ApiHandler()


def _static_headers(headers: Any, path: str, url: str) -> None:
    # The headers Django's middleware adds to pages (chatweb/security.py): files are answered before Django.
    for name, value in STATIC_HEADERS:
        headers[name.decode()] = value.decode()


def static_files(app: Any) -> ServeStaticASGI:
    """/static/ answered by ServeStatic ahead of `app`, from what Django's staticfiles finders see (our static/
    and the admin's), so no `collectstatic` is needed. A path it does not know goes on to Django, whose 404
    page carries the security headers. In development (DEBUG) every request looks on disk, so edits show at
    once; otherwise the set of files is read once, at start."""
    served = ServeStaticASGI(
        app,
        autorefresh=settings.DEBUG,
        max_age=3600,
        allow_all_origins=False,  # same-origin only, as Cross-Origin-Resource-Policy says
        add_headers_function=_static_headers,
    )
    locations = [
        storage.location
        for finder in finders.get_finders()
        for storage in getattr(finder, "storages", {}).values()
        if getattr(storage, "location", None)
    ]
    for location in dict.fromkeys(reversed(locations)):  # a later add wins: the first finder's copy is served
        served.add_files(location, prefix=settings.STATIC_URL)
    return served


async def http(scope: dict, receive: Any, send: Any) -> None:
    """/v1/ to the API's handler, everything else to Django's full stack."""
    handler = api_http if scope["path"].startswith(API_PREFIX) else django_http
    await handler(scope, receive, send)


application = ProtocolTypeRouter(
    {
        "http": static_files(http),
        # URLRouter takes the URLPatterns of Django's path(), which the stubs of channels do not know of.
        "websocket": AllowedHostsOriginValidator(
            auth_stack(URLRouter(websocket_urlpatterns))  # type: ignore[arg-type]
        ),
    }
)

widen_listen_backlog()  # a burst of new clients must not overflow Daphne's accept queue (chatweb/listen.py)
quiet_handshake_debug_text()  # nor pay for autobahn's debug text on every handshake (chatweb/handshake.py)

# Everything imported so far (Django, the project, their modules and caches) lives as long as the process: move
# it out of the collector's sight. Each full collection walks all of it, and under load those pauses were the
# slowest first tokens (docs/benchmarks.md).
gc.freeze()
