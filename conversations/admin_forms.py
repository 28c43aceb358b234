"""Admin forms: the provider form with its write-only API key and credential headers."""

from __future__ import annotations

from typing import Any

from django import forms

from conversations.crypto import Secret
from conversations.models import Provider
from conversations.upstream.headers import header_problem, is_secret_header
from conversations.upstream.params import PARAM_SPECS

KEY_FIELD, CLEAR_FIELD = "api_key", "clear_api_key"


class SecretField(forms.CharField):
    """A password box that never renders a value and cleans to a `Secret` (its repr hides it)."""

    widget = forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"})

    def to_python(self, value: Any) -> Secret:
        return Secret(super().to_python(value))


class ProviderForm(forms.ModelForm):
    """The API key is write-only: blank keeps the stored key, "clear" removes it, the key is never shown."""

    api_key = SecretField(
        label="New API key",
        required=False,
        strip=True,
        help_text="Write-only: leave blank to keep the current key. Stored encrypted; never shown again.",
    )
    clear_api_key = forms.BooleanField(label="Clear the stored key", required=False)
    clear_secret_headers = forms.MultipleChoiceField(
        label="Remove secret headers",
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="Stored credential headers to remove (to replace one, enter it again under extra headers).",
    )
    dropped_params = forms.MultipleChoiceField(
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="Sampling parameters never sent to this upstream (it rejects them).",
    )

    class Meta:
        model = Provider
        # `exclude`, not `fields`: the admin adds Meta.exclude to its own, so `api_key` stays out of the
        # model fields even though the fieldsets name it; the instance's key is never an initial value.
        exclude = ["api_key", "secret_headers", "is_development"]  # noqa: DJ006
        help_texts = {
            "extra_headers": 'A JSON object, e.g. {"X-Title": "chatweb", "api-key": "..."}. Credential headers '
            "(Authorization, api-key, X-Api-Key, names with key, token, secret or password) are stored encrypted "
            "and never shown again; the others stay visible here.",
        }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._had_key = bool(self.instance.pk and self.instance.api_key)
        self._secret_names = self.instance.secret_header_names if self.instance.pk else []
        self._new_secret_headers: dict[str, str] = {}
        self.fields["clear_secret_headers"].choices = [(name, name) for name in self._secret_names]
        known = list(PARAM_SPECS)
        current = [p for p in (self.initial.get("dropped_params") or []) if p not in known]
        self.fields["dropped_params"].choices = [(name, name) for name in known + current]

    def clean_extra_headers(self) -> dict[str, str]:
        """Headers that can be sent as given; the credential ones go to the encrypted store, out of this field."""
        headers = self.cleaned_data.get("extra_headers") or {}
        if not isinstance(headers, dict) or not all(isinstance(v, str) for v in headers.values()):
            raise forms.ValidationError('Enter a JSON object of header names and text values, e.g. {"X-Title": "x"}.')
        problems = [p for p in (header_problem(k, v) for k, v in headers.items()) if p]
        if problems:
            raise forms.ValidationError(f"{problems[0]}: a name is letters, digits and - (no spaces or colons), a "
                                        "value has no line breaks or control characters.")
        self._new_secret_headers = {k: v for k, v in headers.items() if is_secret_header(k)}
        return {k: v for k, v in headers.items() if not is_secret_header(k)}

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        if cleaned.get(KEY_FIELD) and cleaned.get(CLEAR_FIELD):
            self.add_error(CLEAR_FIELD, "Either type a new key or clear the stored one, not both.")
        return cleaned

    def save(self, commit: bool = True) -> Provider:
        provider = super().save(commit=False)
        if self.cleaned_data.get(CLEAR_FIELD):
            provider.api_key = Secret("")
        elif self.cleaned_data.get(KEY_FIELD):
            provider.api_key = self.cleaned_data[KEY_FIELD]
        if self.secret_headers_changed:
            removed = set(self.cleaned_data.get("clear_secret_headers") or [])
            kept = {k: v for k, v in provider.secret_header_values.items() if k not in removed}
            kept = {k: v for k, v in kept.items() if k.lower() not in {n.lower() for n in self._new_secret_headers}}
            provider.secret_header_values = {**kept, **self._new_secret_headers}
        if commit:
            provider.save()
            self.save_m2m()
        return provider

    @property
    def secret_headers_changed(self) -> bool:
        """Whether this submission adds, replaces or removes a credential header (names only in the audit trail)."""
        return bool(self._new_secret_headers or self.cleaned_data.get("clear_secret_headers"))

    @property
    def key_changed(self) -> bool:
        """Whether this submission sets or clears the key (for the audit trail: "api_key changed")."""
        return bool(self.cleaned_data.get(KEY_FIELD)) or (
            self._had_key and bool(self.cleaned_data.get(CLEAR_FIELD))
        )
