"""URL map of the site: pages, accounts, admin (the API and usage modules add their own)."""

from django.contrib import admin
from django.templatetags.static import static
from django.urls import include, path
from django.views.generic import RedirectView

from conversations.accounts import oidc_views, settings_views
from conversations.accounts import views as accounts

urlpatterns = [
    path("admin/login/", accounts.admin_login),  # throttled; ahead of the admin's own login URL
    path("admin/", admin.site.urls),
    path("accounts/", include("conversations.accounts.urls")),
    # Single sign-on; the redirect URI to register at the provider is <site>/oidc/callback/.
    path("oidc/authenticate/", oidc_views.oidc_start, name="oidc_authentication_init"),
    path("oidc/callback/", oidc_views.oidc_callback, name="oidc_authentication_callback"),
    path("v1/", include("conversations.api.urls")),
    path("settings/", settings_views.settings_page, name="settings"),
    path("usage/", include("conversations.usage.urls")),
    # Browsers ask for /favicon.ico whatever the page says; the icon is the SVG one.
    path("favicon.ico", RedirectView.as_view(url=static("favicon.svg"), permanent=True)),
    path("", include("conversations.chat.urls")),
]
