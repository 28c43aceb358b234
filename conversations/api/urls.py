"""URLs under /v1/: the OpenAI-compatible endpoints and their OpenAPI document; anything else a JSON 404."""

from django.urls import path, re_path

from conversations.api import views

urlpatterns = [
    path("models", views.models, name="api-models"),
    path("models/<path:name>", views.model, name="api-model"),
    path("chat/completions", views.chat_completions, name="api-chat-completions"),
    path("completions", views.completions, name="api-completions"),
    path("openapi.json", views.openapi, name="api-openapi"),
    re_path(r"^(?P<rest>.*)$", views.not_found),
]
