"""Template context every page needs."""

from django.conf import settings
from django.http import HttpRequest


def site(request: HttpRequest) -> dict:
    return {
        "signup_open": settings.CHATWEB_SIGNUP == "open",
        # Single sign-on's button (empty: none) and whether the password form is offered.
        "oidc_name": settings.CHATWEB_OIDC_NAME if settings.CHATWEB_OIDC_ISSUER else "",
        "local_login": settings.CHATWEB_LOCAL_LOGIN,
    }
