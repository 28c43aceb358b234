"""A real OpenID provider (npm's oidc-provider, tests/oidc/provider.mjs) in its own Node.js process on loopback,
and a sign-in through it driven over real HTTP: chatweb's side through Django's test client, the provider's
side through `requests` (the provider signs a person in by `login_hint`, standing in for its login page)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import requests
from django.conf import settings
from django.test import Client

from bench.process import Service, free_port

HERE = Path(__file__).resolve().parent
CLIENT_ID = "chatweb"
CLIENT_SECRET = "provider-test-secret"
POST_CLIENT_ID = "chatweb-secret-in-body"  # registered for client_secret_post only
TESTSERVER = "http://testserver"


def account(email: str, *, verified: bool = True, groups: list[str] | None = None, **more: Any) -> dict[str, Any]:
    return {"email": email, "email_verified": verified, "groups": groups or [], **more}


class OidcProvider(Service):
    """`node tests/oidc/provider.mjs` on a free port, with chatweb registered as a client for `sites`."""

    def __init__(self, *, sites: list[str], accounts: dict[str, dict[str, Any]], port: int | None = None) -> None:
        port = port or free_port()
        config = {
            "port": port,
            "accounts": accounts,
            "clients": [
                {
                    "client_id": client_id,
                    "client_secret": CLIENT_SECRET,
                    "redirect_uris": [f"{site}/oidc/callback/" for site in sites],
                    "post_logout_redirect_uris": [f"{site}/accounts/login/" for site in sites],
                    "token_endpoint_auth_method": method,
                }
                for client_id, method in ((CLIENT_ID, "client_secret_basic"), (POST_CLIENT_ID, "client_secret_post"))
            ],
        }
        if not (HERE / "node_modules" / "oidc-provider").exists():
            raise RuntimeError("the test provider's packages are missing: run `npm ci` in tests/oidc (make test does)")
        super().__init__(["node", str(HERE / "provider.mjs"), json.dumps(config)], dict(os.environ),
                         settings.VAR_DIR / f"oidc-{port}.log", port, timeout=30)
        self.issuer = self.url

    def stop(self) -> None:
        super().stop()
        self.log_path.unlink(missing_ok=True)

    def set_account(self, login: str, claims: dict[str, Any]) -> None:
        answer = requests.post(f"{self.url}/__test__/account", json={"id": login, "claims": claims}, timeout=10)
        answer.raise_for_status()

    def alter_next_id_token(self, kind: str) -> None:
        """The next ID token the token endpoint issues is altered: audience, expired, issuer (re-signed with the
        provider's key), or tampered (changed after signing)."""
        requests.post(f"{self.url}/__test__/mutate", json={"kind": kind}, timeout=10).raise_for_status()

    def settings(self, **more: Any) -> dict[str, Any]:
        """chatweb's settings for this provider (for override_settings)."""
        return {"CHATWEB_OIDC_ISSUER": self.issuer, "CHATWEB_OIDC_CLIENT_ID": CLIENT_ID,
                "CHATWEB_OIDC_CLIENT_SECRET": CLIENT_SECRET, **more}


def to_provider_and_back(client: Client, login: str) -> str:
    """Start a sign-in at chatweb, sign `login` in at the provider; the callback URL (path + query) it sends back."""
    start = client.get("/oidc/authenticate/")
    assert start.status_code == 302, start.content
    url = f"{start['Location']}&login_hint={login}"
    browser = requests.Session()
    while not url.startswith(TESTSERVER):
        response = browser.get(url, allow_redirects=False, timeout=10)
        assert response.status_code in (302, 303), (response.status_code, response.text[:500])
        url = urljoin(url, response.headers["Location"])
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}"
