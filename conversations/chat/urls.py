"""URLs of the chat pages and of what the chat page does besides chatting (conversation_views)."""

from django.urls import path

from conversations.chat import attachment_views, conversation_views, folder_views, import_views, share_views, views

urlpatterns = [
    path("", views.index, name="index"),
    path("c/<int:conversation_id>/", views.conversation, name="conversation"),
    path("c/<int:conversation_id>/messages/", conversation_views.messages, name="conversation-messages"),
    path("c/<int:conversation_id>/rename/", conversation_views.rename, name="conversation-rename"),
    path("c/<int:conversation_id>/delete/", conversation_views.delete, name="conversation-delete"),
    path("c/<int:conversation_id>/branch/", conversation_views.switch_branch, name="conversation-branch"),
    path("c/<int:conversation_id>/export.md", conversation_views.export_markdown, name="conversation-export-md"),
    path("c/<int:conversation_id>/export.json", conversation_views.export_json, name="conversation-export-json"),
    path(
        "c/<int:conversation_id>/m/<int:message_id>/delete/",
        conversation_views.delete_message,
        name="message-delete",
    ),
    path(
        "c/<int:conversation_id>/m/<int:message_id>/feedback/",
        conversation_views.feedback,
        name="message-feedback",
    ),
    path("attachments/", attachment_views.upload, name="attachment-upload"),
    path("attachments/<str:attachment_id>/", attachment_views.download, name="attachment-download"),
    path("attachments/<str:attachment_id>/thumbnail/", attachment_views.thumbnail, name="attachment-thumbnail"),
    path("c/<int:conversation_id>/share/", share_views.share, name="conversation-share"),
    path("c/<int:conversation_id>/unshare/", share_views.unshare, name="conversation-unshare"),
    path("s/<str:token>/", share_views.shared_page, name="shared-page"),
    path("s/<str:token>/files/<int:number>/", share_views.shared_attachment, name="shared-attachment"),
    path("settings/shares/<int:link_id>/revoke/", share_views.revoke_link, name="shared-link-revoke"),
    path("settings/import/", import_views.import_upload, name="import-upload"),
    path("c/<int:conversation_id>/move/", folder_views.move, name="conversation-move"),
    path("c/<int:conversation_id>/pin/", folder_views.pin, name="conversation-pin"),
    path("folders/", folder_views.folder_create, name="folder-create"),
    path("folders/<int:folder_id>/rename/", folder_views.folder_rename, name="folder-rename"),
    path("folders/<int:folder_id>/delete/", folder_views.folder_delete, name="folder-delete"),
    path("search/", conversation_views.search, name="conversation-search"),
    path("presets/", conversation_views.preset_create, name="preset-create"),
    path("presets/<int:preset_id>/delete/", conversation_views.preset_delete, name="preset-delete"),
]
