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
from conversations.catalog.access import models_for_user
from conversations.catalog.defaults import chat_default_model, picker_groups
from conversations.models import ApiKey, Model, SharedLink, User
from conversations.web import AuthenticatedHttpRequest

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


class DefaultModelForm(forms.Form):
    """The model new chats open with: one the user may use, or empty for the site's default."""

    model = forms.CharField(max_length=320, required=False)

    def __init__(self, *args: object, user: User, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.user = user

    def clean_model(self) -> Model | None:
        name = self.cleaned_data["model"].strip()
        if not name:
            return None
        for model in models_for_user(self.user):
            if model.public_name == name:
                return model
        raise forms.ValidationError("That model is not one you can use.")


class ApiKeyRevokeForm(forms.Form):
    key_id = forms.IntegerField(min_value=1)


def _page(
    request: AuthenticatedHttpRequest,
    *,
    form: ApiKeyCreateForm | None = None,
    new_key: str | None = None,
    new_key_row: ApiKey | None = None,
    default_form: DefaultModelForm | None = None,
    status: int = 200,
) -> HttpResponse:
    keys = ApiKey.objects.for_user(request.user).order_by("revoked_at", "-created_at")
    models = models_for_user(request.user)
    user = request.user
    chosen = next((m for m in models if m.pk == user.default_model_id), None)
    site_default = chat_default_model(User(default_model=None), models)  # what "the site's default" is now
    context = {
        "model_groups": picker_groups(models),
        "chosen_model": chosen.public_name if chosen else "",
        "chosen_gone": user.default_model_id is not None and chosen is None,
        "site_default": site_default.label if site_default else "",
        "default_form": default_form,
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
    if action == "default_model":
        choice = DefaultModelForm(request.POST, user=request.user)
        if not choice.is_valid():
            return _page(request, default_form=choice, status=400)
        model = choice.cleaned_data["model"]
        User.objects.filter(pk=request.user.pk).update(default_model=model)
        messages.success(
            request,
            f"New chats now open with {model.label}." if model else "New chats now open with the site's default model.",
        )
        return redirect("/settings/#default-model")
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
