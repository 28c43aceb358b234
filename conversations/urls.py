"""URLs of the chat pages."""

from django.urls import path

from conversations import views

urlpatterns = [
    path("", views.index, name="index"),
    path("c/<int:conversation_id>/", views.conversation, name="conversation"),
]
