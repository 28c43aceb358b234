"""URL map of the site: pages, accounts, admin (the API and usage modules add their own)."""

from django.contrib import admin
from django.urls import include, path

from conversations.accounts import settings_views
from conversations.accounts import views as accounts

urlpatterns = [
    path("admin/login/", accounts.admin_login),  # throttled (issue #10); ahead of the admin's own login URL
    path("admin/", admin.site.urls),
    path("accounts/", include("conversations.accounts.urls")),
    path("v1/", include("conversations.api.urls")),
    path("settings/", settings_views.settings_page, name="settings"),
    path("usage/", include("conversations.usage.urls")),
    path("", include("conversations.chat.urls")),
]
