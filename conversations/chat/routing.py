"""Websocket URL routes."""

from django.urls import path

from conversations.chat.consumers import ChatConsumer

# Channels routes ASGI applications with Django's path(); the stubs know only views.
websocket_urlpatterns = [path("ws/chat/", ChatConsumer.as_asgi())]  # type: ignore[arg-type]
