"""The conversations app: chat, providers, usage."""

from typing import Any

from django.apps import AppConfig
from django.db.models.signals import post_delete


def _attachment_deleted(sender: Any, instance: Any, **kwargs: Any) -> None:
    # Deleting a conversation or an account deletes its attachments' rows by cascade; their files go with them.
    from conversations.chat.attachments import attachment_file_delete

    attachment_file_delete(attachment=instance)


class ConversationsConfig(AppConfig):
    name = "conversations"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        post_delete.connect(_attachment_deleted, sender="conversations.Attachment",
                            dispatch_uid="attachment-file-delete")
