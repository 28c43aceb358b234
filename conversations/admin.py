"""The Django admin: providers (write-only keys, presets, connection test, import), models, users, audit, and the
feedback users give on replies (per model, filterable, exportable as CSV)."""

from __future__ import annotations

from collections import defaultdict
from decimal import Decimal
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.views.main import ChangeList
from django.contrib.auth.admin import GroupAdmin
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.contrib.auth.models import Group
from django.core.exceptions import PermissionDenied
from django.db.models import Count, Q, QuerySet, Sum
from django.forms import BaseInlineFormSet, ModelForm
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, StreamingHttpResponse
from django.shortcuts import get_object_or_404
from django.template.defaultfilters import filesizeformat
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.decorators import method_decorator
from django.utils.html import format_html, format_html_join
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_POST

from conversations.admin_forms import ProviderForm
from conversations.audit import (
    CHANGED,
    CREATED,
    DELETED,
    SOURCE_ADMIN,
    audit_describe,
    audit_record,
    audit_record_many,
    audit_set_fields,
    audited_fields,
)
from conversations.catalog.checks import provider_import_models, provider_test_connections
from conversations.catalog.presets import PRESETS, preset_get
from conversations.chat.attachments import attachment_quota_of, attachment_use_by_user
from conversations.chat.feedback import feedback_csv
from conversations.models import (
    ApiKey,
    AuditLog,
    Feedback,
    Model,
    ModelPrice,
    OidcIdentity,
    Provider,
    Team,
    UsageRecord,
    User,
)
from conversations.money import money
from conversations.upstream.errors import UpstreamError, admin_advice
from conversations.usage import budgets

sensitive_key = method_decorator(sensitive_post_parameters("api_key", "extra_headers"))

admin.site.site_header = "chatweb administration"
admin.site.site_title = "chatweb admin"
admin.site.index_title = "Providers, models, users and usage"


# --- the audit trail for every admin write ------------------------------------------------------------


def _form_fields(form: ModelForm, add: bool) -> list[str]:
    """The audited fields a submitted form set (add) or changed (change): names only."""
    audited = set(audited_fields(form._meta.model))
    if add:
        names = audit_set_fields(form.instance)
        names += [
            n for n in form.changed_data if n in audited and form.instance._meta.get_field(n).many_to_many
        ]
    else:
        names = [n for n in form.changed_data if n in audited]
    if isinstance(form, ProviderForm):
        names = [n for n in names if n not in ("api_key", "secret_headers")] + (
            ["api_key"] if form.key_changed else []) + (["secret_headers"] if form.secret_headers_changed else [])
    return names


class AuditedAdmin(admin.ModelAdmin):
    """Writes an AuditLog entry for each creation, change and deletion made here (and in its inlines)."""

    audit_creations = True  # False: a creation is recorded only when it sets an audited field

    def _audit_form(self, request: HttpRequest, form: ModelForm, add: bool) -> None:
        fields = _form_fields(form, add)
        if add and (fields or self.audit_creations):
            audit_record(
                actor=request.user, action=CREATED, obj=form.instance, fields=fields, source=SOURCE_ADMIN
            )
        elif not add and fields:
            audit_record(
                actor=request.user, action=CHANGED, obj=form.instance, fields=fields, source=SOURCE_ADMIN
            )

    def save_related(self, request: HttpRequest, form: ModelForm, formsets: list, change: bool) -> None:
        super().save_related(request, form, formsets, change)
        self._audit_form(request, form, add=not change)
        for formset in formsets:
            for inline_form in formset.forms:
                if inline_form in formset.deleted_forms or not inline_form.instance.pk:
                    continue
                if inline_form.instance in formset.new_objects:
                    self._audit_form(request, inline_form, add=True)
                elif inline_form.has_changed():
                    self._audit_form(request, inline_form, add=False)

    def save_formset(
        self, request: HttpRequest, form: ModelForm, formset: BaseInlineFormSet, change: bool
    ) -> None:
        gone = [f.instance for f in formset.deleted_forms if f.instance.pk]  # before deletion clears the pk
        if gone and audited_fields(formset.model):
            audit_record_many(actor=request.user, action=DELETED, objs=gone, source=SOURCE_ADMIN)
        super().save_formset(request, form, formset, change)

    def delete_model(self, request: HttpRequest, obj: Any) -> None:
        audit_record(actor=request.user, action=DELETED, obj=obj, source=SOURCE_ADMIN)
        super().delete_model(request, obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet) -> None:
        audit_record_many(actor=request.user, action=DELETED, objs=list(queryset), source=SOURCE_ADMIN)
        super().delete_queryset(request, queryset)


# --- models -------------------------------------------------------------------------------------------


class NeedsPricingFilter(admin.SimpleListFilter):
    title = "pricing"
    parameter_name = "needs_pricing"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("yes", "Needs pricing"), ("no", "Priced")]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        unpriced = Q(input_price__isnull=True) | Q(output_price__isnull=True)
        if self.value() == "yes":
            return queryset.filter(unpriced)
        if self.value() == "no":
            return queryset.exclude(unpriced)
        return queryset


def _priced(obj: Model) -> bool:
    return obj.priced


class GroupChoicesMixin:
    """Reads the groups once per page, not once per inline row (a select per row would query each time)."""

    def formfield_for_manytomany(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        formfield = super().formfield_for_manytomany(db_field, request, **kwargs)  # type: ignore[misc]
        if db_field.name == "allowed_groups" and formfield is not None:
            formfield.choices = list(formfield.choices)
        return formfield


class ModelInline(GroupChoicesMixin, admin.TabularInline):
    model = Model
    extra = 0
    show_change_link = True
    fields = (
        "upstream_id",
        "alias",
        "input_price",
        "output_price",
        "context_length",
        "max_output_tokens",
        "api",
        "vision",
        "enabled",
        "allowed_groups",
        "priced",
    )
    readonly_fields = ("priced",)

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).prefetch_related("allowed_groups")

    @admin.display(boolean=True, description="priced")
    def priced(self, obj: Model) -> bool:
        return _priced(obj)


@admin.register(Model)
class LlmModelAdmin(GroupChoicesMixin, AuditedAdmin):
    list_display = (
        "public_name",
        "display_name",
        "provider",
        "input_price",
        "output_price",
        "context_length",
        "enabled",
        "is_default",
        "priced",
    )
    list_editable = ("input_price", "output_price", "enabled")
    list_filter = (NeedsPricingFilter, "enabled", "api", "vision", "provider")
    list_select_related = ("provider",)
    search_fields = ("public_name", "upstream_id", "alias")
    readonly_fields = ("public_name", "created_at", "updated_at", "price_history")
    filter_horizontal = ("allowed_groups",)
    fields = (
        "provider",
        "upstream_id",
        "alias",
        "public_name",
        "display_name",
        "description",
        "input_price",
        "output_price",
        "context_length",
        "max_output_tokens",
        "api",
        "vision",
        "image_tokens",
        "enabled",
        "is_default",
        "allowed_groups",
        "created_at",
        "updated_at",
        "price_history",
    )

    @admin.display(description="price history")
    def price_history(self, obj: Model) -> str:
        """Newest first, read-only (a read-only field, not an inline: the change form's fields stay as they were):
        the ledger's past rows were billed by these prices."""
        if obj.pk is None:
            return "-"
        rows = ModelPrice.objects.filter(model=obj).select_related("changed_by")[:50]
        return format_html(
            "<table class=\"price-history\"><thead><tr><th>from</th><th>input</th><th>output</th><th>by</th>"
            "<th>through</th></tr></thead><tbody>{}</tbody></table>",
            format_html_join(
                "", "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                (
                    (f"{p.effective_from:%Y-%m-%d %H:%M} UTC", p.input_price if p.input_price is not None else "-",
                     p.output_price if p.output_price is not None else "-",
                     p.changed_by.get_username() if p.changed_by else "-", p.source or "-")
                    for p in rows
                ),
            ) or "",
        ) if rows else "no price change recorded"

    @admin.display(boolean=True, description="priced", ordering="input_price")
    def priced(self, obj: Model) -> bool:
        return _priced(obj)

    def save_model(self, request: HttpRequest, obj: Model, form: ModelForm, change: bool) -> None:
        if obj.is_default:  # at most one default: the one flagged last wins
            others = Model.objects.filter(is_default=True).exclude(pk=obj.pk)
            for other in others:
                audit_record(actor=request.user, action=CHANGED, obj=other, fields=["is_default"], source=SOURCE_ADMIN)
            others.update(is_default=False)
        super().save_model(request, obj, form, change)


# --- providers ----------------------------------------------------------------------------------------


@admin.register(Provider)
class ProviderAdmin(AuditedAdmin):
    form = ProviderForm
    inlines = [ModelInline]
    list_display = (
        "name",
        "base_url",
        "key_status",
        "enabled",
        "model_count",
        "unpriced_count",
        "is_development",
    )
    list_filter = ("enabled",)
    search_fields = ("name", "base_url")
    readonly_fields = ("key_status", "secret_headers_status", "is_development")
    actions = ["test_connection", "import_models"]
    fieldsets = (
        (None, {"fields": ("name", "base_url", "enabled", "is_development")}),
        ("API key", {"fields": ("key_status", "api_key", "clear_api_key")}),
        ("Compatibility", {"fields": ("send_stream_options", "cost_lookup", "dropped_params", "extra_headers",
                                      "secret_headers_status", "clear_secret_headers")}),
        (
            "Timeouts and retries",
            {
                "classes": ("collapse",),
                "fields": ("connect_timeout", "first_token_timeout", "read_timeout", "max_retries"),
            },
        ),
    )

    def get_fieldsets(self, request: HttpRequest, obj: Provider | None = None) -> Any:
        fieldsets = super().get_fieldsets(request, obj)
        if obj is None or self.has_change_permission(request, obj):
            return fieldsets
        # View-only: the admin would show every field read-only, with its value. Never the key's.
        hidden = {"api_key", "clear_api_key", "clear_secret_headers"}
        return [
            (name, {**opts, "fields": [f for f in opts["fields"] if f not in hidden]})
            for name, opts in fieldsets
        ]

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        unpriced = Q(models__input_price__isnull=True) | Q(models__output_price__isnull=True)
        return (
            super()
            .get_queryset(request)
            .annotate(
                model_total=Count("models", distinct=True), unpriced_total=Count("models", filter=unpriced)
            )
        )

    @admin.display(description="stored key")
    def key_status(self, obj: Provider) -> str:
        if obj.pk is None or not obj.api_key:
            return "not set"
        return f"set, ending in …{obj.api_key_last4}"

    @admin.display(description="secret headers")
    def secret_headers_status(self, obj: Provider) -> str:
        names = obj.secret_header_names if obj.pk is not None else []
        return f"set: {', '.join(names)} (values never shown)" if names else "none"

    @admin.display(description="models", ordering="model_total")
    def model_count(self, obj: Provider) -> int:
        return obj.model_total

    @admin.display(description="need pricing", ordering="unpriced_total")
    def unpriced_count(self, obj: Provider) -> int:
        return obj.unpriced_total

    # The add page starts from a preset: /admin/conversations/provider/add/?preset=deepinfra
    def get_changeform_initial_data(self, request: HttpRequest) -> dict[str, Any]:
        initial = super().get_changeform_initial_data(request)
        preset = preset_get(request.GET.get("preset"))
        if preset is not None:
            initial = {**preset.initial(), **{k: v for k, v in initial.items() if k != "preset"}}
            if Provider.objects.filter(name=preset.slug).exists():
                initial.pop("name")
        return initial

    @sensitive_key
    def changeform_view(
        self,
        request: HttpRequest,
        object_id: str | None = None,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        extra_context = {
            **(extra_context or {}),
            "presets": PRESETS.values(),
            "preset": preset_get(request.GET.get("preset")),
            "can_import": self._can_import(request),
        }
        return super().changeform_view(request, object_id, form_url, extra_context)

    # --- test connection and import: list actions and buttons on the change page ---

    def get_urls(self) -> list:
        wrap = self.admin_site.admin_view
        return [
            path(
                "<path:object_id>/test-connection/",
                wrap(self.test_connection_view),
                name="conversations_provider_test_connection",
            ),
            path(
                "<path:object_id>/import-models/",
                wrap(self.import_models_view),
                name="conversations_provider_import_models",
            ),
            *super().get_urls(),
        ]

    def _provider_or_403(self, request: HttpRequest, object_id: str) -> Provider:
        provider = get_object_or_404(Provider.objects.prefetch_related("models"), pk=object_id)
        if not self.has_change_permission(request, provider):
            raise PermissionDenied
        return provider

    def _render_checks(self, request: HttpRequest, providers: list[Provider]) -> TemplateResponse:
        checks = provider_test_connections(providers=providers)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": "Test connection",
            "checks": checks,
        }
        return TemplateResponse(request, "admin/conversations/provider/test_connection.html", context)

    @method_decorator(require_POST)
    def test_connection_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        return self._render_checks(request, [self._provider_or_403(request, object_id)])

    @admin.action(description="Test connection (list models, one-token reply)", permissions=["change"])
    def test_connection(self, request: HttpRequest, queryset: QuerySet) -> HttpResponse:
        return self._render_checks(request, list(queryset.prefetch_related("models")))

    def _import(self, request: HttpRequest, provider: Provider) -> None:
        try:
            result = provider_import_models(provider=provider, actor=request.user)
        except UpstreamError as err:
            upstream = f" The upstream said: {err.detail}." if err.detail else ""
            status = f", HTTP {err.status}" if err.status else ""
            self.message_user(
                request,
                f"{provider}: import failed: chatweb could not read the model list (GET {provider.base_url}/models"
                f"{status}, {err.code}): {err.message}{upstream} What to check: {admin_advice(err.code)}",
                messages.ERROR,
            )
            return
        skipped = f", {len(result.skipped)} skipped (name taken or invalid)" if result.skipped else ""
        self.message_user(
            request,
            f"{provider}: {len(result.created)} model(s) imported (disabled, unpriced: price, then enable), "
            f"{len(result.existing)} already known{skipped}.",
            messages.SUCCESS if result.created or result.existing else messages.WARNING,
        )

    def _can_import(self, request: HttpRequest) -> bool:
        return request.user.has_perm("conversations.add_model")

    @method_decorator(require_POST)
    def import_models_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        provider = self._provider_or_403(request, object_id)
        if not self._can_import(request):
            raise PermissionDenied
        self._import(request, provider)
        changelist = reverse("admin:conversations_model_changelist")
        return HttpResponseRedirect(f"{changelist}?provider__id__exact={provider.pk}&needs_pricing=yes")

    @admin.action(description="Import models from the upstream's /models", permissions=["import"])
    def import_models(self, request: HttpRequest, queryset: QuerySet) -> None:
        for provider in queryset:
            self._import(request, provider)

    def has_import_permission(self, request: HttpRequest) -> bool:
        return self.has_change_permission(request) and self._can_import(request)


# --- users: budget, this month's spend, personal API keys ---------------------------------------------


class ApiKeyInline(admin.TabularInline):
    """A user's personal keys: prefix and dates only (the hash is never shown)."""

    model = ApiKey
    extra = 0
    can_delete = False
    fields = ("prefix", "name", "created_at", "last_used_at", "revoked_at", "rpm_limit")
    readonly_fields = fields
    show_change_link = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


def month_spend_by_user(users: list[User]) -> dict[int, Decimal]:
    """This calendar month's spend of each user (in their own time zone): one query per time zone."""
    by_zone: dict[str, list[User]] = defaultdict(list)
    for user in users:
        by_zone[user.timezone or "UTC"].append(user)
    spend: dict[int, Decimal] = {user.pk: Decimal(0) for user in users}
    for zone_users in by_zone.values():
        rows = (
            UsageRecord.objects.filter(
                user__in=zone_users, created_at__gte=budgets.month_start(zone_users[0])
            )
            .values("user")
            .annotate(total=Sum("estimated_cost"))
        )
        for row in rows:
            spend[row["user"]] = row["total"] or Decimal(0)
    return spend


class UserChangeList(ChangeList):
    def get_results(self, request: HttpRequest) -> None:
        super().get_results(request)
        spend = month_spend_by_user(list(self.result_list))
        use = attachment_use_by_user(user.pk for user in self.result_list)
        for user in self.result_list:
            user.spend_this_month = spend[user.pk]
            user.attachment_bytes = use[user.pk]


class OidcIdentityInline(admin.TabularInline):
    """Who the user is at the identity provider; deleting a row unlinks it (their next sign-in links again or
    creates an account, as for a first one)."""

    model = OidcIdentity
    extra = 0
    fields = ("issuer", "subject", "created_at", "last_sign_in")
    readonly_fields = fields
    verbose_name = "single sign-on identity"
    verbose_name_plural = "single sign-on identities"

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(User)
class UserAdmin(AuditedAdmin, DjangoUserAdmin):
    audit_creations = False
    inlines = [ApiKeyInline, OidcIdentityInline]
    list_display = ("username", "email", "is_staff", "is_active", "monthly_budget", "month_spend", "attachment_use")
    list_editable = ("monthly_budget",)  # saved through save_related: the audit trail records each change
    readonly_fields = ("month_spend", "attachment_use")
    fieldsets = (
        *DjangoUserAdmin.fieldsets,
        ("Budget", {"fields": ("monthly_budget", "month_spend", "timezone")}),
        ("Chat", {"fields": ("default_model",)}),
        ("Attachments", {"fields": ("attachment_quota", "attachment_use")}),
    )
    add_fieldsets = (
        *DjangoUserAdmin.add_fieldsets,
        ("Budget", {"fields": ("monthly_budget", "timezone")}),
    )

    def get_inlines(self, request: HttpRequest, obj: User | None) -> list:
        return super().get_inlines(request, obj) if obj is not None else []  # a new user has no keys yet

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        return UserChangeList

    @admin.display(description="spent this month (USD)")
    def month_spend(self, obj: User) -> str:
        if obj.pk is None:
            return "-"
        spent = getattr(obj, "spend_this_month", None)  # the list computes it for the whole page
        return money(budgets.month_spend(obj) if spent is None else spent)

    @admin.display(description="attachments stored")
    def attachment_use(self, obj: User) -> str:
        if obj.pk is None:
            return "-"
        used = getattr(obj, "attachment_bytes", None)  # the list computes it for the whole page
        if used is None:
            used = attachment_use_by_user([obj.pk])[obj.pk]
        quota = attachment_quota_of(obj.attachment_quota)
        return f"{filesizeformat(used)} of {filesizeformat(quota)}"


# --- the audit log: read-only -------------------------------------------------------------------------


@admin.register(AuditLog)
class AuditLogAdmin(admin.ModelAdmin):
    list_display = ("created_at", "actor", "source", "object_type", "object", "what")
    list_filter = ("object_type", "action", "source")
    list_select_related = ("actor",)
    search_fields = ("object_repr", "actor__username")
    date_hierarchy = "created_at"

    @admin.display(description="object", ordering="object_repr")
    def object(self, obj: AuditLog) -> str:
        return obj.object_repr

    @admin.display(description="what")
    def what(self, obj: AuditLog) -> str:
        return audit_describe(obj)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


# --- groups as teams: shared budget and managers ------------------------------------------------------------


class TeamInline(admin.StackedInline):
    model = Team
    can_delete = False
    extra = 1
    max_num = 1
    verbose_name = "team settings"
    verbose_name_plural = "team settings (shared monthly budget, managers who see the group's usage)"
    filter_horizontal = ("managers",)


admin.site.unregister(Group)


@admin.register(Group)
class TeamGroupAdmin(AuditedAdmin, GroupAdmin):
    """Django's group page with the group's budget and managers (members are set on each user's page)."""

    inlines = [TeamInline]
    audit_creations = False


# --- feedback on replies: read-only, per model, exportable ----------------------------------------------------


@admin.register(Feedback)
class FeedbackAdmin(admin.ModelAdmin):
    """What users said of replies. The list opens with a table per model (of the rows the filters select); the
    export action writes the selected rows as CSV."""

    list_display = ("updated_at", "rating_shown", "model_name", "provider_name", "user", "comment_shown")
    list_filter = (
        "rating",
        ("model_name", admin.AllValuesFieldListFilter),
        ("provider_name", admin.AllValuesFieldListFilter),
        ("updated_at", admin.DateFieldListFilter),
    )
    list_select_related = ("user",)
    search_fields = ("comment",)
    date_hierarchy = "updated_at"
    actions = ["export_csv"]
    readonly_fields = ("user", "message", "model", "model_name", "provider_name", "rating", "comment",
                       "created_at", "updated_at")

    @admin.display(description="rating", ordering="rating")
    def rating_shown(self, obj: Feedback) -> str:
        return "up" if obj.rating == Feedback.Rating.UP else "down"

    @admin.display(description="comment")
    def comment_shown(self, obj: Feedback) -> str:
        return obj.comment if len(obj.comment) <= 120 else obj.comment[:119] + "…"

    @admin.action(description="Export the selected feedback as CSV")
    def export_csv(self, request: HttpRequest, queryset: QuerySet[Feedback]) -> StreamingHttpResponse:
        rows = queryset.select_related("user", "message").order_by("-updated_at", "-id").iterator(chunk_size=500)
        response = StreamingHttpResponse(feedback_csv(rows), content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = 'attachment; filename="feedback.csv"'
        return response

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        response = super().changelist_view(request, extra_context)
        context = getattr(response, "context_data", None)
        if context and "cl" in context:
            per_model = (
                context["cl"].queryset.order_by().values("model_name", "provider_name")
                .annotate(
                    up=Count("pk", filter=Q(rating=Feedback.Rating.UP)),
                    down=Count("pk", filter=Q(rating=Feedback.Rating.DOWN)),
                    comments=Count("pk", filter=~Q(comment="")),
                )
                .order_by("-down", "model_name")
            )
            context["feedback_per_model"] = list(per_model)
        return response

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
