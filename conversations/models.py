"""The data model: users, providers and their models, conversations, messages (one row each), the usage ledger."""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Collection, Mapping
from decimal import Decimal
from typing import Any, TypedDict

from django.conf import settings
from django.contrib.auth.models import AbstractUser, Group
from django.core.exceptions import ValidationError
from django.core.files.storage import Storage, storages
from django.db import models
from django.db.models import Exists, OuterRef
from django.db.models.functions import Lower
from django.utils import timezone
from django.utils.safestring import SafeString

from conversations.crypto import EncryptedTextField, Secret


class _Digits(TypedDict):
    max_digits: int
    decimal_places: int


USD: _Digits = {"max_digits": 20, "decimal_places": 10}  # money: exact, at least 10 decimal places
PRICE: _Digits = {"max_digits": 14, "decimal_places": 6}  # USD per 1M tokens


class User(AbstractUser):
    monthly_budget = models.DecimalField(
        max_digits=12,
        decimal_places=4,
        null=True,
        blank=True,
        help_text="USD per calendar month; empty: no cap.",
    )
    timezone = models.CharField(max_length=64, default="UTC", help_text="IANA name, for the usage dashboard.")
    default_model = models.ForeignKey(
        "Model",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="The model new chats open with (when still usable); empty: the site's default.",
    )
    attachment_quota = models.PositiveBigIntegerField(
        null=True,
        blank=True,
        verbose_name="attachment quota (bytes)",
        help_text="What this user's attachments may take in storage; empty: CHATWEB_ATTACHMENT_QUOTA_BYTES.",
    )


def validate_base_url(value: str) -> None:
    # URLValidator refuses single-label hosts such as `ollama:11434`, common in self-hosted setups.
    if not value.startswith(("http://", "https://")) or len(value) < 10 or any(c.isspace() for c in value):
        raise ValidationError("Enter an http:// or https:// URL, e.g. https://api.deepinfra.com/v1/openai")


class Provider(models.Model):
    name = models.SlugField(max_length=64, unique=True, help_text="Unique slug; part of model public names.")
    base_url = models.CharField(max_length=500, validators=[validate_base_url])
    api_key = EncryptedTextField(blank=True, default="", help_text="Encrypted at rest; never shown again.")
    extra_headers = models.JSONField(default=dict, blank=True, help_text="Extra request headers.")
    # Headers that carry credentials (`api-key`, ...), as one JSON object: encrypted at rest like the key.
    secret_headers = EncryptedTextField(
        blank=True, default="", help_text="Credential headers (JSON), encrypted at rest; never shown again."
    )
    send_stream_options = models.BooleanField(
        default=True,
        help_text="Ask for usage in streams (stream_options.include_usage); off for upstreams that reject it.",
    )
    dropped_params = models.JSONField(
        default=list, blank=True, help_text="Sampling parameters this upstream rejects."
    )
    connect_timeout = models.FloatField(default=10.0)
    first_token_timeout = models.FloatField(default=120.0)
    read_timeout = models.FloatField(default=60.0, help_text="Seconds allowed between two chunks.")
    max_retries = models.PositiveSmallIntegerField(default=2)
    enabled = models.BooleanField(default=True)
    is_development = models.BooleanField(default=False, help_text="The built-in development upstream.")
    cost_lookup = models.BooleanField(
        default=False,
        help_text="After each reply, ask the provider its own cost of it (OpenRouter's GET /generation?id=) and "
        "record it beside the billed one.",
    )
    unreachable_at = models.DateTimeField(
        null=True,
        blank=True,
        editable=False,
        help_text="When chatweb last could not connect (a request or a connection test); a test that works clears it.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def api_key_last4(self) -> str:
        return self.api_key.last4 if self.api_key else ""

    @property
    def secret_header_values(self) -> dict[str, str]:
        """The credential headers, decrypted: only for the request to the provider."""
        return json.loads(str.__str__(self.secret_headers)) if self.secret_headers else {}

    @secret_header_values.setter
    def secret_header_values(self, headers: Mapping[str, str]) -> None:
        self.secret_headers = Secret(json.dumps(dict(headers), ensure_ascii=False) if headers else "")

    @property
    def secret_header_names(self) -> list[str]:
        return sorted(self.secret_header_values)


class ModelQuerySet(models.QuerySet):
    def usable(self) -> ModelQuerySet:
        """Enabled models on an enabled provider, whoever asks (work chatweb does for itself, such as titles)."""
        return self.filter(enabled=True, provider__enabled=True)

    def usable_by(self, user: User | None) -> ModelQuerySet:
        """The one rule of who may call which model: usable, and open to no group in particular (everyone) or to
        one of the user's groups. The admission reads it through conversations/catalog/access.py, one
        hand-written statement held equal to this queryset by tests/catalog/test_access.py."""
        links = Model.allowed_groups.through.objects
        restricted = Exists(links.filter(model_id=OuterRef("pk")))
        if not getattr(user, "is_authenticated", False):
            return self.usable().filter(~restricted)
        mine = Exists(links.filter(model_id=OuterRef("pk"), group__user=user))
        return self.usable().filter(~restricted | mine)


class Model(models.Model):
    class Api(models.TextChoices):
        CHAT = "chat", "chat completions"
        COMPLETIONS = "completions", "completions (prompt only)"

    class ImageTokens(models.TextChoices):  # the rules of conversations/upstream/tokens.py `image_tokens`
        OPENAI = "openai", "OpenAI's tiles (85 + 170 per 512-px tile)"
        ANTHROPIC = "anthropic", "Anthropic's pixels (width × height / 750)"

    provider = models.ForeignKey(Provider, on_delete=models.CASCADE, related_name="models")
    upstream_id = models.CharField(max_length=255, help_text="The upstream's model id.")
    alias = models.CharField(max_length=255, blank=True, help_text='Public name; default "<provider>/<id>".')
    public_name = models.CharField(max_length=320, unique=True, editable=False)
    display_name = models.CharField(
        max_length=200, blank=True, default="", help_text="What the model picker shows; empty: the public name."
    )
    description = models.CharField(
        max_length=300, blank=True, default="", help_text="One short line under the name in the model picker."
    )
    input_price = models.DecimalField(**PRICE, null=True, blank=True, help_text="USD per 1M prompt tokens.")
    output_price = models.DecimalField(
        **PRICE, null=True, blank=True, help_text="USD per 1M completion tokens."
    )
    context_length = models.PositiveIntegerField(null=True, blank=True)
    max_output_tokens = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="Default reply cap, used for budget reservations when a request sets none.",
    )
    api = models.CharField(max_length=16, choices=Api.choices, default=Api.CHAT)
    vision = models.BooleanField(default=False, help_text="Takes images (attached images go to it as data URLs).")
    image_tokens = models.CharField(
        max_length=16, choices=ImageTokens.choices, default=ImageTokens.OPENAI,
        help_text="How the provider counts an image's prompt tokens, for estimates and budget reservations.",
    )
    enabled = models.BooleanField(default=True)
    is_default = models.BooleanField(
        default=False,
        verbose_name="default for new chats",
        help_text="New chats open with this model unless the user chose their own (at most one model).",
    )
    allowed_groups = models.ManyToManyField(
        Group,
        blank=True,
        related_name="+",
        help_text="Empty: every user. Otherwise only members of these groups.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    # Who may use which model: `Model.objects.usable_by(user)`, read on the admission's path through
    # conversations/catalog/access.py.
    objects = ModelQuerySet.as_manager()

    class Meta:
        ordering = ["public_name"]
        constraints = [
            models.UniqueConstraint(fields=["provider", "upstream_id"], name="model_unique_per_provider"),
            models.UniqueConstraint(
                fields=["is_default"], condition=models.Q(is_default=True), name="model_one_default"
            ),
        ]

    def __str__(self) -> str:
        return self.public_name

    def save(self, *args, **kwargs) -> None:
        self.public_name = self.alias or f"{self.provider.name}/{self.upstream_id}"
        super().save(*args, **kwargs)

    def validate_constraints(self, exclude: Collection[str] | None = None) -> None:
        # Flagging another model as the default is allowed: whoever saves it clears the old flag first
        # (the admin's save_model, catalog.defaults.model_default_set); the database keeps the one-default rule.
        super().validate_constraints(exclude={*(exclude or ()), "is_default"})

    @property
    def label(self) -> str:
        """The name people see: the display name, else the public name."""
        return self.display_name or self.public_name

    @property
    def priced(self) -> bool:
        return self.input_price is not None and self.output_price is not None


class FolderQuerySet(models.QuerySet):
    def for_user(self, user: User) -> FolderQuerySet:
        """The one door to a user's folders."""
        if not getattr(user, "is_authenticated", False):
            return self.none()
        return self.filter(owner=user)


class Folder(models.Model):
    """A user's named group of conversations in the sidebar. Deleting it keeps its conversations (moved out)."""

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="folders")
    name = models.CharField(max_length=100)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = FolderQuerySet.as_manager()

    class Meta:
        ordering = [Lower("name"), "id"]
        constraints = [models.UniqueConstraint(Lower("name"), "owner", name="folder_unique_name")]

    def __str__(self) -> str:
        return self.name


class ConversationQuerySet(models.QuerySet):
    def for_user(self, user: User) -> ConversationQuerySet:
        """The one door to a user's conversations."""
        if not getattr(user, "is_authenticated", False):
            return self.none()
        return self.filter(owner=user)


class Conversation(models.Model):
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="conversations"
    )
    title = models.CharField(max_length=200, blank=True, default="")
    model = models.ForeignKey(Model, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    system_prompt = models.TextField(blank=True, default="")
    params = models.JSONField(default=dict, blank=True)
    active_leaf = models.ForeignKey(
        "Message",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="The last message of the branch shown (replies and edits branch the conversation).",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    # Where an imported conversation came from ("chatgpt:<its id>", "chatweb:<digest>"): importing the same
    # file again skips it (conversations/chat/importing.py). Empty for conversations made here.
    import_key = models.CharField(max_length=200, blank=True, default="", editable=False)
    # A temporary chat is not listed, searched or shared, and is deleted once no tab holds it open
    # (conversations/chat/temporary.py); its usage stays in the ledger.
    temporary = models.BooleanField(default=False, editable=False)
    # Where the owner keeps it in the sidebar (a folder of theirs, pinned on top): moving or pinning a
    # conversation is no activity, so neither changes `updated_at`.
    folder = models.ForeignKey(
        Folder, null=True, blank=True, on_delete=models.SET_NULL, related_name="conversations"
    )
    pinned_at = models.DateTimeField(null=True, blank=True, help_text="When it was pinned; empty: not pinned.")

    objects = ConversationQuerySet.as_manager()

    class Meta:
        indexes = [models.Index(fields=["owner", "-updated_at"], name="conversation_owner_recent")]
        constraints = [
            models.UniqueConstraint(
                fields=["owner", "import_key"], condition=~models.Q(import_key=""), name="conversation_import_once"
            )
        ]

    def __str__(self) -> str:
        return self.title or f"Conversation {self.pk}"


class MessageQuerySet(models.QuerySet):
    def for_user(self, user: User) -> MessageQuerySet:
        if not getattr(user, "is_authenticated", False):
            return self.none()
        return self.filter(conversation__owner=user)


class Message(models.Model):
    class Role(models.TextChoices):
        SYSTEM = "system"
        USER = "user"
        ASSISTANT = "assistant"

    class Status(models.TextChoices):
        PENDING = "pending"
        STREAMING = "streaming"
        COMPLETE = "complete"
        STOPPED = "stopped"
        ERROR = "error"
        INTERRUPTED = "interrupted"

    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="messages")
    parent = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.CASCADE, related_name="children"
    )
    role = models.CharField(max_length=16, choices=Role.choices)
    content = models.TextField(blank=True, default="")
    reasoning = models.TextField(blank=True, default="")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.COMPLETE)
    finish_reason = models.CharField(max_length=32, blank=True, default="")
    error_code = models.CharField(max_length=64, blank=True, default="")
    error_message = models.TextField(blank=True, default="")
    model = models.ForeignKey(Model, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    model_name = models.CharField(max_length=320, blank=True, default="", help_text="Public name as it was.")
    seq = models.PositiveIntegerField(default=0, help_text="Delta events sent so far (resume point).")
    heartbeat_at = models.DateTimeField(null=True, blank=True, help_text="Last sign of life while streaming.")
    # A cache of `content` rendered by conversations/chat/rendering.py, valid while `content_html_key` matches
    # rendering.html_key(content) (the key covers the text and the rendering policy's version).
    content_html = models.TextField(blank=True, default="", editable=False)
    content_html_key = models.CharField(max_length=32, blank=True, default="", editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = MessageQuerySet.as_manager()

    # Not stored: what the chat page shows beside a message, set on the messages of a page before they are
    # rendered (conversations/chat/selectors.py branch_messages, rendering.py messages_render, views.py decorate).
    # Declared here for the type checker only; reading one before it is set raises AttributeError.
    sibling_ids: list[int]
    html: SafeString | None
    usage_info: dict[str, Any] | None
    version_index: int
    version_count: int
    version_prev: int | None
    version_next: int | None
    attachment_list: list[Attachment]
    feedback_rating: str | None  # "up", "down" or None: the owner's feedback on a reply
    feedback_comment: str

    class Meta:
        ordering = ["created_at", "id"]
        indexes = [
            models.Index(fields=["conversation", "created_at"], name="message_conversation_time"),
            models.Index(fields=["status", "heartbeat_at"], name="message_status_heartbeat"),
        ]

    def __str__(self) -> str:
        return f"{self.role} #{self.pk}"


class ApiKeyQuerySet(models.QuerySet):
    def for_user(self, user: User) -> ApiKeyQuerySet:
        if not getattr(user, "is_authenticated", False):
            return self.none()
        return self.filter(user=user)

    def active(self) -> ApiKeyQuerySet:
        return self.filter(revoked_at__isnull=True)


class ApiKey(models.Model):
    """A personal key for the OpenAI-compatible API: stored as a SHA-256 hash, shown once."""

    PREFIX = "cw-"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=100, blank=True, default="")
    prefix = models.CharField(max_length=16, unique=True, help_text="Shown to identify the key.")
    hashed = models.CharField(max_length=64, unique=True)
    rpm_limit = models.PositiveIntegerField(
        null=True, blank=True, help_text="Requests per minute; empty: none."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    objects = ApiKeyQuerySet.as_manager()

    # Whether a budget limits the key's user, as the API's key lookup read it with the key (None: not read).
    budgeted: bool | None = None

    def __str__(self) -> str:
        return f"{self.prefix}…"

    @staticmethod
    def hash(raw: str) -> str:
        # Keys are 256-bit random strings: a plain SHA-256 is the right hash (no stretching needed).
        return hashlib.sha256(raw.encode()).hexdigest()

    @classmethod
    def generate(cls) -> tuple[str, str, str]:
        """A new random key as (raw key, prefix, hash)."""
        raw = cls.PREFIX + secrets.token_urlsafe(32)
        return raw, raw[:12], cls.hash(raw)


class UsageRecordQuerySet(models.QuerySet):
    def for_user(self, user: User) -> UsageRecordQuerySet:
        if not getattr(user, "is_authenticated", False):
            return self.none()
        return self.filter(user=user)


class UsageRecord(models.Model):
    """The ledger: one row per reply or API call, with names and prices as they were."""

    class Source(models.TextChoices):
        CHAT = "chat"
        API = "api"

    class CostSource(models.TextChoices):
        REPORTED = "reported", "reported by the provider"
        PRICE = "price", "tokens × the model's prices"
        ESTIMATED = "estimated", "no price known"
        RECONCILED = "reconciled", "matched to the provider's own account"

    class Outcome(models.TextChoices):
        COMPLETE = "complete", "the reply finished"
        STOPPED = "stopped", "stopped by the user (or the client went away)"
        CUT = "cut", "the stream ended before the reply finished"
        FAILED = "failed", "the provider reported an error (or was never reached)"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="usage_records")
    source = models.CharField(max_length=8, choices=Source.choices)
    conversation = models.ForeignKey(
        Conversation, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    message = models.ForeignKey(
        Message, null=True, blank=True, on_delete=models.SET_NULL, related_name="usage"
    )
    api_key = models.ForeignKey(ApiKey, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    provider_name = models.CharField(max_length=64)
    model_name = models.CharField(max_length=320)
    prompt_tokens = models.PositiveIntegerField(default=0)
    completion_tokens = models.PositiveIntegerField(default=0)
    total_tokens = models.PositiveIntegerField(default=0)
    estimated_cost = models.DecimalField(**USD, default=Decimal(0))
    cost_source = models.CharField(max_length=16, choices=CostSource.choices)
    usage_estimated = models.BooleanField(default=False)
    finish_reason = models.CharField(max_length=32, blank=True, default="")
    # How the reply ended: a stopped, cut or failed one is billed for what was produced, and says so.
    outcome = models.CharField(max_length=8, choices=Outcome.choices, default=Outcome.COMPLETE)
    ttft_ms = models.PositiveIntegerField(null=True, blank=True)
    duration_ms = models.PositiveIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    # Cost truth: the provider's id of the reply, the prices it was billed at, the provider's own figure.
    upstream_request_id = models.CharField(max_length=255, blank=True, default="")
    input_price = models.DecimalField(**PRICE, null=True, blank=True, help_text="As billed, per 1M tokens.")
    output_price = models.DecimalField(**PRICE, null=True, blank=True, help_text="As billed, per 1M tokens.")
    reconciled_cost = models.DecimalField(
        **USD, null=True, blank=True, help_text="The provider's own cost, once reconciled (USD)."
    )

    objects = UsageRecordQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["user", "created_at"], name="usage_user_time"),
            models.Index(fields=["created_at"], name="usage_time"),
            models.Index(fields=["provider_name", "upstream_request_id"], name="usage_upstream_id"),
        ]

    def __str__(self) -> str:
        return f"{self.model_name} {self.total_tokens} tokens"


_SUMS = [
    "requests",
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "cost_units",
    "unpriced_requests",
    "estimated_usage_requests",
]


class UsageDay(models.Model):
    """The ledger rolled up per local day of its owner (in `tz`), provider and model, kept on write: what
    usage pages read for totals, days, models, providers and users."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    tz = models.CharField(max_length=64, help_text="The owner's time zone the day was counted in.")
    day = models.DateField()
    provider_name = models.CharField(max_length=64)
    model_name = models.CharField(max_length=320)
    requests = models.BigIntegerField(default=0)
    prompt_tokens = models.BigIntegerField(default=0)
    completion_tokens = models.BigIntegerField(default=0)
    total_tokens = models.BigIntegerField(default=0)
    cost_units = models.BigIntegerField(
        default=0, help_text="USD × 10^10: integer sums stay exact on every database."
    )
    unpriced_requests = models.BigIntegerField(default=0, help_text='Records with cost_source "estimated".')
    estimated_usage_requests = models.BigIntegerField(
        default=0, help_text="Records with estimated token counts."
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["user", "tz", "day", "provider_name", "model_name"], name="usageday_owner_day"
            )
        ]
        # Covering indexes (every column a read needs is in the index): an owner's days, and everyone's days
        # in GROUP BY order. On SQLite they make reads 4-8x faster; PostgreSQL can answer from them alone.
        indexes = [
            models.Index(
                fields=["user", "tz", "day", "provider_name", "model_name", *_SUMS], name="usageday_owner_sums"
            ),
            models.Index(
                fields=["day", "provider_name", "model_name", "user", *_SUMS], name="usageday_day_sums"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.day} {self.model_name} {self.requests} requests"


class ConversationDay(models.Model):
    """The ledger rolled up per conversation and local day of its owner (in `tz`): a conversation's usage in a
    span, kept after the conversation is deleted."""

    conversation_id = models.BigIntegerField()
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    tz = models.CharField(max_length=64)
    day = models.DateField()
    requests = models.BigIntegerField(default=0)
    total_tokens = models.BigIntegerField(default=0)
    cost_units = models.BigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["conversation_id", "user", "tz", "day"], name="conversationday_key")
        ]
        indexes = [models.Index(fields=["user", "tz", "day"], name="conversationday_owner")]

    def __str__(self) -> str:
        return f"conversation {self.conversation_id} on {self.day}"


class ConversationTotal(models.Model):
    """A conversation's usage over all time and its first and last local day: the bound that lets the usage
    pages rank conversations without grouping every day of a long span (conversations/usage/ranking.py)."""

    conversation_id = models.BigIntegerField()
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    first_day = models.DateField()
    last_day = models.DateField()
    requests = models.BigIntegerField(default=0)
    total_tokens = models.BigIntegerField(default=0)
    cost_units = models.BigIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["conversation_id", "user"], name="conversationtotal_key")]
        # Most expensive first, with the days in the index: ranking walks it and stops after a few entries.
        indexes = [
            models.Index(
                fields=["-cost_units", "-total_tokens", "conversation_id", "first_day", "last_day"],
                name="conversationtotal_rank",
            ),
            models.Index(
                fields=["user", "-cost_units", "-total_tokens", "conversation_id", "first_day", "last_day"],
                name="conversationtotal_owner_rank",
            ),
        ]

    def __str__(self) -> str:
        return f"conversation {self.conversation_id}: {self.requests} requests"


class BudgetReservation(models.Model):
    """A request's worst-case cost, held against the user's budget until the request settles."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    amount = models.DecimalField(**USD)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [models.Index(fields=["user", "created_at"], name="reservation_user_time")]

    def __str__(self) -> str:
        return f"${self.amount} held for user {self.user_id}"


class PresetQuerySet(models.QuerySet):
    def for_user(self, user: User) -> PresetQuerySet:
        if not getattr(user, "is_authenticated", False):
            return self.none()
        return self.filter(owner=user)


class Preset(models.Model):
    """A user's saved system prompt and parameters."""

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="presets")
    name = models.CharField(max_length=100)
    model = models.ForeignKey(Model, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    system_prompt = models.TextField(blank=True, default="")
    params = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = PresetQuerySet.as_manager()

    class Meta:
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["owner", "name"], name="preset_unique_name")]

    def __str__(self) -> str:
        return self.name


class AuditLog(models.Model):
    """Who changed which provider, key, price, model or budget, and when (fields named, values of keys never)."""

    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    action = models.CharField(max_length=32)
    object_type = models.CharField(max_length=64)
    object_id = models.CharField(max_length=64, blank=True, default="")
    object_repr = models.CharField(max_length=320, blank=True, default="")
    fields = models.JSONField(default=list, blank=True)
    source = models.CharField(max_length=32, blank=True, default="", help_text="admin, providers apply, ...")
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.action} {self.object_type} {self.object_repr}"


# --- cost truth: price history, the provider's account, budget alerts ---------------------------------------


class ModelPrice(models.Model):
    """One entry of a model's price history: the prices in force from `effective_from`, and who set them."""

    model = models.ForeignKey(Model, on_delete=models.CASCADE, related_name="price_history")
    input_price = models.DecimalField(**PRICE, null=True, blank=True)
    output_price = models.DecimalField(**PRICE, null=True, blank=True)
    effective_from = models.DateTimeField(default=timezone.now)
    changed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    source = models.CharField(max_length=32, blank=True, default="", help_text="admin, providers apply, ...")

    class Meta:
        ordering = ["-effective_from", "-id"]
        indexes = [models.Index(fields=["model", "-effective_from"], name="modelprice_model_time")]

    def __str__(self) -> str:
        return f"{self.model_id} from {self.effective_from:%Y-%m-%d %H:%M}"


class ProviderCharge(models.Model):
    """One request as the provider's own account lists it (imported by `manage.py reconcile`)."""

    provider_name = models.CharField(max_length=64)
    request_id = models.CharField(max_length=255)
    created_at = models.DateTimeField()
    model_name = models.CharField(max_length=320, blank=True, default="")
    prompt_tokens = models.PositiveIntegerField(default=0)
    completion_tokens = models.PositiveIntegerField(default=0)
    cost = models.DecimalField(**USD)
    record = models.ForeignKey(
        UsageRecord, null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
        help_text="The ledger row with the same upstream id, if any.",
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["provider_name", "request_id"], name="providercharge_request")
        ]
        indexes = [models.Index(fields=["provider_name", "created_at"], name="providercharge_time")]

    def __str__(self) -> str:
        return f"{self.provider_name} {self.request_id}"


class BudgetAlert(models.Model):
    """A budget threshold (80 or 100 %) crossed in one month: written once, so its email goes once.
    A user's own budget (`team` empty), or a group's shared one (`team`; `user` the member whose reply crossed it)."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    team = models.ForeignKey("Team", null=True, blank=True, on_delete=models.CASCADE, related_name="alerts")
    month = models.DateField(help_text="The month's first day, in the user's (a group's: the server's) time zone.")
    threshold = models.PositiveSmallIntegerField()
    budget = models.DecimalField(max_digits=12, decimal_places=4)
    spent = models.DecimalField(**USD)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["user", "month", "threshold"], condition=models.Q(team__isnull=True), name="budgetalert_once"
            ),
            models.UniqueConstraint(
                fields=["team", "month", "threshold"], condition=models.Q(team__isnull=False),
                name="budgetalert_team_once",
            ),
        ]

    def __str__(self) -> str:
        whose = f"group {self.team_id}" if self.team_id else f"user {self.user_id}"
        return f"{self.threshold}% of {self.budget} for {whose} in {self.month:%Y-%m}"


# --- Teams: a group's shared budget and its managers -------------------------------------------------------


class TeamQuerySet(models.QuerySet):
    def managed_by(self, user: User) -> TeamQuerySet:
        """The teams whose usage this user may see: staff see every team, a manager their own."""
        if user.is_staff:
            return self
        return self.filter(managers=user)


class Team(models.Model):
    """What chatweb adds to a Django group: an optional shared monthly budget and the group's managers."""

    group = models.OneToOneField(Group, on_delete=models.CASCADE, primary_key=True, related_name="team")
    monthly_budget = models.DecimalField(
        max_digits=12,
        decimal_places=4,
        null=True,
        blank=True,
        help_text="USD per calendar month shared by every member; empty: no shared cap.",
    )
    managers = models.ManyToManyField(
        settings.AUTH_USER_MODEL, blank=True, related_name="managed_teams",
        help_text="Who sees this group's usage.",
    )

    objects = TeamQuerySet.as_manager()

    def __str__(self) -> str:
        return self.group.name


# --- attachments ---------------------------------------------------------------------------------------------
class _AttachmentStorage(Storage):
    """The storage named "attachments" in STORAGES, looked up at each use rather than once at import."""

    def __getattribute__(self, name: str) -> Any:
        return getattr(storages["attachments"], name)


def attachment_storage() -> Storage:
    return _AttachmentStorage()


def attachment_path(instance: Attachment, filename: str) -> str:
    # The stored name is the unguessable public id only: the person's file name never reaches the storage.
    return f"{instance.public_id[:2]}/{instance.public_id}"


def attachment_thumbnail_path(instance: Attachment, filename: str) -> str:
    return f"{attachment_path(instance, filename)}.thumb"


def new_attachment_id() -> str:
    return secrets.token_urlsafe(24)


class AttachmentQuerySet(models.QuerySet):
    def for_user(self, user: User) -> AttachmentQuerySet:
        """The one door to a user's attachments."""
        if not getattr(user, "is_authenticated", False):
            return self.none()
        return self.filter(owner=user)


class Attachment(models.Model):
    """A file a user uploaded to send with messages: an image (re-encoded, scaled) or a document (its text)."""

    class Kind(models.TextChoices):
        IMAGE = "image"
        DOCUMENT = "document"

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="attachments")
    public_id = models.CharField(max_length=64, unique=True, default=new_attachment_id, editable=False)
    conversation = models.ForeignKey(
        Conversation, null=True, blank=True, on_delete=models.CASCADE, related_name="attachments",
        help_text="Set when first sent: the file goes with its conversation.",
    )
    messages = models.ManyToManyField(Message, blank=True, related_name="attachments")
    name = models.CharField(max_length=255)
    kind = models.CharField(max_length=16, choices=Kind.choices)
    content_type = models.CharField(max_length=100)
    size = models.PositiveBigIntegerField(help_text="Bytes stored.")
    file = models.FileField(storage=attachment_storage, upload_to=attachment_path, max_length=200)
    thumbnail = models.FileField(
        storage=attachment_storage, upload_to=attachment_thumbnail_path, max_length=200, blank=True, default="",
        help_text="An image's small preview (WebP), stored beside the file.",
    )
    text = models.TextField(blank=True, default="", help_text="A document's extracted text.")
    width = models.PositiveIntegerField(null=True, blank=True)
    height = models.PositiveIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = AttachmentQuerySet.as_manager()

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return self.name



# --- conversations people keep and share ----------------------------------------------------------------------
class SharedLinkQuerySet(models.QuerySet):
    def for_user(self, user: User) -> SharedLinkQuerySet:
        """The links a user made."""
        if not getattr(user, "is_authenticated", False):
            return self.none()
        return self.filter(owner=user)


class SharedLink(models.Model):
    """A read-only snapshot of a conversation's branch, readable by anyone holding its token. The snapshot holds
    the messages' roles and text only: nothing else of the conversation or of its owner reaches the shared page."""

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="shared_links")
    token = models.CharField(max_length=64, unique=True)
    title = models.CharField(max_length=200, blank=True, default="")
    messages = models.JSONField(
        default=list,
        help_text='[{"role": "user" | "assistant", "content": "...", "attachments": [{"number", "name", "kind"}]}]',
    )
    include_attachments = models.BooleanField(
        default=False, help_text="The owner chose to show the messages' files; otherwise none appear."
    )
    created_at = models.DateTimeField(default=timezone.now)

    objects = SharedLinkQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"share of conversation {self.conversation_id}"

    @staticmethod
    def new_token() -> str:
        # 128 random bits: the token is the only thing guarding the page.
        return secrets.token_urlsafe(16)

    @property
    def url(self) -> str:
        return f"/s/{self.token}/"


class SharedAttachment(models.Model):
    """A file a share link shows, numbered within the link: readable at `/s/<token>/files/<number>/` while the link
    lives (revoking the link deletes these rows), never by the owner's own file URL."""

    link = models.ForeignKey(SharedLink, on_delete=models.CASCADE, related_name="files")
    attachment = models.ForeignKey(Attachment, on_delete=models.CASCADE, related_name="+")
    number = models.PositiveIntegerField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["link", "number"], name="sharedattachment_number")]

    def __str__(self) -> str:
        return f"file {self.number} of link {self.link_id}"


class TemporaryHold(models.Model):
    """An open websocket showing a temporary conversation: while one is left the conversation is kept. `seen_at`
    is refreshed by the socket's process, so the holds of a process that died go stale and are reaped."""

    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="holds")
    channel_name = models.CharField(max_length=255)
    seen_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["conversation", "channel_name"], name="temporaryhold_socket")
        ]
        indexes = [models.Index(fields=["channel_name"], name="temporaryhold_channel")]

    def __str__(self) -> str:
        return f"{self.channel_name} holds conversation {self.conversation_id}"


# --- feedback on replies -------------------------------------------------------------------------------------
class Feedback(models.Model):
    """A user's thumbs up or down on a reply, with an optional comment: one per user and reply, changeable.
    The model and provider are kept by name as they were, so staff's view per model survives the reply's
    deletion (the row then loses its message, not its rating)."""

    class Rating(models.IntegerChoices):
        UP = 1, "thumbs up"
        DOWN = -1, "thumbs down"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="feedback")
    message = models.ForeignKey(
        Message, null=True, blank=True, on_delete=models.SET_NULL, related_name="feedback"
    )
    model = models.ForeignKey(Model, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    model_name = models.CharField(max_length=320, blank=True, default="", help_text="Public name as it was.")
    provider_name = models.CharField(max_length=64, blank=True, default="")
    rating = models.SmallIntegerField(choices=Rating.choices)
    comment = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "feedback"
        ordering = ["-updated_at", "-id"]
        constraints = [models.UniqueConstraint(fields=["message", "user"], name="feedback_once_per_reply")]
        indexes = [models.Index(fields=["model_name", "rating"], name="feedback_model_rating")]

    def __str__(self) -> str:
        return f"{self.get_rating_display()} on {self.model_name or 'a reply'}"


# --- Single sign-on ------------------------------------------------------------------------------------------
class OidcIdentity(models.Model):
    """A person at an OpenID provider (issuer + subject, stable where names and emails are not) and their user."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="oidc_identities")
    issuer = models.CharField(max_length=500)
    subject = models.CharField(max_length=255)
    created_at = models.DateTimeField(auto_now_add=True)
    last_sign_in = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["issuer", "subject"], name="oidc_identity_unique")]

    def __str__(self) -> str:
        return f"{self.issuer} {self.subject}"
