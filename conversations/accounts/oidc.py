"""Single sign-on through OpenID Connect (mozilla-django-oidc underneath): the configuration from CHATWEB_OIDC_*
plus the provider's discovery document, the ID token checks the library leaves out (issuer, audience, expiry),
and who a signed-in person is here: matched by issuer + subject, linked to an existing account only by a
verified email, created otherwise; their groups follow the groups claim at each sign-in."""

from __future__ import annotations

import logging
import re
from typing import Any
from urllib.parse import urlencode

import jwt
import requests
from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone
from mozilla_django_oidc.auth import OIDCAuthenticationBackend
from mozilla_django_oidc.utils import import_from_settings

from conversations.accounts.teams import user_groups_sync
from conversations.models import OidcIdentity, User

log = logging.getLogger(__name__)

SCOPES = "openid email profile"
ALGORITHM = "RS256"  # what the library is told (it then fetches the provider's JWKS); any of these is accepted:
SIGNING_ALGORITHMS = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512"]
TIMEOUT = 10  # seconds for each request to the provider
LEEWAY = 60  # seconds of clock difference tolerated on exp / iat


class OidcRefused(Exception):
    """A sign-in refused: the message says why, for the person (it names no secret)."""


def oidc_enabled() -> bool:
    """Whether single sign-on is configured (CHATWEB_OIDC_ISSUER set)."""
    return bool(settings.CHATWEB_OIDC_ISSUER)


_discovered: dict[str, dict[str, Any]] = {}


def oidc_discovery() -> dict[str, Any]:
    """The provider's discovery document, read once per issuer and process; OidcRefused if it cannot be read."""
    issuer = settings.CHATWEB_OIDC_ISSUER
    if issuer not in _discovered:
        try:
            response = requests.get(f"{issuer}/.well-known/openid-configuration", timeout=TIMEOUT)
            response.raise_for_status()
            document = response.json()
        except (requests.RequestException, ValueError) as exc:
            log.warning("OpenID discovery at %s failed: %s", issuer, exc)
            raise OidcRefused("The identity provider cannot be reached; try again later.") from exc
        if str(document.get("issuer", "")).rstrip("/") != issuer:
            raise OidcRefused("The identity provider names another issuer than the one configured.")
        _discovered[issuer] = document
    return _discovered[issuer]


def oidc_setting(attr: str, *default: Any) -> Any:
    """What mozilla-django-oidc reads as a setting, derived from CHATWEB_OIDC_* and discovery."""
    fixed: dict[str, Any] = {
        "OIDC_RP_CLIENT_ID": settings.CHATWEB_OIDC_CLIENT_ID,
        "OIDC_RP_CLIENT_SECRET": settings.CHATWEB_OIDC_CLIENT_SECRET,
        "OIDC_RP_SIGN_ALGO": ALGORITHM,
        "OIDC_RP_SCOPES": SCOPES,
        "OIDC_USE_PKCE": True,
        "OIDC_PKCE_CODE_CHALLENGE_METHOD": "S256",
        "OIDC_USE_NONCE": True,
        "OIDC_ALLOW_UNSECURED_JWT": False,
        "OIDC_STORE_ID_TOKEN": True,  # the hint for the provider's end-session endpoint at sign-out
        "OIDC_CREATE_USER": True,
        "OIDC_TIMEOUT": TIMEOUT,
        "OIDC_AUTHENTICATION_CALLBACK_URL": "oidc_authentication_callback",
    }
    if attr in fixed:
        return fixed[attr]
    endpoints = {
        "OIDC_OP_AUTHORIZATION_ENDPOINT": "authorization_endpoint",
        "OIDC_OP_TOKEN_ENDPOINT": "token_endpoint",
        "OIDC_OP_USER_ENDPOINT": "userinfo_endpoint",
        "OIDC_OP_JWKS_ENDPOINT": "jwks_uri",
    }
    if attr in endpoints:
        return oidc_discovery().get(endpoints[attr])
    if attr == "OIDC_TOKEN_USE_BASIC_AUTH":
        # HTTP Basic is the discovery default and what most providers register clients for; the body only
        # for a provider that offers nothing else.
        methods = oidc_discovery().get("token_endpoint_auth_methods_supported") or ["client_secret_basic"]
        return "client_secret_basic" in methods or "client_secret_post" not in methods
    return import_from_settings(attr, *default)


def oidc_end_session_url(*, id_token: str | None, after: str) -> str | None:
    """Where to send a person signing out so that the provider ends its session too, if it offers that."""
    if not (oidc_enabled() and id_token):
        return None
    try:
        endpoint = oidc_discovery().get("end_session_endpoint")
    except OidcRefused:
        return None
    if not endpoint:
        return None
    query = urlencode(
        {"id_token_hint": id_token, "post_logout_redirect_uri": after, "client_id": settings.CHATWEB_OIDC_CLIENT_ID}
    )
    return f"{endpoint}{'&' if '?' in endpoint else '?'}{query}"


def _email_verified(claims: dict[str, Any]) -> bool:
    # Some providers send the boolean as a string.
    return claims.get("email_verified") in (True, "true", "True")


def _free_username(claims: dict[str, Any]) -> str:
    email = str(claims.get("email") or "")
    wanted = str(claims.get("preferred_username") or email.split("@")[0] or "user")
    base = re.sub(r"[^\w.@+-]", "", wanted)[:140] or "user"
    name, n = base, 1
    while User.objects.filter(username__iexact=name).exists():
        n += 1
        name = f"{base}{n}"
    return name


def oidc_user_sign_in(*, issuer: str, claims: dict[str, Any]) -> User:
    """The user a verified set of claims (ID token + userinfo) signs in as, linked or created here, their groups
    made those of the groups claim; OidcRefused when this person may not sign in."""
    subject = str(claims.get("sub") or "")
    if not subject:
        raise OidcRefused("The identity provider did not say who you are.")
    email = str(claims.get("email") or "").strip()
    verified = _email_verified(claims) and "@" in email
    allowed = settings.CHATWEB_OIDC_ALLOWED_DOMAINS
    if allowed and not (verified and email.rsplit("@", 1)[1].lower() in allowed):
        raise OidcRefused("Your email address's domain is not allowed to sign in here.")
    with transaction.atomic():
        identity = OidcIdentity.objects.select_related("user").filter(issuer=issuer, subject=subject).first()
        if identity is not None:
            user = identity.user
        else:
            matches = list(User.objects.filter(email__iexact=email)[:2]) if verified else []
            if len(matches) > 1:
                raise OidcRefused("Several accounts here have your email address; ask an administrator to link one.")
            if matches:
                user = matches[0]
            else:
                # An unverified email is not kept: another identity with it verified must not link to this account.
                user = User(username=_free_username(claims), email=email if verified else "")
                user.first_name = str(claims.get("given_name") or "")[:150]
                user.last_name = str(claims.get("family_name") or "")[:150]
                user.set_unusable_password()
                user.save()
            identity = OidcIdentity.objects.create(user=user, issuer=issuer, subject=subject)
        if not user.is_active:
            raise OidcRefused("Your account here is disabled.")
        identity.last_sign_in = timezone.now()
        identity.save(update_fields=["last_sign_in"])
        claim = settings.CHATWEB_OIDC_GROUPS_CLAIM
        if claim:
            names = claims.get(claim) or []
            user_groups_sync(user=user, names=[names] if isinstance(names, str) else names, source="sign-in")
    return user


class OidcBackend(OIDCAuthenticationBackend):
    """mozilla-django-oidc's backend, configured from CHATWEB_OIDC_* and discovery when a sign-in happens (so it
    costs nothing while single sign-on is off), with the ID token fully checked and chatweb's user matching."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        from django.contrib.auth import get_user_model

        self.UserModel = get_user_model()  # the endpoints are read only when a sign-in needs them

    @staticmethod
    def get_settings(attr: str, *args: Any) -> Any:
        return oidc_setting(attr, *args)

    def get_user(self, user_id: Any) -> AbstractBaseUser | None:
        """A session's user, none once the account is disabled (mozilla-django-oidc's own does not look, where
        Django's ModelBackend does)."""
        user: AbstractBaseUser | None = super().get_user(user_id)
        return user if user is not None and user.is_active else None

    def authenticate(self, request: Any, **kwargs: Any) -> AbstractBaseUser | None:
        # Only the callback view passes a nonce; password sign-ins are the ModelBackend's.
        if request is None or "nonce" not in kwargs or not oidc_enabled():
            return None
        for name in ("OIDC_OP_TOKEN_ENDPOINT", "OIDC_OP_USER_ENDPOINT", "OIDC_OP_JWKS_ENDPOINT",
                     "OIDC_RP_CLIENT_ID", "OIDC_RP_CLIENT_SECRET", "OIDC_RP_SIGN_ALGO"):
            setattr(self, name, oidc_setting(name))
        self.OIDC_RP_IDP_SIGN_KEY = None
        try:
            return super().authenticate(request, **kwargs)
        except requests.RequestException as exc:
            log.warning("OpenID sign-in: the provider refused or failed: %s", exc)
            raise OidcRefused("The identity provider did not accept this sign-in; please start again.") from exc

    def get_token(self, payload: dict[str, Any]) -> dict[str, Any]:
        """The token request, with the client's secret in HTTP Basic; if the provider registered this client for
        the secret in the body instead (it answers invalid_client before looking at the code), once more so."""
        try:
            token: dict[str, Any] = super().get_token(dict(payload))
            return token
        except requests.HTTPError as exc:
            answer = exc.response
            if not (oidc_setting("OIDC_TOKEN_USE_BASIC_AUTH") and answer is not None
                    and answer.status_code in (400, 401) and "invalid_client" in answer.text):
                raise
        response = requests.post(self.OIDC_OP_TOKEN_ENDPOINT, data=payload, timeout=TIMEOUT)
        self.raise_token_response_error(response)
        body: dict[str, Any] = response.json()
        return body

    def _verify_jws(self, payload: bytes, key: Any) -> dict[str, Any]:
        """The signature (the provider's key, RS256 only), issuer, audience, expiry and issue time."""
        try:
            header = jwt.get_unverified_header(payload)
        except jwt.InvalidTokenError as exc:
            raise OidcRefused("The identity provider's token is malformed.") from exc
        if header.get("alg") not in SIGNING_ALGORITHMS:
            raise OidcRefused("The identity provider's token is signed with an unexpected algorithm.")
        try:
            claims: dict[str, Any] = jwt.decode(
                payload, key, algorithms=[header["alg"]], audience=settings.CHATWEB_OIDC_CLIENT_ID,
                issuer=settings.CHATWEB_OIDC_ISSUER, leeway=LEEWAY,
                options={"require": ["iss", "sub", "aud", "exp", "iat"]},
            )
        except jwt.InvalidSignatureError as exc:
            raise OidcRefused("The identity provider's token has an invalid signature.") from exc
        except jwt.ExpiredSignatureError as exc:
            raise OidcRefused("The identity provider's token has expired; please sign in again.") from exc
        except jwt.InvalidAudienceError as exc:
            raise OidcRefused("The identity provider's token was issued for another application.") from exc
        except jwt.InvalidIssuerError as exc:
            raise OidcRefused("The identity provider's token comes from another issuer.") from exc
        except jwt.InvalidTokenError as exc:
            raise OidcRefused("The identity provider's token is invalid.") from exc
        azp = claims.get("azp")
        if isinstance(claims.get("aud"), list) and len(claims["aud"]) > 1 and azp != settings.CHATWEB_OIDC_CLIENT_ID:
            raise OidcRefused("The identity provider's token was issued for another application.")
        return claims

    def get_payload_data(self, token: bytes, key: Any) -> dict[str, Any]:
        # Always verified here: never the library's unsecured-JWT shortcut.
        return self._verify_jws(token, key)

    def verify_token(self, token: Any, **kwargs: Any) -> dict[str, Any]:
        try:
            payload: dict[str, Any] = super().verify_token(token, **kwargs)
        except OidcRefused:
            raise
        except Exception as exc:  # the library's SuspiciousOperation: nonce mismatch, no matching key
            log.warning("OpenID ID token refused: %r", exc)
            raise OidcRefused("The identity provider's token does not belong to this sign-in.") from exc
        return payload

    def get_userinfo(self, access_token: str, id_token: str, payload: dict[str, Any]) -> dict[str, Any]:
        # A provider without a userinfo endpoint puts every claim in the ID token.
        if not self.OIDC_OP_USER_ENDPOINT:
            return dict(payload)
        userinfo: dict[str, Any] = super().get_userinfo(access_token, id_token, payload)
        return userinfo

    def get_or_create_user(self, access_token: str, id_token: str, payload: dict[str, Any]) -> User:
        userinfo = self.get_userinfo(access_token, id_token, payload)
        if str(userinfo.get("sub")) != str(payload.get("sub")):
            raise OidcRefused("The identity provider's answers disagree about who you are.")
        claims = {**payload, **userinfo}
        return oidc_user_sign_in(issuer=settings.CHATWEB_OIDC_ISSUER, claims=claims)
