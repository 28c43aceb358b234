"""Accounts: Django's sign-in views (throttled against guessing), and signup switched by CHATWEB_SIGNUP."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.auth import get_user_model, login
from django.contrib.auth import views as auth_views
from django.contrib.auth.forms import UserCreationForm
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBase
from django.shortcuts import redirect, render

from conversations.accounts import throttle


class SignupForm(UserCreationForm):
    email = forms.EmailField(required=False)

    class Meta(UserCreationForm.Meta):  # type: ignore[name-defined]  # the stubs leave Meta out
        model = get_user_model()
        fields = ("username", "email")


def signup(request: HttpRequest) -> HttpResponse:
    if settings.CHATWEB_SIGNUP != "open":
        raise Http404("Signup is closed on this server.")
    form = SignupForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        user = form.save()
        login(request, user, backend="django.contrib.auth.backends.ModelBackend")
        return redirect(settings.LOGIN_REDIRECT_URL)
    return render(request, "registration/signup.html", {"form": form})


# --- Sign-in throttling --------------------------------------------------------------------------------
View = Callable[..., HttpResponseBase]


def locked_message(wait: int) -> str:
    return f"Too many failed sign-in attempts; try again in {throttle.wait_text(wait)}."


def throttled_login(view: View) -> View:
    """Wrap a Django sign-in view: while the account or the client address is blocked, a POST is answered 429
    with the empty form and a message, its password never checked; a failed POST counts against both, and a
    successful one (the view redirects) clears the account's count, not the address's (docs/security.md)."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponseBase:
        if request.method != "POST":
            return view(request, *args, **kwargs)
        account = throttle.account_key(str(request.POST.get("username", ""))[:300])
        address = throttle.client_address(request)
        keys = [(throttle.LOGIN_ADDRESS, address)] + ([(throttle.LOGIN_ACCOUNT, account)] if account else [])
        wait = max(throttle.check(kind, key) for kind, key in keys)
        if wait:
            messages.error(request, locked_message(wait))
            request.method = "GET"  # render the view's empty sign-in form
            response = view(request, *args, **kwargs)
            if response.status_code == 200:
                response.status_code = 429
            response["Retry-After"] = str(wait)
            return response
        response = view(request, *args, **kwargs)
        if response.status_code in (301, 302, 303) and request.user.is_authenticated:
            if account:
                throttle.clear(throttle.LOGIN_ACCOUNT, account)
        else:
            wait = max(throttle.fail(kind, key) for kind, key in keys)
            if wait:
                messages.error(request, locked_message(wait))  # a TemplateResponse: not rendered yet
        return response

    return wrapper


_password_login = throttled_login(auth_views.LoginView.as_view())


def login_view(request: HttpRequest) -> HttpResponseBase:
    """/accounts/login/; with CHATWEB_LOCAL_LOGIN off it offers single sign-on only and takes no password."""
    if request.method == "POST" and not settings.CHATWEB_LOCAL_LOGIN:
        return HttpResponse("Password sign-in is turned off here; use single sign-on.", status=403,
                            content_type="text/plain")
    return _password_login(request)


@throttled_login
def admin_login(request: HttpRequest) -> HttpResponse:
    """/admin/login/, routed here ahead of the admin's own URLs so it cannot guess past the throttle."""
    return admin.site.login(request)
