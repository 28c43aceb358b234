"""Single sign-on's pages: /oidc/authenticate/ (off to the provider), /oidc/callback/ (back, signed in or refused
with a page that says why), and sign-out that ends the provider's session too where it offers that."""

from __future__ import annotations

import logging
from typing import Any

from django.contrib.auth import views as auth_views
from django.core.exceptions import SuspiciousOperation
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBase
from django.shortcuts import redirect, render
from django.urls import reverse
from mozilla_django_oidc.views import OIDCAuthenticationCallbackView, OIDCAuthenticationRequestView

from conversations.accounts.oidc import OidcRefused, oidc_enabled, oidc_end_session_url, oidc_setting

log = logging.getLogger(__name__)


def refused(request: HttpRequest, reason: str, status: int = 403) -> HttpResponse:
    """The page a refused sign-in lands on: the reason, and the way back."""
    return render(request, "registration/oidc_refused.html", {"reason": reason}, status=status)


class _Start(OIDCAuthenticationRequestView):
    get_settings = staticmethod(oidc_setting)


class _Callback(OIDCAuthenticationCallbackView):
    get_settings = staticmethod(oidc_setting)

    def login_failure(self) -> HttpResponse:
        if self.request.GET.get("error"):
            return refused(self.request, "The identity provider did not sign you in.")
        return refused(self.request, "This sign-in was not started here or has already been used; please start again.")


def oidc_start(request: HttpRequest) -> HttpResponseBase:
    """Send the person to the provider (authorization code with PKCE, state and nonce kept in the session)."""
    if not oidc_enabled():
        raise Http404("Single sign-on is not configured.")
    try:
        return _Start.as_view()(request)
    except OidcRefused as exc:
        return refused(request, str(exc), status=502)


def oidc_callback(request: HttpRequest) -> HttpResponseBase:
    """Back from the provider: the state, code, tokens and person checked, then signed in or refused."""
    if not oidc_enabled():
        raise Http404("Single sign-on is not configured.")
    try:
        return _Callback.as_view()(request)
    except OidcRefused as exc:
        log.info("OpenID sign-in refused: %s", exc)
        return refused(request, str(exc))
    except SuspiciousOperation as exc:  # the state is not one this browser's session started
        log.warning("OpenID sign-in refused: %s", exc)
        return refused(request, "This sign-in was not started here (its state does not match); please start again.")


class LogoutView(auth_views.LogoutView):
    """Django's sign-out, then on to the provider's end-session endpoint when the person came through it."""

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        id_token = request.session.get("oidc_id_token")
        response = super().post(request, *args, **kwargs)
        end = oidc_end_session_url(id_token=id_token, after=request.build_absolute_uri(reverse("login")))
        return redirect(end) if end else response
