"""The /settings/ page: a user's personal API keys — create (shown once), list (prefix, last use), revoke; the
links they shared, with when each was made, and the import form (those two post to the chat package's views:
conversations/chat/share_views.py, conversations/chat/import_views.py)."""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from conversations.accounts.apikeys import ApiKeyLimit, api_key_create, api_key_revoke
from conversations.accounts.requests import AuthenticatedHttpRequest
from conversations.models import ApiKey, SharedLink

NEW_KEY_SESSION = "chatweb_new_api_key"


class ApiKeyCreateForm(forms.Form):
    name = forms.CharField(
        max_length=100, required=False, help_text="To tell your keys apart, e.g. “laptop”."
    )
    rpm_limit = forms.IntegerField(
        min_value=1,
        max_value=100_000,
        required=False,
        label="Requests per minute",
        help_text="Optional cap for this key; empty: none.",
    )


class ApiKeyRevokeForm(forms.Form):
    key_id = forms.IntegerField(min_value=1)


def _page(
    request: AuthenticatedHttpRequest,
    *,
    form: ApiKeyCreateForm | None = None,
    new_key: str | None = None,
    new_key_row: ApiKey | None = None,
    status: int = 200,
) -> HttpResponse:
    keys = ApiKey.objects.for_user(request.user).order_by("revoked_at", "-created_at")
    context = {
        "form": form or ApiKeyCreateForm(),
        "keys": keys,
        "new_key": new_key,
        "new_key_row": new_key_row,
        "api_base": request.build_absolute_uri("/v1"),
        "shared_links": SharedLink.objects.for_user(request.user).only(
            "pk", "token", "title", "conversation_id", "created_at"
        ),
    }
    response = render(request, "settings.html", context, status=status)
    if new_key:
        response["Cache-Control"] = "no-store"  # the page holding the raw key is never cached
    return response


@login_required
@require_http_methods(["GET", "POST"])
def settings_page(request: AuthenticatedHttpRequest) -> HttpResponse:
    if request.method == "GET":
        new = request.session.pop(NEW_KEY_SESSION, None)
        if new:
            row = ApiKey.objects.for_user(request.user).filter(pk=new.get("id")).first()
            if row is not None:
                return _page(request, new_key=new.get("raw"), new_key_row=row)
        return _page(request)
    action = request.POST.get("action")
    if action == "create_key":
        form = ApiKeyCreateForm(request.POST)
        if not form.is_valid():
            return _page(request, form=form, status=400)
        try:
            key, raw = api_key_create(
                user=request.user, name=form.cleaned_data["name"], rpm_limit=form.cleaned_data["rpm_limit"]
            )
        except ApiKeyLimit as exc:
            form.add_error(None, str(exc))
            return _page(request, form=form, status=400)
        # POST/redirect/GET: reloading the page must not create a second key. The raw key rides in the session
        # to the very next GET of this page, which removes it from there (shown once, as before).
        request.session[NEW_KEY_SESSION] = {"raw": raw, "id": key.pk}
        return redirect("settings")
    if action == "revoke_key":
        revoke = ApiKeyRevokeForm(request.POST)
        if not revoke.is_valid():
            raise Http404("No such key.")
        try:
            key = api_key_revoke(user=request.user, key_id=revoke.cleaned_data["key_id"])
        except ApiKey.DoesNotExist:
            raise Http404("No such key.") from None
        messages.success(request, f"Key {key.prefix}… revoked; requests with it are refused from now on.")
        return redirect("settings")
    return _page(request, status=400)
