"""Security hardening: deploy settings, throttling, headers and CSP, websocket limits, audit."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import re
import socket
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest
from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from channels.testing import HttpCommunicator, WebsocketCommunicator
from django.contrib import admin
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
from django.contrib.sessions.backends.db import SessionStore
from django.core.cache import cache
from django.test import Client
from django.urls import reverse

from chatweb import security
from chatweb.asgi import application
from conversations.accounts import throttle
from conversations.chat import generation
from conversations.chat.commands import MAX_CONTENT_CHARS, MAX_FRAME_BYTES, MAX_SYSTEM_CHARS
from conversations.devupstream.server import ThreadedUpstream
from conversations.models import Message, Model, Provider
from conversations.upstream import client as upstream_client
from tests.conftest import PASSWORD

ROOT = Path(__file__).resolve().parent.parent
ORIGIN = (b"origin", b"http://127.0.0.1:8000")
TEST_ADDRESS = "203.0.113.7"  # TEST-NET-3: never an address another test signs in from


# --- 1. production settings: `check --deploy` ---------------------------------------------------------------
def run_in_env(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    clean = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(
            ("DATABASE_URL", "REDIS_URL", "DEBUG", "SECRET_KEY", "CHATWEB_", "SECURE_", "ALLOWED_HOSTS")
        )
        and k != "DJANGO_ALLOW_ASYNC_UNSAFE"  # the test session's own switch, refused by check --deploy
    }
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, env={**clean, **env}, capture_output=True, text=True, timeout=120
    )


PRODUCTION = {
    "DEBUG": "false",
    "SECRET_KEY": "k" * 20 + "Q7x!pL0#vR2@mZ9$wT4%nB6^cY8&dF1*",
    "CHATWEB_ENCRYPTION_KEYS": base64.urlsafe_b64encode(b"0" * 32).decode(),
    "ALLOWED_HOSTS": "chat.example.com",
}


def test_check_deploy_is_clean_in_production():
    result = run_in_env(PRODUCTION, "manage.py", "check", "--deploy", "--fail-level", "WARNING")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout, result.stdout + result.stderr


def test_check_deploy_is_clean_with_preload_and_behind_a_proxy():
    env = {**PRODUCTION, "SECURE_HSTS_PRELOAD": "true", "CHATWEB_TRUSTED_PROXIES": "1"}
    result = run_in_env(env, "manage.py", "check", "--deploy", "--fail-level", "WARNING")
    assert result.returncode == 0 and "no issues" in result.stdout, result.stdout + result.stderr


def settings_of(env: dict[str, str], expression: str) -> str:
    result = run_in_env(env, "-c", f"import chatweb.settings as s; print({expression})")
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_production_defaults_are_https_only():
    values = (
        "s.SECURE_SSL_REDIRECT, s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE, s.SECURE_HSTS_SECONDS, "
        "s.SECURE_HSTS_INCLUDE_SUBDOMAINS, s.SECURE_HSTS_PRELOAD, getattr(s, 'SECURE_PROXY_SSL_HEADER', None)"
    )
    assert settings_of(PRODUCTION, values) == "True True True 31536000 True False None"
    behind_nginx = {**PRODUCTION, "CHATWEB_TRUSTED_PROXIES": "1", "SECURE_HSTS_SECONDS": "600"}
    assert settings_of(behind_nginx, "s.SECURE_PROXY_SSL_HEADER, s.SECURE_HSTS_SECONDS") == (
        "('HTTP_X_FORWARDED_PROTO', 'https') 600"
    )


def test_development_stays_plain_http():
    values = (
        "s.DEBUG, s.SECURE_SSL_REDIRECT, s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE, s.SECURE_HSTS_SECONDS"
    )
    assert settings_of({}, values) == "True False False False 0"


def test_cache_is_local_memory_or_redis():
    assert "LocMemCache" in settings_of({}, "s.CACHES['default']['BACKEND']")
    assert settings_of({"REDIS_URL": "redis://127.0.0.1:6379/0"}, "s.CACHES['default']['BACKEND']") == (
        "django.core.cache.backends.redis.RedisCache"
    )


# --- 2. throttling ------------------------------------------------------------------------------------------
class Clock:
    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.now = 1_000_000.0
        monkeypatch.setattr(throttle, "_now", lambda: self.now)

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock(monkeypatch):
    return Clock(monkeypatch)


@pytest.fixture
def forget():
    """Clears the throttle keys a test names, before and after (in CI the cache is a Redis that live servers
    share)."""
    used: list[tuple[str, str]] = []

    def remember(kind: str, key: str) -> str:
        used.append((kind, key))
        throttle.clear(kind, key)
        return key

    yield remember
    for kind, key in used:
        throttle.clear(kind, key)


def test_schedule_is_free_then_slowed_then_locked_then_lifted(clock, forget, settings):
    settings.CHATWEB_THROTTLE_ACCOUNT_FAILURES = 5
    settings.CHATWEB_THROTTLE_LOCK_SECONDS = 900
    key = forget(throttle.LOGIN_ACCOUNT, "schedule-user")
    assert [throttle.fail(throttle.LOGIN_ACCOUNT, key) for _ in range(2)] == [0, 0]
    assert throttle.check(throttle.LOGIN_ACCOUNT, key) == 0
    assert throttle.fail(throttle.LOGIN_ACCOUNT, key) == 2  # slowed
    assert throttle.check(throttle.LOGIN_ACCOUNT, key) == 2
    clock.advance(2)
    assert throttle.check(throttle.LOGIN_ACCOUNT, key) == 0
    assert throttle.fail(throttle.LOGIN_ACCOUNT, key) == 4
    clock.advance(4)
    assert throttle.fail(throttle.LOGIN_ACCOUNT, key) == 900  # locked
    clock.advance(60)
    assert throttle.check(throttle.LOGIN_ACCOUNT, key) == 840
    clock.advance(840)
    assert throttle.check(throttle.LOGIN_ACCOUNT, key) == 0  # lifted, and the count starts again
    assert throttle.fail(throttle.LOGIN_ACCOUNT, key) == 0


def test_kinds_are_separate_and_unknown_kinds_refused(clock, forget, settings):
    settings.CHATWEB_THROTTLE_ADDRESS_FAILURES = 1
    forget(throttle.API_ADDRESS, "198.51.100.1")
    forget(throttle.LOGIN_ADDRESS, "198.51.100.1")
    assert throttle.fail(throttle.API_ADDRESS, "198.51.100.1") == settings.CHATWEB_THROTTLE_LOCK_SECONDS
    assert throttle.check(throttle.LOGIN_ADDRESS, "198.51.100.1") == 0
    throttle.clear(throttle.API_ADDRESS, "198.51.100.1")
    assert throttle.check(throttle.API_ADDRESS, "198.51.100.1") == 0
    with pytest.raises(ValueError, match="unknown throttle kind"):
        throttle.check("api", "x")


def test_client_address_trusts_forwarded_for_only_behind_a_proxy(rf, settings):
    request = rf.get("/", REMOTE_ADDR="10.0.0.5", HTTP_X_FORWARDED_FOR="1.2.3.4, 198.51.100.9")
    settings.CHATWEB_TRUSTED_PROXIES = 0
    assert throttle.client_address(request) == "10.0.0.5"  # a client can write any X-Forwarded-For
    settings.CHATWEB_TRUSTED_PROXIES = 1
    assert (
        throttle.client_address(request) == "198.51.100.9"
    )  # the hop nginx appended, not the spoofable first
    settings.CHATWEB_TRUSTED_PROXIES = 2
    assert throttle.client_address(request) == "1.2.3.4"
    scope = {"client": ("10.0.0.5", 5555), "headers": [(b"x-forwarded-for", b"7.7.7.7, 198.51.100.10")]}
    settings.CHATWEB_TRUSTED_PROXIES = 1
    assert throttle.client_address(scope) == "198.51.100.10"
    settings.CHATWEB_TRUSTED_PROXIES = 0
    assert throttle.client_address(scope) == "10.0.0.5"
    assert throttle.client_address(rf.get("/", REMOTE_ADDR="2001:db8:1:2:3:4:5:6")) == "2001:db8:1:2::/64"
    assert throttle.client_address(rf.get("/", REMOTE_ADDR="::ffff:192.0.2.1")) == "192.0.2.1"


def sign_in(client: Client, username: str, password: str, path: str = "/accounts/login/"):
    return client.post(path, {"username": username, "password": password})


def flash(response) -> str:
    return " ".join(str(m) for m in response.context["messages"]) if response.context else ""


@pytest.mark.django_db
def test_sign_in_is_slowed_locked_and_lifted(alice, clock, forget, settings):
    settings.CHATWEB_THROTTLE_ACCOUNT_FAILURES = 3
    settings.CHATWEB_THROTTLE_LOCK_SECONDS = 600
    forget(throttle.LOGIN_ACCOUNT, "alice")
    forget(throttle.LOGIN_ADDRESS, TEST_ADDRESS)
    client = Client(REMOTE_ADDR=TEST_ADDRESS)
    first = sign_in(client, "alice", "wrong")
    assert first.status_code == 200 and "username and password didn" in first.content.decode()
    second = sign_in(client, "Alice", "wrong")  # case does not give a fresh counter
    assert "try again in 2 seconds" in second.content.decode()
    refused = sign_in(client, "alice", "wrong")  # within the pause: refused, not even checked
    assert refused.status_code == 429 and refused["Retry-After"] == "2"
    clock.advance(2)
    locking = sign_in(client, "alice", "wrong")
    assert "Too many failed sign-in attempts; try again in 10 minutes." in locking.content.decode()
    locked = sign_in(client, "alice", PASSWORD)  # even the right password
    assert locked.status_code == 429 and locked["Retry-After"] == "600"
    assert "Too many failed sign-in attempts; try again in 10 minutes." in locked.content.decode()
    assert '<form method="post"' in locked.content.decode()
    assert "_auth_user_id" not in client.session
    clock.advance(601)
    welcome = sign_in(client, "alice", PASSWORD)
    assert welcome.status_code == 302 and client.session["_auth_user_id"] == str(alice.pk)


@pytest.mark.django_db
def test_success_clears_the_account_count_but_not_the_address(alice, bob, clock, forget, settings):
    settings.CHATWEB_THROTTLE_ACCOUNT_FAILURES = 3  # the second failure in a row pauses
    settings.CHATWEB_THROTTLE_ADDRESS_FAILURES = 100
    forget(throttle.LOGIN_ACCOUNT, "alice")
    forget(throttle.LOGIN_ADDRESS, TEST_ADDRESS)
    client = Client(REMOTE_ADDR=TEST_ADDRESS)
    sign_in(client, "alice", "wrong")
    assert sign_in(client, "alice", PASSWORD).status_code == 302
    client.logout()
    again = sign_in(client, "alice", "wrong")
    assert again.status_code == 200 and "Too many" not in again.content.decode()  # counted from zero
    failures_at_address = cache.get(throttle._keys(throttle.LOGIN_ADDRESS, TEST_ADDRESS)[0])
    assert failures_at_address == 2  # a success from an address does not wipe its failures


@pytest.mark.django_db
def test_the_address_lock_covers_every_account(alice, bob, clock, forget, settings):
    settings.CHATWEB_THROTTLE_ADDRESS_FAILURES = 2
    forget(throttle.LOGIN_ADDRESS, TEST_ADDRESS)
    forget(throttle.LOGIN_ADDRESS, "203.0.113.8")
    for name in ("alice", "bob", "carol"):
        forget(throttle.LOGIN_ACCOUNT, name)
    client = Client(REMOTE_ADDR=TEST_ADDRESS)
    sign_in(client, "alice", "wrong")
    sign_in(client, "carol", "wrong")
    refused = sign_in(client, "bob", PASSWORD)
    assert refused.status_code == 429 and "Too many failed sign-in attempts" in refused.content.decode()
    assert sign_in(Client(REMOTE_ADDR="203.0.113.8"), "bob", PASSWORD).status_code == 302


@pytest.mark.django_db
def test_forwarded_for_does_not_evade_the_address_lock_without_a_proxy(clock, forget, settings):
    settings.CHATWEB_THROTTLE_ADDRESS_FAILURES = 1
    settings.CHATWEB_TRUSTED_PROXIES = 0
    forget(throttle.LOGIN_ADDRESS, TEST_ADDRESS)
    for i in range(3):
        forget(throttle.LOGIN_ACCOUNT, f"nobody{i}")
    client = Client(REMOTE_ADDR=TEST_ADDRESS)
    sign_in(client, "nobody0", "x")
    spoofed = client.post(
        "/accounts/login/", {"username": "nobody1", "password": "x"}, HTTP_X_FORWARDED_FOR="192.0.2.55"
    )
    assert spoofed.status_code == 429


@pytest.mark.django_db
def test_admin_sign_in_is_throttled_too(staff, clock, forget, settings):
    settings.CHATWEB_THROTTLE_ACCOUNT_FAILURES = 1
    forget(throttle.LOGIN_ACCOUNT, "staff")
    forget(throttle.LOGIN_ADDRESS, TEST_ADDRESS)
    client = Client(REMOTE_ADDR=TEST_ADDRESS)
    assert reverse("admin:login") == "/admin/login/"
    sign_in(client, "staff", "wrong", "/admin/login/")
    locked = sign_in(client, "staff", PASSWORD, "/admin/login/")
    assert locked.status_code == 429
    assert "Too many failed sign-in attempts; try again in 15 minutes." in locked.content.decode()
    assert "_auth_user_id" not in client.session
    clock.advance(settings.CHATWEB_THROTTLE_LOCK_SECONDS + 1)
    assert sign_in(client, "staff", PASSWORD, "/admin/login/").status_code == 302


# --- 3. headers and the Content-Security-Policy -------------------------------------------------------------
EXPECTED = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Permissions-Policy": security.PERMISSIONS_POLICY,
}


def directives(policy: str) -> dict[str, str]:
    return {d.split(" ", 1)[0]: d.split(" ", 1)[1] for d in (p.strip() for p in policy.split(";")) if d}


def assert_strict_policy(policy: str, *, admin_hashes: bool = False) -> None:
    parts = directives(policy)
    assert parts["default-src"] == "'self'" and parts["script-src"] == "'self'"
    assert parts["frame-ancestors"] == "'none'" and parts["object-src"] == "'none'"
    assert (
        parts["base-uri"] == "'self'"
        and parts["form-action"] == "'self'"
        and parts["img-src"] == "'self' data:"
    )
    assert "unsafe" not in policy
    if admin_hashes:
        assert parts["style-src"].startswith("'self' 'sha256-")
    else:
        assert parts["style-src"] == "'self'"


@pytest.mark.django_db
def test_pages_carry_the_headers(alice):
    client = Client()
    response = client.get("/accounts/login/")
    for name, value in EXPECTED.items():
        assert response[name] == value
    assert_strict_policy(response["Content-Security-Policy"])
    assert directives(response["Content-Security-Policy"])["connect-src"] == "'self' ws://testserver"
    client.force_login(alice)
    page = client.get("/")
    assert page.status_code == 200
    assert_strict_policy(page["Content-Security-Policy"])
    secure = client.get("/", secure=True)
    assert directives(secure["Content-Security-Policy"])["connect-src"] == "'self' wss://testserver"


async def asgi_get(path: str) -> tuple[int, dict[str, str], bytes]:
    communicator = HttpCommunicator(application, "GET", path, headers=[(b"host", b"127.0.0.1:8000")])
    response = await communicator.get_response(timeout=10)
    headers = {k.decode().lower(): v.decode() for k, v in response["headers"]}
    return response["status"], headers, response["body"]


@pytest.mark.django_db(transaction=True)
async def test_headers_over_asgi_on_pages_and_static_files():
    for path in ("/accounts/login/", "/static/css/app.css", "/static/js/chat.js", "/static/no-such-file.css"):
        status, headers, _ = await asgi_get(path)
        assert status in (200, 404), path
        for name, value in EXPECTED.items():
            assert headers[name.lower()] == value, (path, name)
        assert_strict_policy(headers["content-security-policy"])
        assert headers["cross-origin-resource-policy"] == "same-origin"
        assert list(headers).count("x-content-type-options") == 1


INLINE_SCRIPT = re.compile(r"<script\b(?![^>]*\bsrc=)(?![^>]*type=\"application/json\")[^>]*>", re.IGNORECASE)
STYLE_ATTRIBUTE = re.compile(r"<[^>]+\sstyle\s*=", re.IGNORECASE)
EVENT_ATTRIBUTE = re.compile(r"<[^>]+\son[a-z]+\s*=", re.IGNORECASE)
STYLE_BLOCK = re.compile(r"<style\b[^>]*>(.*?)</style>", re.IGNORECASE | re.DOTALL)


def inline_code_violations(html: str, policy: str) -> list[str]:
    """What in this HTML a browser would refuse under this policy: inline scripts, style attributes, event
    handlers, and <style> blocks whose hash the policy does not list."""
    found = [
        m.group(0)[:80]
        for pattern in (INLINE_SCRIPT, STYLE_ATTRIBUTE, EVENT_ATTRIBUTE)
        for m in pattern.finditer(html)
    ]
    allowed = directives(policy)["style-src"]
    for block in STYLE_BLOCK.findall(html):
        digest = base64.b64encode(hashlib.sha256(block.encode()).digest()).decode()
        if f"'sha256-{digest}'" not in allowed:
            found.append(f"<style> {block.strip()[:60]!r}")
    return found


def test_our_templates_hold_no_inline_script_or_style():
    for path in sorted((ROOT / "templates").rglob("*.html")):
        text = path.read_text()
        assert not INLINE_SCRIPT.search(text), path
        assert not STYLE_ATTRIBUTE.search(text), path
        assert not EVENT_ATTRIBUTE.search(text), path
        if "admin" not in path.relative_to(ROOT / "templates").parts:
            assert not STYLE_BLOCK.search(text), path  # only /admin/ pages allow hashed <style> blocks
    script = (ROOT / "static" / "js" / "chat.js").read_text()
    assert not re.search(r"\beval\(|new Function\(|setAttribute\(\s*['\"]style", script)


def test_admin_style_hashes_cover_djangos_admin_templates():
    django_admin = security.ADMIN_TEMPLATE_DIRS[0]
    blocks = [
        block for path in django_admin.rglob("*.html") for block in STYLE_BLOCK.findall(path.read_text())
    ]
    assert blocks, "Django's admin has an inline <style> (admin/change_list.html)"
    policy = security.content_security_policy(admin=True)
    for block in blocks:
        digest = base64.b64encode(hashlib.sha256(block.encode()).digest()).decode()
        assert f"'sha256-{digest}'" in policy
    assert "sha256" not in security.content_security_policy()


@pytest.mark.django_db
def test_admin_pages_work_under_the_policy(staff):
    client = Client()
    client.force_login(staff)
    paths = ["/admin/", "/admin/password_change/"]
    for model, model_admin in admin.site._registry.items():
        meta = model._meta
        paths.append(reverse(f"admin:{meta.app_label}_{meta.model_name}_changelist"))
        if model_admin.has_add_permission(type("R", (), {"user": staff})()):
            paths.append(reverse(f"admin:{meta.app_label}_{meta.model_name}_add"))
    rendered = 0
    for path in paths:
        response = client.get(path)
        if response.status_code != 200:
            continue
        rendered += 1
        policy = response["Content-Security-Policy"]
        assert_strict_policy(policy, admin_hashes=True)
        assert response["X-Frame-Options"] == "DENY"
        assert inline_code_violations(response.content.decode(), policy) == [], path
    assert rendered >= 2


@pytest.mark.django_db
def test_the_chat_page_has_nothing_the_policy_refuses(alice):
    client = Client()
    client.force_login(alice)
    for path in ("/", "/accounts/login/", "/accounts/password_change/"):
        response = client.get(path)
        assert response.status_code == 200, path
        assert inline_code_violations(response.content.decode(), response["Content-Security-Policy"]) == [], (
            path
        )


# --- 4. websocket limits ------------------------------------------------------------------------------------
def session_cookie(user) -> str:
    session = SessionStore()
    session[SESSION_KEY] = str(user.pk)
    session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
    session[HASH_SESSION_KEY] = user.get_session_auth_hash()
    session.save()
    return session.session_key


async def open_socket(user) -> WebsocketCommunicator:
    key = await sync_to_async(session_cookie)(user)
    communicator = WebsocketCommunicator(
        application, "/ws/chat/", headers=[ORIGIN, (b"cookie", f"sessionid={key}".encode())]
    )
    connected, _ = await communicator.connect()
    assert connected
    return communicator


async def next_frame(ws: WebsocketCommunicator, timeout: float = 10) -> dict:
    return json.loads(await ws.receive_from(timeout=timeout))


def test_the_frame_limit_fits_the_longest_message_and_stays_under_daphnes():
    assert MAX_FRAME_BYTES >= 4 * (MAX_CONTENT_CHARS + MAX_SYSTEM_CHARS) + 1024
    assert MAX_FRAME_BYTES < 1024 * 1024  # Daphne's default --websocket-max-message-size


@pytest.mark.django_db(transaction=True)
async def test_oversize_frames_and_messages_are_refused(alice):
    ws = await open_socket(alice)
    await ws.send_to(text_data="x" * (MAX_FRAME_BYTES + 1))
    assert (await next_frame(ws))["code"] == "frame_too_large"
    long = {"type": "chat.send", "request_id": "r9", "model": "m", "content": "a" * (MAX_CONTENT_CHARS + 1)}
    await ws.send_to(text_data=json.dumps(long))
    error = await next_frame(ws)
    assert error == {
        "type": "chat.error",
        "code": "message_too_long",
        "request_id": "r9",
        "message": f"a message may hold at most {MAX_CONTENT_CHARS:,} characters",
    }
    # The longest allowed message in 4-byte characters still fits a frame (and is then judged on its merits).
    widest = {
        "type": "chat.send",
        "request_id": "r10",
        "model": "no/such",
        "content": "😀" * MAX_CONTENT_CHARS,
    }
    await ws.send_to(text_data=json.dumps(widest, ensure_ascii=False))
    assert (await next_frame(ws))["code"] == "not_found"
    await ws.send_to(bytes_data=b"\x00\x01")
    assert (await next_frame(ws))["code"] == "bad_request"
    await ws.disconnect()


@pytest.fixture(scope="module")
def slow_upstream():
    with ThreadedUpstream() as upstream:
        yield upstream


def make_model(base_url: str) -> Model:
    provider = Provider.objects.create(name="slow", base_url=base_url, max_retries=0)
    return Model.objects.create(
        provider=provider,
        upstream_id="dev-chat",
        input_price=Decimal("0.5"),
        output_price=Decimal("1.5"),
        max_output_tokens=1024,
    )


async def until_not_streaming(message_id: int, timeout: float = 10) -> None:
    """Until the reply's generation task has ended (watched in this process, not through `chat.done`)."""
    deadline = asyncio.get_running_loop().time() + timeout
    query = Message.objects.filter(pk=message_id, status=Message.Status.STREAMING).exists
    while await database_sync_to_async(query)() or message_id in [
        r.plan.message_id for r in generation.running_replies()
    ]:
        assert asyncio.get_running_loop().time() < deadline, "the reply did not end"
        await asyncio.sleep(0.05)


def send_frame(model: str, request_id: str) -> str:
    return json.dumps(
        {
            "type": "chat.send",
            "request_id": request_id,
            "conversation_id": None,
            "model": model,
            "content": f"Tell me a long story ({request_id})",
        }
    )


@pytest.mark.django_db(transaction=True)
async def test_too_many_concurrent_replies_are_refused(alice, slow_upstream, settings):
    settings.CHATWEB_MAX_CONCURRENT_REPLIES = 2
    model = await database_sync_to_async(make_model)(slow_upstream.v1(delay=0.05, tokens=400))
    ws = await open_socket(alice)
    try:
        for request_id in ("r1", "r2", "r3"):
            await ws.send_to(text_data=send_frame(model.public_name, request_id))
        started, errors = {}, []
        while len(started) < 2 or not errors:
            frame = await next_frame(ws)
            if frame["type"] == "chat.started":
                started[frame["request_id"]] = frame["message_id"]
            elif frame["type"] == "chat.error":
                errors.append(frame)
        assert set(started) == {"r1", "r2"}
        assert [(e["code"], e["request_id"]) for e in errors] == [("too_many_replies", "r3")]
        assert "at most 2 at once" in errors[0]["message"]
        assert await database_sync_to_async(Message.objects.filter(role="assistant").count)() == 2
        # Stopping one makes room for another.
        await ws.send_to(text_data=json.dumps({"type": "chat.stop", "message_id": started["r1"]}))
        await until_not_streaming(started["r1"])
        await ws.send_to(text_data=send_frame(model.public_name, "r4"))
        while (frame := await next_frame(ws))["type"] not in ("chat.started", "chat.error"):
            pass
        assert frame["type"] == "chat.started" and frame["request_id"] == "r4"
        for message_id in (started["r2"], frame["message_id"]):
            await ws.send_to(text_data=json.dumps({"type": "chat.stop", "message_id": message_id}))
    finally:
        await generation.wait_for_replies()
        await ws.disconnect()
        await upstream_client.close_client()


@pytest.mark.django_db(transaction=True)
async def test_an_idle_socket_is_closed_with_4408(alice, settings):
    settings.CHATWEB_WS_IDLE_SECONDS = 0.4
    ws = await open_socket(alice)
    loop = asyncio.get_running_loop()
    opened = loop.time()
    for _ in range(3):  # frames from the client keep it open
        await asyncio.sleep(0.25)
        await ws.send_to(text_data="{}")
        assert (await next_frame(ws))["type"] == "chat.error"
    closed = await ws.receive_output(timeout=3)
    assert closed["type"] == "websocket.close" and closed["code"] == 4408
    assert loop.time() - opened >= 0.75 + 0.4 - 0.05
    await ws.disconnect()


@pytest.mark.django_db(transaction=True)
async def test_a_socket_with_a_reply_streaming_is_not_idle(alice, slow_upstream, settings):
    settings.CHATWEB_WS_IDLE_SECONDS = 0.4
    # A silent second before the first token: longer than the idle time, with nothing sent either way.
    model = await database_sync_to_async(make_model)(slow_upstream.v1(first_delay=1.2, delay=0.01, tokens=10))
    ws = await open_socket(alice)
    try:
        await ws.send_to(text_data=send_frame(model.public_name, "r1"))
        loop = asyncio.get_running_loop()
        sent = loop.time()
        frames = []
        while (output := await ws.receive_output(timeout=5))["type"] == "websocket.send":
            frames.append(json.loads(output["text"]))
        assert output["type"] == "websocket.close" and output["code"] == 4408
        assert loop.time() - sent > 1.2 + 0.4
        assert frames[0]["type"] == "chat.started" and "chat.delta" in [f["type"] for f in frames]
        reply = await database_sync_to_async(Message.objects.get)(pk=frames[0]["message_id"])
        assert reply.status == "complete"  # closed only once the reply was over
    finally:
        await generation.wait_for_replies()
        await ws.disconnect()
        await upstream_client.close_client()


# Daphne itself (a live server): our frame limit applies through it, and its own bigger limit stops the rest.
class RawWebsocket:
    """Just enough of RFC 6455 to send a frame of any size to a live server and read what comes back."""

    def __init__(self, port: int, cookie: str) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=15)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            (
                f"GET /ws/chat/ HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nOrigin: http://127.0.0.1:{port}\r\n"
                f"Cookie: sessionid={cookie}\r\n\r\n"
            ).encode()
        )
        self.buffer = b""
        while b"\r\n\r\n" not in self.buffer:
            self.buffer += self._recv()
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        assert head.startswith(b"HTTP/1.1 101"), head

    def _recv(self) -> bytes:
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError("closed")
        return data

    def _read(self, n: int) -> bytes:
        while len(self.buffer) < n:
            self.buffer += self._recv()
        data, self.buffer = self.buffer[:n], self.buffer[n:]
        return data

    def send_text(self, payload: bytes, *, declared: int | None = None) -> None:
        length = len(payload) if declared is None else declared
        if length < 126:
            header = bytes([0x81, 0x80 | length])
        elif length < 65536:
            header = bytes([0x81, 0x80 | 126]) + length.to_bytes(2, "big")
        else:
            header = bytes([0x81, 0x80 | 127]) + length.to_bytes(8, "big")
        mask = os.urandom(4)
        stream = (mask * (len(payload) // 4 + 1))[: len(payload)]
        masked = (int.from_bytes(payload, "big") ^ int.from_bytes(stream, "big")).to_bytes(
            len(payload), "big"
        )
        self.sock.sendall(header + mask + masked)

    def receive(self) -> tuple[int, bytes]:
        first, second = self._read(2)
        length = second & 0x7F
        if length == 126:
            length = int.from_bytes(self._read(2), "big")
        elif length == 127:
            length = int.from_bytes(self._read(8), "big")
        return first & 0x0F, self._read(length)

    def close(self) -> None:
        self.sock.close()


@pytest.fixture(scope="module")
def daphne(django_db_setup, django_db_blocker):
    """Daphne as deployed (`daphne chatweb.asgi:application`, default options) on the test database."""
    from tests.live import LiveServer

    server = LiveServer()
    yield server
    server.stop()


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_frame_limits_through_daphne(daphne, alice):
    cookie = session_cookie(alice)
    ws = RawWebsocket(daphne.port, cookie)
    try:
        ws.send_text(b"y" * (MAX_FRAME_BYTES + 1000))  # past ours, under Daphne's: a chat.error, socket open
        opcode, payload = ws.receive()
        assert opcode == 0x1 and json.loads(payload)["code"] == "frame_too_large"
        ws.send_text(b"{}")
        opcode, payload = ws.receive()
        assert opcode == 0x1 and json.loads(payload)["code"] == "bad_request"
        # Past Daphne's 1 MiB: refused from the frame header alone, before the payload is read. Autobahn fails
        # such a connection by dropping it (or, configured otherwise, with close code 1009).
        ws.send_text(b"z" * 1024, declared=2 * 1024 * 1024)
        try:
            opcode, payload = ws.receive()
        except ConnectionError:
            pass
        else:
            assert opcode == 0x8 and int.from_bytes(payload[:2], "big") == 1009
    finally:
        ws.close()
    fresh = RawWebsocket(daphne.port, cookie)  # the server itself is unharmed
    try:
        fresh.send_text(b"{}")
        assert json.loads(fresh.receive()[1])["code"] == "bad_request"
    finally:
        fresh.close()


# --- 6. the dependency audit --------------------------------------------------------------------------------
def load_audit():
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import audit
    finally:
        sys.path.pop(0)
    return audit


def test_audit_fails_on_a_known_vulnerability_and_reports_what_it_could_not_check():
    audit = load_audit()
    vulnerable = {
        "dependencies": [
            {
                "name": "django",
                "version": "5.2.0",
                "vulns": [{"id": "PYSEC-0000-1", "fix_versions": ["5.2.1"]}],
            },
            {"name": "httpx", "version": "0.28.1", "vulns": []},
        ]
    }
    code, text = audit.verdict(vulnerable, strict=False)
    assert code == 1 and "django 5.2.0: PYSEC-0000-1 (fixed in 5.2.1)" in text
    clean = {"dependencies": [{"name": "httpx", "version": "0.28.1", "vulns": []}]}
    assert audit.verdict(clean, strict=True)[0] == 0
    unreachable = {
        "dependencies": [
            {
                "name": "httpx",
                "skip_reason": "Dependency not found on PyPI and could not be audited: httpx (0.28.1)",
            },
        ]
    }
    code, text = audit.verdict(unreachable, strict=False)
    assert code == 0 and "NOT AUDITED" in text and "1 of 1" in text
    assert audit.verdict(unreachable, strict=True)[0] == 2
