"""URLs under /accounts/: sign in and out, password change, signup."""

from django.contrib.auth import views as auth_views
from django.urls import path

from conversations.accounts import oidc_views
from conversations.accounts import views as accounts

urlpatterns = [
    path("login/", accounts.login_view, name="login"),  # throttled
    path("logout/", oidc_views.LogoutView.as_view(), name="logout"),  # and the provider's session, if any
    path("password_change/", auth_views.PasswordChangeView.as_view(), name="password_change"),
    path("password_change/done/", auth_views.PasswordChangeDoneView.as_view(), name="password_change_done"),
    path("signup/", accounts.signup, name="signup"),
]
