"""URL map of the site: pages, accounts, admin (the API and usage modules add their own)."""

from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("accounts/", include("conversations.accounts_urls")),
    path("", include("conversations.urls")),
]
