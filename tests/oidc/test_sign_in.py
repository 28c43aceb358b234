"""Single sign-on against a real OpenID provider (oidc-provider in Node.js on loopback): the first sign-in creates
the account, later ones find it by issuer + subject and make its groups those of the claim, an existing account is
linked only by a verified email, every forged or altered answer is refused with a page that says why, and
sign-out ends both sessions."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from django.contrib.auth.models import Group
from django.test import Client, override_settings

from conversations.models import OidcIdentity, User
from tests.oidc.provider import POST_CLIENT_ID, account, to_provider_and_back

pytestmark = pytest.mark.django_db


def groups(user: User) -> list[str]:
    return sorted(user.groups.values_list("name", flat=True))


def signed_in(client: Client) -> User | None:
    user = client.get("/settings/").wsgi_request.user
    return user if user.is_authenticated else None


def test_nothing_of_single_sign_on_while_no_issuer_is_set(client):
    page = client.get("/accounts/login/")
    assert b'id="sso"' not in page.content and b'name="password"' in page.content
    assert client.get("/oidc/authenticate/").status_code == 404
    assert client.get("/oidc/callback/?code=x&state=y").status_code == 404


def test_the_sign_in_page_shows_the_button_with_its_label(client, provider):
    with override_settings(**provider.settings(CHATWEB_OIDC_NAME="Lab login")):
        page = client.get("/accounts/login/?next=/usage/")
    assert b'id="sso"' in page.content and b"Lab login" in page.content
    assert b"/oidc/authenticate/?next=/usage/" in page.content


def test_the_request_uses_pkce_state_nonce_and_the_three_scopes(client, provider):
    with override_settings(**provider.settings()):
        start = client.get("/oidc/authenticate/")
    query = parse_qs(urlsplit(start["Location"]).query)
    assert start["Location"].startswith(f"{provider.issuer}/auth?")
    assert query["scope"] == ["openid email profile"] and query["response_type"] == ["code"]
    assert query["code_challenge_method"] == ["S256"] and len(query["code_challenge"][0]) == 43
    assert query["state"][0] in client.session["oidc_states"] and query["nonce"]


def test_first_sign_in_creates_the_account_with_its_identity_and_groups(client, provider):
    with override_settings(**provider.settings()):
        landed = client.get(to_provider_and_back(client, "ada"))
        assert landed.status_code == 302 and landed["Location"] == "/"
        user = signed_in(client)
    assert user is not None and user.username == "ada" and user.email == "ada@lab.example"
    assert user.first_name == "Ada" and not user.has_usable_password()
    assert OidcIdentity.objects.get(user=user).issuer == provider.issuer
    assert OidcIdentity.objects.get(user=user).subject == "ada"
    assert groups(user) == ["lab"]


def test_a_session_from_single_sign_on_ends_when_the_account_is_disabled(client, provider):
    with override_settings(**provider.settings()):
        client.get(to_provider_and_back(client, "ada"))
        user = signed_in(client)
        assert user is not None
        User.objects.filter(pk=user.pk).update(is_active=False)
        assert signed_in(client) is None
        assert client.get("/").status_code == 302


def test_a_client_registered_for_the_secret_in_the_body_signs_in_too(client, provider):
    with override_settings(**provider.settings(CHATWEB_OIDC_CLIENT_ID=POST_CLIENT_ID)):
        landed = client.get(to_provider_and_back(client, "ada"))
    assert landed.status_code == 302 and signed_in(client) == User.objects.get(username="ada")


def test_groups_follow_the_claim_at_each_sign_in(client, provider):
    with override_settings(**provider.settings()):
        client.get(to_provider_and_back(client, "ada"))
        user = User.objects.get(username="ada")
        assert groups(user) == ["lab"]
        provider.set_account("ada", account("ada@lab.example", groups=["lab", "ml"], preferred_username="ada"))
        client.get(to_provider_and_back(client, "ada"))
        assert groups(user) == ["lab", "ml"]
        provider.set_account("ada", account("ada@lab.example", groups=["ml"], preferred_username="ada"))
        second = Client()
        second.get(to_provider_and_back(second, "ada"))
        assert groups(user) == ["ml"] and signed_in(second) == user
    assert User.objects.filter(email="ada@lab.example").count() == 1  # found by issuer + subject, not duplicated
    provider.set_account("ada", account("ada@lab.example", groups=["lab"], preferred_username="ada", given_name="Ada"))


def test_an_existing_account_is_linked_by_a_verified_email_only(client, provider):
    existing = User.objects.create_user("ada.lovelace", email="ada@lab.example", password="x" * 20)
    Group.objects.create(name="old").user_set.add(existing)
    unverified = User.objects.create_user("eve", email="eve@elsewhere.example", password="x" * 20)
    with override_settings(**provider.settings()):
        client.get(to_provider_and_back(client, "ada"))
        assert signed_in(client) == existing and groups(existing) == ["lab"]
        other = Client()
        other.get(to_provider_and_back(other, "eve"))
        eve = signed_in(other)
    assert eve is not None and eve != unverified and eve.email == ""  # a new account, its email not trusted
    assert OidcIdentity.objects.get(subject="eve").user == eve


def test_a_domain_not_allowed_is_refused(client, provider):
    with override_settings(**provider.settings(CHATWEB_OIDC_ALLOWED_DOMAINS=["corp.example"])):
        page = client.get(to_provider_and_back(client, "ada"))
    assert page.status_code == 403 and b"domain is not allowed" in page.content
    assert signed_in(client) is None and not User.objects.filter(username="ada").exists()


def test_a_forged_state_is_refused(client, provider):
    with override_settings(**provider.settings()):
        callback = to_provider_and_back(client, "ada")
        state = parse_qs(urlsplit(callback).query)["state"][0]
        page = client.get(callback.replace(state, "forged" + state[6:]))
        assert page.status_code == 403 and b"state does not match" in page.content
        stranger = Client()  # the right state, in a browser that never started this sign-in
        assert b"not started here" in stranger.get(callback).content
    assert signed_in(client) is None and not User.objects.exists()


@pytest.mark.parametrize(
    ("kind", "reason"),
    [
        ("audience", b"issued for another application"),
        ("expired", b"has expired"),
        ("tampered", b"invalid signature"),
        ("issuer", b"another issuer"),
    ],
)
def test_an_altered_id_token_is_refused(client, provider, kind, reason):
    with override_settings(**provider.settings()):
        callback = to_provider_and_back(client, "ada")
        provider.alter_next_id_token(kind)
        page = client.get(callback)
    assert page.status_code == 403 and reason in page.content, page.content
    assert b"Sign-in refused" in page.content
    assert signed_in(client) is None and not User.objects.exists()


def test_a_code_used_twice_is_refused_by_the_provider(client, provider):
    with override_settings(**provider.settings()):
        first = to_provider_and_back(client, "ada")
        assert client.get(first).status_code == 302
        client.logout()
        second = to_provider_and_back(client, "ada")  # a fresh state and PKCE verifier in this session
        new_state = parse_qs(urlsplit(second).query)["state"][0]
        old_code = parse_qs(urlsplit(first).query)["code"][0]
        page = client.get(f"/oidc/callback/?code={old_code}&state={new_state}")
    assert page.status_code == 403 and b"did not accept this sign-in" in page.content
    assert signed_in(client) is None


def test_sign_out_ends_the_local_session_and_goes_to_the_providers_end_session(client, provider):
    with override_settings(**provider.settings()):
        client.get(to_provider_and_back(client, "ada"))
        assert signed_in(client) is not None
        out = client.post("/accounts/logout/")
    assert out.status_code == 302 and out["Location"].startswith(f"{provider.issuer}/session/end?")
    query = parse_qs(urlsplit(out["Location"]).query)
    assert query["post_logout_redirect_uri"] == ["http://testserver/accounts/login/"] and query["id_token_hint"]
    assert signed_in(client) is None
    assert requests.get(out["Location"], timeout=10).status_code == 200  # the provider's sign-out confirmation


def test_password_sign_out_stays_local(client, alice):
    client.force_login(alice)
    assert client.post("/accounts/logout/")["Location"] == "/accounts/login/"


def test_local_login_off_hides_the_password_form_and_staff_keep_the_admin_login(client, provider, staff):
    with override_settings(**provider.settings(CHATWEB_LOCAL_LOGIN=False)):
        page = client.get("/accounts/login/")
        assert b'name="password"' not in page.content and b'id="sso"' in page.content
        from tests.conftest import PASSWORD

        assert client.post("/accounts/login/", {"username": "staff", "password": PASSWORD}).status_code == 403
        admin = client.post("/admin/login/?next=/admin/", {"username": "staff", "password": PASSWORD})
        assert admin.status_code == 302 and signed_in(client) == staff


def test_an_unreachable_provider_is_a_clear_page(client):
    from bench.process import free_port

    with override_settings(CHATWEB_OIDC_ISSUER=f"http://127.0.0.1:{free_port()}", CHATWEB_OIDC_CLIENT_ID="x"):
        page = client.get("/oidc/authenticate/")
    assert page.status_code == 502 and b"cannot be reached" in page.content


def test_the_sign_out_form_may_go_on_to_the_providers_origin_only_when_configured(client, alice):
    client.force_login(alice)
    assert "form-action 'self';" in client.get("/settings/")["Content-Security-Policy"]
    with override_settings(CHATWEB_OIDC_ISSUER="https://id.example.org/realms/lab", CHATWEB_OIDC_CLIENT_ID="x"):
        policy = client.get("/settings/")["Content-Security-Policy"]
    assert "form-action 'self' https://id.example.org;" in policy


def test_the_admin_shows_a_users_identity(client, provider, staff):
    with override_settings(**provider.settings()):
        client.get(to_provider_and_back(client, "ada"))
    ada = User.objects.get(username="ada")
    admin = Client()
    admin.force_login(staff)
    page = admin.get(f"/admin/conversations/user/{ada.pk}/change/")
    text = page.content.decode()
    assert page.status_code == 200 and provider.issuer in text and "single sign-on identities" in text.lower()
