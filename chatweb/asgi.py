"""The ASGI entry point: static files, Django's HTTP views, and the chat websocket behind origin and auth checks."""

import gc
import os
from typing import Any

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatweb.settings")

from django.core.asgi import get_asgi_application

django_http = get_asgi_application()  # sets Django up before the imports below touch models

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402

from chatweb.apihandler import API_PREFIX, ApiHandler  # noqa: E402
from chatweb.staticfiles import StaticFilesApp  # noqa: E402
from chatweb.wsauth import auth_stack  # noqa: E402
from conversations.chat.routing import websocket_urlpatterns  # noqa: E402

api_http = ApiHandler()


async def http(scope: dict, receive: Any, send: Any) -> None:
    """/v1/ to the API's handler, everything else to Django's full stack."""
    handler = api_http if scope["path"].startswith(API_PREFIX) else django_http
    await handler(scope, receive, send)


application = ProtocolTypeRouter(
    {
        "http": StaticFilesApp(http),
        "websocket": AllowedHostsOriginValidator(auth_stack(URLRouter(websocket_urlpatterns))),
    }
)

# Everything imported so far (Django, the project, their modules and caches) lives as long as the process: move
# it out of the collector's sight. Each full collection walked all of it, and under load those pauses (up to
# 233 ms, five in a 100-stream benchmark round) were the slowest first tokens (docs/benchmarks.md).
gc.freeze()
