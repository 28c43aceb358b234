"""Per-conversation usage moves out of UsageDay into ConversationDay and ConversationTotal (0007 then drops
UsageDay.conversation_id). Separate from 0007 because PostgreSQL refuses to alter a table in the transaction
that wrote it (deferred foreign-key checks are pending)."""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models
from django.db.models import Max, Min, Sum

SUMMED = (
    "requests", "prompt_tokens", "completion_tokens", "total_tokens", "cost_units", "unpriced_requests",
    "estimated_usage_requests",
)


def split_conversations(apps, schema_editor):
    UsageDay = apps.get_model("conversations", "UsageDay")
    ConversationDay = apps.get_model("conversations", "ConversationDay")
    ConversationTotal = apps.get_model("conversations", "ConversationTotal")
    sums = {"r": Sum("requests"), "t": Sum("total_tokens"), "c": Sum("cost_units")}
    conversations = UsageDay.objects.exclude(conversation_id=0).order_by()
    ConversationDay.objects.bulk_create(
        (
            ConversationDay(
                conversation_id=g["conversation_id"], user_id=g["user_id"], tz=g["tz"], day=g["day"],
                requests=g["r"], total_tokens=g["t"], cost_units=g["c"],
            )
            for g in conversations.values("conversation_id", "user_id", "tz", "day").annotate(**sums)
        ),
        batch_size=2000,
    )
    ConversationTotal.objects.bulk_create(
        (
            ConversationTotal(
                conversation_id=g["conversation_id"], user_id=g["user_id"], first_day=g["first"],
                last_day=g["last"], requests=g["r"], total_tokens=g["t"], cost_units=g["c"],
            )
            for g in conversations.values("conversation_id", "user_id").annotate(
                first=Min("day"), last=Max("day"), **sums
            )
        ),
        batch_size=2000,
    )
    key = ("user_id", "tz", "day", "provider_name", "model_name")
    merged = list(UsageDay.objects.order_by().values(*key).annotate(**{f"s_{k}": Sum(k) for k in SUMMED}))
    UsageDay.objects.all().delete()
    UsageDay.objects.bulk_create(
        (UsageDay(**{k: g[k] for k in key}, **{k: g[f"s_{k}"] for k in SUMMED}) for g in merged),
        batch_size=2000,
    )


class Migration(migrations.Migration):

    dependencies = [
        ("conversations", "0005_message_content_html"),
    ]

    operations = [
        migrations.CreateModel(
            name="ConversationDay",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("conversation_id", models.BigIntegerField()),
                ("tz", models.CharField(max_length=64)),
                ("day", models.DateField()),
                ("requests", models.BigIntegerField(default=0)),
                ("total_tokens", models.BigIntegerField(default=0)),
                ("cost_units", models.BigIntegerField(default=0)),
                ("user", models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name="+", to=settings.AUTH_USER_MODEL)),
            ],
            options={
                "indexes": [models.Index(fields=["user", "tz", "day"], name="conversationday_owner")],
                "constraints": [
                    models.UniqueConstraint(fields=("conversation_id", "user", "tz", "day"), name="conversationday_key")
                ],
            },
        ),
        migrations.CreateModel(
            name="ConversationTotal",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("conversation_id", models.BigIntegerField()),
                ("first_day", models.DateField()),
                ("last_day", models.DateField()),
                ("requests", models.BigIntegerField(default=0)),
                ("total_tokens", models.BigIntegerField(default=0)),
                ("cost_units", models.BigIntegerField(default=0)),
                ("user", models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name="+", to=settings.AUTH_USER_MODEL)),
            ],
            options={
                "constraints": [models.UniqueConstraint(fields=("conversation_id", "user"), name="conversationtotal_key")],
                "indexes": [
                    models.Index(fields=["-cost_units", "-total_tokens", "conversation_id", "first_day", "last_day"], name="conversationtotal_rank"),
                    models.Index(fields=["user", "-cost_units", "-total_tokens", "conversation_id", "first_day", "last_day"], name="conversationtotal_owner_rank"),
                ],
            },
        ),
        migrations.RunPython(split_conversations, migrations.RunPython.noop, elidable=True),
    ]
