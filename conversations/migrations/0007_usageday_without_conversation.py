from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("conversations", "0006_conversation_usage"),
    ]

    operations = [
        migrations.RemoveConstraint(model_name="usageday", name="usageday_key"),
        migrations.RemoveIndex(model_name="usageday", name="usageday_owner_cover"),
        migrations.RemoveIndex(model_name="usageday", name="usageday_day_cover"),
        migrations.RemoveField(model_name="usageday", name="conversation_id"),
        migrations.AddIndex(
            model_name="usageday",
            index=models.Index(fields=["user", "tz", "day", "provider_name", "model_name", "requests", "prompt_tokens", "completion_tokens", "total_tokens", "cost_units", "unpriced_requests", "estimated_usage_requests"], name="usageday_owner_sums"),
        ),
        migrations.AddIndex(
            model_name="usageday",
            index=models.Index(fields=["day", "provider_name", "model_name", "user", "requests", "prompt_tokens", "completion_tokens", "total_tokens", "cost_units", "unpriced_requests", "estimated_usage_requests"], name="usageday_day_sums"),
        ),
        migrations.AddConstraint(
            model_name="usageday",
            constraint=models.UniqueConstraint(fields=("user", "tz", "day", "provider_name", "model_name"), name="usageday_owner_day"),
        ),
    ]
