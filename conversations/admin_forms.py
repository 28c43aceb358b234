"""Admin forms: the provider form with its write-only API key."""

from __future__ import annotations

from typing import Any

from django import forms

from conversations.catalog.crypto import Secret
from conversations.models import Provider
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
    dropped_params = forms.MultipleChoiceField(
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="Sampling parameters never sent to this upstream (it rejects them).",
    )

    class Meta:
        model = Provider
        # `exclude`, not `fields`: the admin adds Meta.exclude to its own, so `api_key` stays out of the
        # model fields even though the fieldsets name it; the instance's key is never an initial value.
        exclude = ["api_key", "is_development"]  # noqa: DJ006

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._had_key = bool(self.instance.pk and self.instance.api_key)
        known = list(PARAM_SPECS)
        current = [p for p in (self.initial.get("dropped_params") or []) if p not in known]
        self.fields["dropped_params"].choices = [(name, name) for name in known + current]

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
        if commit:
            provider.save()
            self.save_m2m()
        return provider

    @property
    def key_changed(self) -> bool:
        """Whether this submission sets or clears the key (for the audit trail: "api_key changed")."""
        return bool(self.cleaned_data.get(KEY_FIELD)) or (
            self._had_key and bool(self.cleaned_data.get(CLEAR_FIELD))
        )
