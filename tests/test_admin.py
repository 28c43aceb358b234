"""The admin: staff only, write-only provider keys, presets, connection tests, import, users, audit."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import Group, Permission
from django.core.management import call_command
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from conversations.audit import audit_describe
from conversations.catalog.presets import PRESETS
from conversations.catalog.providers_file import providers_apply, providers_export
from conversations.catalog.targets import upstream_target
from conversations.devupstream.server import ThreadedUpstream
from conversations.models import ApiKey, AuditLog, Model, Provider, UsageRecord, User
from conversations.upstream.params import PARAM_SPECS
from tests.conftest import PASSWORD
from tests.live import LiveServer

KEY = "sk-admin-test-Zq81xKEYvalue4242"  # the provider key under test: must never show up anywhere
OTHER_KEY = "sk-admin-other-Pw73rOTHERkey9911"


@pytest.fixture(scope="module")
def upstream() -> Iterator[ThreadedUpstream]:
    with ThreadedUpstream() as server:
        yield server


@pytest.fixture(scope="module")
def daphne(django_db_setup, django_db_blocker) -> Iterator[LiveServer]:
    """A live Daphne of our own: its log is read whole (conftest's `live_server` name collides with
    pytest-django's, whose autouse helper then fails)."""
    server = LiveServer()
    yield server
    server.stop()


@pytest.fixture
def admin_client(client: Client, staff: User) -> Client:
    client.force_login(staff)
    return client


def url(name: str, *args: Any) -> str:
    return reverse(f"admin:{name}", args=args)


def provider_form(provider: Provider | None = None, **overrides: Any) -> dict[str, Any]:
    """POST data for the provider change form, with its inline models as they are."""
    models = list(provider.models.order_by("pk")) if provider else []
    data: dict[str, Any] = {
        "name": provider.name if provider else "acme",
        "base_url": provider.base_url if provider else "https://api.acme.test/v1",
        "enabled": "on",
        "api_key": "",
        "send_stream_options": "on",
        "extra_headers": "{}",
        "initial-extra_headers": "{}",  # the form's hidden copy (a callable default), as a browser sends it
        "connect_timeout": "10",
        "first_token_timeout": "120",
        "read_timeout": "60",
        "max_retries": "2",
        "models-TOTAL_FORMS": str(len(models)),
        "models-INITIAL_FORMS": str(len(models)),
        "models-MIN_NUM_FORMS": "0",
        "models-MAX_NUM_FORMS": "1000",
        "_save": "Save",
    }
    if provider is not None:
        data["extra_headers"] = data["initial-extra_headers"] = json.dumps(provider.extra_headers)
        data["dropped_params"] = list(provider.dropped_params)
        if not provider.send_stream_options:
            del data["send_stream_options"]
    for i, model in enumerate(models):
        row = {
            "id": model.pk,
            "provider": provider.pk,
            "upstream_id": model.upstream_id,
            "alias": model.alias,
            "input_price": "" if model.input_price is None else str(model.input_price),
            "output_price": "" if model.output_price is None else str(model.output_price),
            "context_length": model.context_length or "",
            "max_output_tokens": model.max_output_tokens or "",
            "api": model.api,
        }
        if model.enabled:
            row["enabled"] = "on"
        data.update({f"models-{i}-{k}": v for k, v in row.items()})
    for key, value in overrides.items():
        if value is None:
            data.pop(key, None)
        else:
            data[key] = value
    return data


def add_provider(client: Client, **overrides: Any) -> Provider:
    data = provider_form(**overrides)
    response = client.post(url("conversations_provider_add"), data)
    assert response.status_code == 302, response.content.decode()[:3000]
    return Provider.objects.get(name=data["name"])


def add_model_row(data: dict[str, Any], **row: Any) -> dict[str, Any]:
    i = int(data["models-TOTAL_FORMS"])
    data["models-TOTAL_FORMS"] = str(i + 1)
    defaults = {
        "upstream_id": "m",
        "alias": "",
        "input_price": "",
        "output_price": "",
        "api": "chat",
        "enabled": "on",
    }
    data.update({f"models-{i}-{k}": v for k, v in {**defaults, **row}.items()})
    return data


def page(client: Client, path: str, status: int = 200) -> str:
    response = client.get(path)
    assert response.status_code == status, (path, response.status_code)
    return response.content.decode()


def stored_key(provider: Provider) -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT api_key FROM conversations_provider WHERE id = %s", [provider.pk])
        return cursor.fetchone()[0]


# --- who gets in --------------------------------------------------------------------------------------


def test_staff_sees_every_admin_page(admin_client, alice):
    provider = add_provider(admin_client, api_key=KEY)
    model = Model.objects.create(provider=provider, upstream_id="m1")
    for path in (
        "/admin/",
        url("conversations_provider_changelist"),
        url("conversations_provider_add"),
        url("conversations_provider_change", provider.pk),
        url("conversations_model_changelist"),
        url("conversations_model_change", model.pk),
        url("conversations_user_changelist"),
        url("conversations_user_change", alice.pk),
        url("conversations_auditlog_changelist"),
    ):
        page(admin_client, path)


@pytest.mark.parametrize("who", ["anonymous", "alice"])
def test_non_staff_get_no_admin(client, alice, who):
    provider = Provider.objects.create(name="p", base_url="https://p.test/v1", api_key=KEY)
    if who == "alice":
        client.force_login(alice)
    for path in (
        "/admin/",
        url("conversations_provider_changelist"),
        url("conversations_provider_change", provider.pk),
    ):
        response = client.get(path)
        assert response.status_code == 302 and "/admin/login/" in response["Location"]
    response = client.post(url("conversations_provider_test_connection", provider.pk))
    assert response.status_code == 302 and "/admin/login/" in response["Location"]
    response = client.post(url("conversations_provider_import_models", provider.pk))
    assert response.status_code == 302 and "/admin/login/" in response["Location"]
    assert not Model.objects.exists()


def test_staff_without_permissions_see_only_what_they_are_granted(client, db, upstream):
    clerk = User.objects.create_user(username="clerk", password=PASSWORD, is_staff=True)
    provider = Provider.objects.create(name="p", base_url=upstream.v1(), api_key=KEY)
    client.force_login(clerk)
    assert "conversations" not in page(client, "/admin/").lower().split("<title>")[1].split("</div>")[0]
    for name in ("provider_changelist", "model_changelist", "auditlog_changelist", "user_changelist"):
        page(client, url(f"conversations_{name}"), 403)
    assert client.post(url("conversations_provider_test_connection", provider.pk)).status_code == 403

    clerk.user_permissions.add(Permission.objects.get(codename="view_provider"))
    clerk = User.objects.get(pk=clerk.pk)  # permission cache
    client.force_login(clerk)
    html = page(client, url("conversations_provider_change", provider.pk))
    assert 'name="api_key"' not in html and "Test connection" not in html and KEY not in html
    assert client.post(url("conversations_provider_test_connection", provider.pk)).status_code == 403
    assert client.post(url("conversations_provider_import_models", provider.pk)).status_code == 403
    assert (
        client.post(url("conversations_provider_change", provider.pk), provider_form(provider)).status_code
        == 403
    )
    page(client, url("conversations_auditlog_changelist"), 403)

    clerk.user_permissions.add(Permission.objects.get(codename="change_provider"))
    client.force_login(User.objects.get(pk=clerk.pk))
    html = page(client, url("conversations_provider_change", provider.pk))
    assert "Test connection" in html and "Import models" not in html  # importing adds models: add_model
    assert client.post(url("conversations_provider_import_models", provider.pk)).status_code == 403
    assert client.post(url("conversations_provider_test_connection", provider.pk)).status_code == 200
    assert not Model.objects.exists()


# --- the write-only key -------------------------------------------------------------------------------


def test_key_saved_through_the_admin_is_in_no_admin_page(admin_client, staff):
    data = add_model_row(provider_form(api_key=KEY), upstream_id="m1", input_price="0.5", output_price="1.5")
    response = admin_client.post(url("conversations_provider_add"), data)
    assert response.status_code == 302
    provider = Provider.objects.get(name="acme")
    assert (
        provider.api_key == KEY
        and KEY not in stored_key(provider)
        and stored_key(provider).startswith("gAAAA")
    )
    model = provider.models.get()
    # Change something else too, so the history has a change entry besides the addition.
    admin_client.post(
        url("conversations_provider_change", provider.pk),
        provider_form(provider, base_url="https://b.test/v1"),
    )
    pages = [
        "/admin/",
        url("conversations_provider_changelist"),
        url("conversations_provider_change", provider.pk),
        url("conversations_provider_history", provider.pk),
        url("conversations_provider_delete", provider.pk),
        url("conversations_provider_add") + "?preset=deepinfra",
        url("conversations_model_changelist"),
        url("conversations_model_change", model.pk),
        url("conversations_auditlog_changelist"),
        url("conversations_user_change", staff.pk),
    ]
    pages += [url("conversations_auditlog_change", entry.pk) for entry in AuditLog.objects.all()]
    for path in pages:
        html = page(admin_client, path)
        assert KEY not in html, path
        assert KEY[:-4] not in html, path
    change = page(admin_client, url("conversations_provider_change", provider.pk))
    assert "set, ending in …4242" in change
    assert re.search(r'<input type="password" name="api_key"[^>]*>', change)
    assert 'value="' not in re.search(r'<input type="password" name="api_key"[^>]*>', change).group(0)
    for entry in LogEntry.objects.all():
        assert KEY not in entry.change_message and KEY not in entry.object_repr
    # An invalid submission renders the form again: the typed key is not echoed back.
    response = admin_client.post(
        url("conversations_provider_change", provider.pk),
        provider_form(provider, api_key=OTHER_KEY, base_url="nope"),
    )
    assert response.status_code == 200 and "errornote" in response.content.decode()
    assert OTHER_KEY not in response.content.decode()
    assert Provider.objects.get(pk=provider.pk).api_key == KEY


def test_blank_key_keeps_the_key_and_clear_removes_it(admin_client):
    provider = add_provider(admin_client, api_key=KEY)
    admin_client.post(
        url("conversations_provider_change", provider.pk),
        provider_form(provider, base_url="https://x.test/v1"),
    )
    provider.refresh_from_db()
    assert provider.api_key == KEY and provider.base_url == "https://x.test/v1"
    assert [e.fields for e in AuditLog.objects.filter(action="changed")] == [["base_url"]]

    response = admin_client.post(
        url("conversations_provider_change", provider.pk),
        provider_form(provider, api_key=OTHER_KEY, clear_api_key="on"),
    )
    assert response.status_code == 200 and "not both" in response.content.decode()
    assert Provider.objects.get(pk=provider.pk).api_key == KEY

    admin_client.post(
        url("conversations_provider_change", provider.pk), provider_form(provider, api_key=OTHER_KEY)
    )
    provider.refresh_from_db()
    assert provider.api_key == OTHER_KEY
    history = LogEntry.objects.filter(object_id=str(provider.pk)).first().get_change_message()
    assert history == "Changed New API key." and OTHER_KEY not in history
    admin_client.post(
        url("conversations_provider_change", provider.pk), provider_form(provider, clear_api_key="on")
    )
    provider.refresh_from_db()
    assert provider.api_key == "" and stored_key(provider) == ""
    assert "not set" in page(admin_client, url("conversations_provider_change", provider.pk))
    key_entries = [
        e for e in AuditLog.objects.filter(object_type="provider", action="changed") if "api_key" in e.fields
    ]
    assert len(key_entries) == 2 and all(e.fields == ["api_key"] for e in key_entries)
    assert [audit_describe(e) for e in key_entries] == ["api_key changed", "api_key changed"]


@pytest.mark.django_db(transaction=True)
def test_key_is_not_in_the_database_file_the_export_or_the_logs(
    client, caplog, tmp_path, monkeypatch, settings
):
    staff = User.objects.create_user(username="root", password=PASSWORD, is_staff=True, is_superuser=True)
    client.force_login(staff)
    caplog.set_level(logging.DEBUG)
    add_provider(client, api_key=KEY)
    monkeypatch.setenv("APPLIED_TOKEN", OTHER_KEY)
    toml = tmp_path / "providers.toml"
    toml.write_text(
        '[[provider]]\nname = "applied"\nbase_url = "https://a.test/v1"\napi_key_env = "APPLIED_TOKEN"\n'
    )
    out = io.StringIO()
    call_command("providers", "apply", str(toml), stdout=out)
    call_command("providers", "export", stdout=out)
    assert Provider.objects.get(name="applied").api_key == OTHER_KEY
    for secret in (KEY, OTHER_KEY):
        assert secret not in out.getvalue() and secret not in providers_export()
        assert secret not in caplog.text
        for entry in AuditLog.objects.all():
            assert secret not in repr(entry.__dict__)
    db = settings.DATABASES["default"]
    if db["ENGINE"].endswith("sqlite3"):
        connection.close()  # checkpoint nothing is pending; then read the file and its write-ahead log
        files = [db["NAME"], db["NAME"] + "-wal"]
        raw = b"".join(Path(f).read_bytes() for f in files if Path(f).exists())
        assert raw and KEY.encode() not in raw and OTHER_KEY.encode() not in raw
    else:
        with connection.cursor() as cursor:
            cursor.execute("SELECT api_key FROM conversations_provider")
            assert all(KEY not in token and OTHER_KEY not in token for (token,) in cursor.fetchall())


# --- presets ------------------------------------------------------------------------------------------


def test_presets_cover_the_documented_providers():
    expected = {
        "deepinfra": "https://api.deepinfra.com/v1/openai",
        "deepauto": "https://lang.deepauto.ai/v1",
        "deeptrin": "https://api.deeptrin.com/inference-api/openai/v1",
        "aleph-alpha": "https://api.aleph-alpha.com",  # the openai client appends /chat/completions to it
        "local-proxy": "http://localhost:8000/v1",
    }
    for slug, base_url in expected.items():
        assert PRESETS[slug].base_url == base_url
    for slug in (
        "openai",
        "openrouter",
        "together",
        "groq",
        "mistral",
        "ollama",
        "vllm",
        "llamacpp",
        "litellm",
    ):
        assert PRESETS[slug].base_url.startswith("http")
    for preset in PRESETS.values():
        assert set(preset.dropped_params) <= set(PARAM_SPECS), preset.slug
        assert not preset.base_url.endswith("/")


def test_add_page_offers_presets_and_fills_base_url_and_switches(admin_client):
    html = page(admin_client, url("conversations_provider_add"))
    assert 'name="preset"' in html and "DeepInfra" in html and "LiteLLM" in html
    html = page(admin_client, url("conversations_provider_add") + "?preset=mistral")
    assert 'value="https://api.mistral.ai/v1"' in html and 'value="mistral"' in html
    assert re.search(r'<input type="checkbox" name="send_stream_options"(?![^>]*checked)[^>]*>', html)
    assert re.search(r'<input type="checkbox" name="dropped_params" value="seed"[^>]*checked', html)
    assert "Refuses unknown fields" in html
    # Saving the prefilled form (plus a key) gives a provider with the preset's switches.
    data = provider_form(
        name="mistral",
        base_url=PRESETS["mistral"].base_url,
        api_key=KEY,
        send_stream_options=None,
        dropped_params=PRESETS["mistral"].dropped_params,
    )
    response = admin_client.post(url("conversations_provider_add") + "?preset=mistral", data)
    assert response.status_code == 302
    provider = Provider.objects.get(name="mistral")
    assert not provider.send_stream_options and set(provider.dropped_params) == set(
        PRESETS["mistral"].dropped_params
    )
    html = page(admin_client, url("conversations_provider_add") + "?preset=mistral")
    assert 'name="name" value="mistral"' not in html  # the slug is taken: left for the admin to choose


# --- test connection ----------------------------------------------------------------------------------


def test_test_connection_button_succeeds_against_the_dev_upstream(admin_client, upstream, caplog):
    caplog.set_level(logging.DEBUG)
    provider = Provider.objects.create(name="dev", base_url=upstream.v1(key="ok"), api_key=KEY)
    Model.objects.create(provider=provider, upstream_id="dev-chat")
    response = admin_client.post(url("conversations_provider_test_connection", provider.pk))
    html = response.content.decode()
    assert response.status_code == 200 and "connection works" in html
    assert "3 model(s): dev-chat, dev-reasoner, dev-complete" in html
    assert "one-token reply from dev-chat" in html and "usage reported (" in html
    assert re.search(r"<td>\d+ ms</td>", html)
    assert upstream.stats("ok")["completed"] >= 1
    assert KEY not in html and KEY not in caplog.text


def test_test_connection_shows_a_401_with_our_code_and_the_upstreams_words(admin_client, upstream, caplog):
    caplog.set_level(logging.DEBUG)
    provider = Provider.objects.create(
        name="locked", base_url=upstream.v1(require_key="the-right-one"), api_key=KEY
    )
    html = admin_client.post(url("conversations_provider_test_connection", provider.pk)).content.decode()
    assert "connection failed" in html
    assert "<code>upstream_auth</code>" in html and "401" in html
    assert "Incorrect API key provided" in html  # the upstream's own message
    assert "rejected chatweb&#x27;s API key" in html  # ours
    assert KEY not in html and KEY not in caplog.text


def test_test_connection_action_checks_several_providers(admin_client, upstream):
    good = Provider.objects.create(name="good", base_url=upstream.v1(), api_key=KEY)
    Model.objects.create(provider=good, upstream_id="dev-complete", api="completions")
    bad = Provider.objects.create(name="bad", base_url=upstream.v1(fail=503), api_key=KEY)
    response = admin_client.post(
        url("conversations_provider_changelist"),
        {"action": "test_connection", "_selected_action": [good.pk, bad.pk]},
    )
    html = response.content.decode()
    assert response.status_code == 200
    assert "good</a>:\n    connection works" in html and "bad</a>:\n    connection failed" in html
    assert "POST /completions" in html and "upstream_unavailable" in html


# --- import -------------------------------------------------------------------------------------------


def test_import_adds_new_models_disabled_unpriced_and_flagged(admin_client, upstream, staff):
    provider = Provider.objects.create(name="dev", base_url=upstream.v1(), api_key=KEY)
    Model.objects.create(provider=provider, upstream_id="dev-chat", input_price=1, output_price=2)
    response = admin_client.post(url("conversations_provider_import_models", provider.pk))
    assert response.status_code == 302 and "needs_pricing=yes" in response["Location"]
    imported = Model.objects.filter(provider=provider).exclude(upstream_id="dev-chat")
    assert sorted(m.upstream_id for m in imported) == ["dev-complete", "dev-reasoner"]
    for model in imported:
        assert not model.enabled and model.input_price is None and model.output_price is None
        assert model.public_name == f"dev/{model.upstream_id}" and not model.priced
    assert Model.objects.get(upstream_id="dev-complete").context_length == 8192
    html = page(admin_client, response["Location"])
    assert "dev/dev-reasoner" in html and "dev/dev-complete" in html and "dev/dev-chat" not in html
    assert "2 model(s) imported" in html and "1 already known" in html
    entries = AuditLog.objects.filter(action="imported")
    assert entries.count() == 2 and all(e.actor == staff and e.source == "admin" for e in entries)
    # Again: nothing new.
    admin_client.post(url("conversations_provider_import_models", provider.pk))
    assert (
        Model.objects.filter(provider=provider).count() == 3
        and AuditLog.objects.filter(action="imported").count() == 2
    )


def test_import_failure_says_why_and_changes_nothing(admin_client, upstream):
    provider = Provider.objects.create(name="locked", base_url=upstream.v1(require_key="x"), api_key=KEY)
    response = admin_client.post(
        url("conversations_provider_changelist"),
        {
            "action": "import_models",
            "_selected_action": [provider.pk],
        },
        follow=True,
    )
    html = response.content.decode()
    assert "import failed: chatweb could not read the model list (GET " in html and "upstream_auth" in html
    assert "Incorrect API key provided" in html and KEY not in html
    assert "What to check: The provider refused the API key" in html
    assert not Model.objects.exists()


def _closed_port() -> int:
    import socket

    with socket.socket() as s:  # bound, never listening: a connection there is refused
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("base_url", ["refused", "http://nonexistent.invalid/v1"])
def test_a_provider_that_cannot_be_reached_says_what_to_check(admin_client, upstream, base_url):
    if base_url == "refused":
        base_url = f"http://127.0.0.1:{_closed_port()}/v1"
    provider = Provider.objects.create(name="gone", base_url=base_url, api_key=KEY, max_retries=0)
    Model.objects.create(provider=provider, upstream_id="m")
    html = admin_client.post(url("conversations_provider_test_connection", provider.pk)).content.decode()
    assert "connection failed" in html and "<code>upstream_unreachable</code>" in html
    assert "try again later" not in html
    assert "Check the base URL" in html and "DNS" in html and "firewall" in html
    provider.refresh_from_db()
    assert provider.unreachable_at is not None  # the model picker flags it
    response = admin_client.post(url("conversations_provider_import_models", provider.pk), follow=True)
    html = response.content.decode()
    assert "import failed" in html and "upstream_unreachable" in html and "DNS" in html
    provider.base_url = upstream.v1()
    provider.save()
    html = admin_client.post(url("conversations_provider_test_connection", provider.pk)).content.decode()
    assert "<code>upstream_unreachable</code>" not in html
    provider.refresh_from_db()
    assert provider.unreachable_at is None


def test_needs_pricing_filter(admin_client):
    provider = Provider.objects.create(name="p", base_url="https://p.test/v1")
    Model.objects.create(provider=provider, upstream_id="priced", input_price=1, output_price=1)
    Model.objects.create(provider=provider, upstream_id="half", input_price=1)
    Model.objects.create(provider=provider, upstream_id="none")
    html = page(admin_client, url("conversations_model_changelist") + "?needs_pricing=yes")
    assert "p/half" in html and "p/none" in html and "p/priced" not in html
    html = page(admin_client, url("conversations_model_changelist") + "?needs_pricing=no")
    assert "p/priced" in html and "p/none" not in html


# --- users --------------------------------------------------------------------------------------------


def test_users_show_budget_spend_and_api_keys_never_hashes(admin_client, alice, bob):
    alice.monthly_budget = Decimal("5.00")
    alice.save()
    bob.timezone = "Asia/Tokyo"
    bob.save()
    for user, cost in ((alice, "0.25"), (alice, "0.5"), (bob, "1.125")):
        UsageRecord.objects.create(
            user=user,
            source="chat",
            provider_name="p",
            model_name="p/m",
            estimated_cost=Decimal(cost),
            cost_source="price",
        )
    raw, prefix, hashed = ApiKey.generate()
    ApiKey.objects.create(user=alice, name="laptop", prefix=prefix, hashed=hashed)
    html = page(admin_client, url("conversations_user_changelist"))
    assert "$0.75" in html and "$1.13" in html and "5.0000" in html
    html = page(admin_client, url("conversations_user_change", alice.pk)).replace("$0.75", "0.7500")
    assert prefix in html and "laptop" in html and "0.7500" in html
    assert hashed not in html and raw not in html


def test_changelists_do_not_query_per_row(admin_client, db):
    def queries(path: str) -> int:
        with CaptureQueriesContext(connection) as ctx:
            page(admin_client, path)
        return len(ctx)

    def grow(n: int) -> None:
        for i in range(n):
            p = Provider.objects.create(
                name=f"p{i}-{Provider.objects.count()}", base_url="https://p.test/v1", api_key=KEY
            )
            Model.objects.create(provider=p, upstream_id="m")
            User.objects.create_user(username=f"u{User.objects.count()}", password=PASSWORD)

    grow(2)
    counts = [
        queries(url(f"conversations_{n}_changelist")) for n in ("provider", "model", "user", "auditlog")
    ]
    grow(6)
    assert [
        queries(url(f"conversations_{n}_changelist")) for n in ("provider", "model", "user", "auditlog")
    ] == counts
    provider = Provider.objects.first()
    for i in range(3):
        Model.objects.create(provider=provider, upstream_id=f"x{i}").allowed_groups.add(
            Group.objects.create(name=f"g{i}")
        )
    few = queries(url("conversations_provider_change", provider.pk))
    for i in range(5):
        Model.objects.create(provider=provider, upstream_id=f"y{i}")
    assert queries(url("conversations_provider_change", provider.pk)) == few


# --- the audit trail ----------------------------------------------------------------------------------


def test_audit_records_provider_key_price_model_and_budget_changes(admin_client, staff, alice):
    group = Group.objects.create(name="research")
    data = add_model_row(provider_form(api_key=KEY), upstream_id="m1", input_price="0.5", output_price="1.5")
    admin_client.post(url("conversations_provider_add"), data)
    provider = Provider.objects.get(name="acme")
    created = AuditLog.objects.get(object_type="provider", action="created")
    assert {"name", "base_url", "api_key"} <= set(created.fields) and created.actor == staff
    assert AuditLog.objects.get(object_type="model", action="created").fields == [
        "input_price",
        "output_price",
        "provider",
        "upstream_id",
    ]
    # Provider settings.
    admin_client.post(
        url("conversations_provider_change", provider.pk), provider_form(provider, read_timeout="30")
    )
    assert AuditLog.objects.filter(object_type="provider", action="changed").first().fields == [
        "read_timeout"
    ]
    # A price, in the inline.
    data = provider_form(provider, **{"models-0-input_price": "0.75"})
    admin_client.post(url("conversations_provider_change", provider.pk), data)
    assert AuditLog.objects.filter(object_type="model", action="changed").first().fields == ["input_price"]
    # A price and the enabled flag, in the model list (list_editable).
    model = provider.models.get()
    response = admin_client.post(
        url("conversations_model_changelist"),
        {
            "form-TOTAL_FORMS": "1",
            "form-INITIAL_FORMS": "1",
            "form-MIN_NUM_FORMS": "0",
            "form-MAX_NUM_FORMS": "1000",
            "form-0-id": model.pk,
            "form-0-input_price": "0.75",
            "form-0-output_price": "2",
            "_save": "Save",
        },
    )
    assert response.status_code == 302
    assert AuditLog.objects.filter(object_type="model", action="changed").first().fields == [
        "enabled",
        "output_price",
    ]
    # Groups, on the model page.
    admin_client.post(
        url("conversations_model_change", model.pk),
        {
            "provider": provider.pk,
            "upstream_id": "m1",
            "alias": "",
            "input_price": "0.75",
            "output_price": "2",
            "api": "chat",
            "image_tokens": "openai",
            "enabled": "on",
            "allowed_groups": [group.pk],
            "_save": "Save",
        },
    )
    assert AuditLog.objects.filter(object_type="model", action="changed").first().fields == [
        "allowed_groups",
        "enabled",
    ]
    # The key.
    admin_client.post(
        url("conversations_provider_change", provider.pk), provider_form(provider, api_key=OTHER_KEY)
    )
    assert AuditLog.objects.filter(object_type="provider").first().fields == ["api_key"]
    # A budget.
    user_page = page(admin_client, url("conversations_user_change", alice.pk))
    form = {
        name: value
        for name, value in re.findall(
            r'<input type="(?:text|email|hidden)" name="([^"]+)" value="([^"]*)"', user_page
        )
        if not name.startswith("csrf")
    }
    form.update(
        {
            "username": "alice",
            "is_active": "on",
            "monthly_budget": "12.50",
            "timezone": "UTC",
            "_save": "Save",
        }
    )
    form.update({"date_joined_0": alice.date_joined.strftime("%Y-%m-%d"), "date_joined_1": "00:00:00"})
    response = admin_client.post(url("conversations_user_change", alice.pk), form)
    assert response.status_code == 302, response.content.decode()[:2000]
    alice.refresh_from_db()
    assert alice.monthly_budget == Decimal("12.50")
    budget = AuditLog.objects.get(object_type="user")
    assert budget.fields == ["monthly_budget"] and budget.object_repr == "alice" and budget.actor == staff
    # Deleting a model in the inline, then the provider.
    data = provider_form(provider, **{"models-0-DELETE": "on"})
    admin_client.post(url("conversations_provider_change", provider.pk), data)
    assert AuditLog.objects.filter(object_type="model", action="deleted", object_id=str(model.pk)).exists()
    admin_client.post(url("conversations_provider_delete", provider.pk), {"post": "yes"})
    assert AuditLog.objects.filter(object_type="provider", action="deleted", object_repr="acme").exists()
    assert not Provider.objects.exists()
    # The log is read-only and shows what happened, never a key.
    html = page(admin_client, url("conversations_auditlog_changelist"))
    assert "api_key changed" in html and "monthly_budget changed" in html and "input_price changed" in html
    assert KEY not in html and OTHER_KEY not in html
    page(admin_client, url("conversations_auditlog_add"), 403)
    entry = AuditLog.objects.first()
    assert (
        admin_client.post(url("conversations_auditlog_delete", entry.pk), {"post": "yes"}).status_code == 403
    )
    assert all(e.source == "admin" for e in AuditLog.objects.all())


def test_providers_apply_is_audited_without_values(db, staff, monkeypatch):
    monkeypatch.setenv("TOKEN", KEY)
    text = """
[[provider]]
name = "deepinfra"
base_url = "https://api.deepinfra.com/v1/openai"
api_key_env = "TOKEN"

[[provider.model]]
id = "01-ai/Yi-34B-Chat"
input_price = 0.60
output_price = 0.60
"""
    providers_apply(text=text, actor=staff)
    created = {e.object_type: e for e in AuditLog.objects.filter(action="created")}
    assert set(created) == {"provider", "model"} and created["provider"].actor == staff
    assert "api_key" in created["provider"].fields and created["provider"].source == "providers apply"
    assert created["model"].fields == ["input_price", "output_price", "provider", "upstream_id"]
    providers_apply(text=text)  # idempotent: nothing changed, nothing recorded
    assert AuditLog.objects.count() == 2
    monkeypatch.setenv("TOKEN", OTHER_KEY)
    providers_apply(text=text.replace("input_price = 0.60", "input_price = 0.70"))
    changed = {e.object_type: e for e in AuditLog.objects.filter(action="changed")}
    assert changed["provider"].fields == ["api_key"] and changed["provider"].actor is None
    assert changed["model"].fields == ["input_price"]
    for entry in AuditLog.objects.all():
        assert KEY not in repr(entry.__dict__) and OTHER_KEY not in repr(entry.__dict__)


# --- the real server ----------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_key_saved_through_the_live_server_is_not_in_its_pages_or_log(daphne, upstream):
    User.objects.create_user(username="boss", password=PASSWORD, is_staff=True, is_superuser=True)
    with httpx.Client(base_url=daphne.url, follow_redirects=True, timeout=30) as http:

        def csrf(html: str) -> str:
            return re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', html).group(1)

        login = http.get("/admin/login/")
        response = http.post(
            "/admin/login/?next=/admin/",
            data={
                "username": "boss",
                "password": PASSWORD,
                "csrfmiddlewaretoken": csrf(login.text),
                "next": "/admin/",
            },
        )
        assert response.status_code == 200 and "chatweb administration" in response.text
        add = http.get(url("conversations_provider_add") + "?preset=deepinfra")
        data = provider_form(
            name="live",
            api_key=KEY,
            base_url=upstream.v1(require_key="another"),
            csrfmiddlewaretoken=csrf(add.text),
        )
        response = http.post(url("conversations_provider_add") + "?preset=deepinfra", data=data)
        assert response.status_code == 200
        provider = Provider.objects.get(name="live")
        assert provider.api_key == KEY
        seen = [response.text]
        response = http.post(
            url("conversations_provider_test_connection", provider.pk),
            data={"csrfmiddlewaretoken": csrf(response.text)},
        )
        assert (
            "<code>upstream_auth</code>" in response.text
        )  # the upstream was asked with the key, and refused it
        seen.append(response.text)
        for path in (
            url("conversations_provider_changelist"),
            url("conversations_provider_change", provider.pk),
            url("conversations_provider_history", provider.pk),
            url("conversations_auditlog_changelist"),
        ):
            seen.append(http.get(path).text)
    assert all(KEY not in html for html in seen)
    daphne.log.flush()
    log = daphne.log_path.read_text(errors="replace")
    assert "POST /admin/conversations/provider/add/" in log and "test-connection" in log
    assert KEY not in log


def test_staff_create_a_user_with_a_budget_and_it_is_audited(admin_client, staff):
    response = admin_client.post(
        url("conversations_user_add"),
        {
            "username": "carol",
            "password1": "",
            "password2": "",
            "usable_password": "false",
            "monthly_budget": "3.00",
            "timezone": "Europe/Berlin",
            "_save": "Save",
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    carol = User.objects.get(username="carol")
    assert carol.monthly_budget == Decimal("3.00")
    entry = AuditLog.objects.get(object_type="user")
    assert entry.action == "created" and entry.fields == ["monthly_budget"] and entry.actor == staff


# --- key rotation (docs/key-rotation.md) --------------------------------------------------------------


def test_rotatekeys_refuses_when_a_stored_key_cannot_be_read_and_changes_nothing(db, settings):
    from cryptography.fernet import Fernet
    from django.core.management.base import CommandError

    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    settings.CHATWEB_ENCRYPTION_KEYS = [old]
    readable = Provider.objects.create(name="a", base_url="https://a.test/v1", api_key=KEY)
    lost = Provider.objects.create(name="b", base_url="https://b.test/v1", api_key=OTHER_KEY)
    before = {p.pk: stored_key(p) for p in (readable, lost)}
    settings.CHATWEB_ENCRYPTION_KEYS = [new]  # the old key dropped too early
    with pytest.raises(CommandError, match=r"provider\(s\) a, b: put the old key back") as caught:
        call_command("rotatekeys", stdout=io.StringIO())
    assert KEY not in str(caught.value) and OTHER_KEY not in str(caught.value)
    assert {p.pk: stored_key(p) for p in (readable, lost)} == before
    settings.CHATWEB_ENCRYPTION_KEYS = [new, old]
    out = io.StringIO()
    call_command("rotatekeys", stdout=out)
    assert "re-encrypted 2 provider key(s)" in out.getvalue()
    settings.CHATWEB_ENCRYPTION_KEYS = [new]
    assert Provider.objects.get(pk=readable.pk).api_key == KEY


def test_rotatekeys_can_forget_keys_nobody_can_read_and_audits_it(db, settings):
    from cryptography.fernet import Fernet

    settings.CHATWEB_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
    lost = Provider.objects.create(name="lost", base_url="https://l.test/v1", api_key=KEY)
    settings.CHATWEB_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]  # the old key is gone for good
    out = io.StringIO()
    call_command("rotatekeys", "--forget-unreadable", stdout=out)
    assert "cleared the unreadable key(s) of provider(s) lost: enter them again" in out.getvalue()
    assert Provider.objects.get(pk=lost.pk).api_key == "" and stored_key(lost) == ""
    entry = AuditLog.objects.get()
    assert (entry.object_repr, entry.fields, entry.source) == ("lost", ["api_key"], "rotatekeys")


# --- chatweb's admin: name, colours, team usage, budgets from the list, the default model ---------------------


def test_the_admin_wears_chatwebs_name_and_links_to_team_usage(admin_client):
    html = page(admin_client, url("index"))
    assert "chatweb administration" in html and "Django administration" not in html
    assert "<title>" in html and "chatweb admin" in html
    assert 'href="/usage/?user=all"' in html and "Team usage" in html
    assert "css/admin.css" in html and "https://" not in html.split("<body")[0]
    css = (Path(__file__).resolve().parent.parent / "static" / "css" / "admin.css").read_text()
    assert "--primary: #2457c5" in css and "url(" not in css


def test_budgets_are_editable_from_the_user_list_and_audited(admin_client, staff, alice, bob):
    changelist = url("conversations_user_changelist")
    html = page(admin_client, changelist)
    assert 'name="form-0-monthly_budget"' in html
    users = list(User.objects.all())
    form = {"form-TOTAL_FORMS": "0", "form-INITIAL_FORMS": "0", "_save": "Save"}
    ids = re.findall(r'name="form-(\d+)-id" value="(\d+)"', html)
    assert ids and len(ids) == len(users)
    form["form-TOTAL_FORMS"] = form["form-INITIAL_FORMS"] = str(len(ids))
    budgets = {alice.pk: "2.5000", bob.pk: ""}
    for index, pk in ids:
        user = User.objects.get(pk=int(pk))
        form[f"form-{index}-id"] = pk
        kept = "" if user.monthly_budget is None else str(user.monthly_budget)
        form[f"form-{index}-monthly_budget"] = budgets.get(user.pk, kept)
    response = admin_client.post(changelist, form)
    assert response.status_code == 302, response.content.decode()[:2000]
    alice.refresh_from_db()
    assert alice.monthly_budget == Decimal("2.5")
    entry = AuditLog.objects.get(object_type="user")
    assert entry.object_repr == "alice" and entry.fields == ["monthly_budget"] and entry.actor == staff


def test_one_model_at_most_is_the_default_for_new_chats(admin_client, staff):
    provider = Provider.objects.create(name="p", base_url="http://127.0.0.1:9/v1")
    first = Model.objects.create(provider=provider, upstream_id="a", is_default=True)
    second = Model.objects.create(provider=provider, upstream_id="b")
    form = page(admin_client, url("conversations_model_change", second.pk))
    assert 'name="is_default"' in form and 'name="display_name"' in form and 'name="description"' in form
    response = admin_client.post(
        url("conversations_model_change", second.pk),
        {"provider": provider.pk, "upstream_id": "b", "alias": "", "display_name": "Model B",
         "description": "The second one", "api": "chat", "image_tokens": "openai", "enabled": "on",
         "is_default": "on"},
    )
    assert response.status_code == 302, response.content.decode()[:3000]
    first.refresh_from_db()
    second.refresh_from_db()
    assert second.is_default and not first.is_default and second.display_name == "Model B"
    changed = {e.object_repr: e.fields for e in AuditLog.objects.filter(object_type="model")}
    assert "is_default" in changed["p/a"] and "is_default" in changed["p/b"]


# --- secret headers: credential headers are stored encrypted and written-only ---------------------------------

HEADER_SECRET = "azure-Hd82kSECRETheader7731"


def stored_secret_headers(provider: Provider) -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT secret_headers FROM conversations_provider WHERE id = %s", [provider.pk])
        return cursor.fetchone()[0]


def test_credential_headers_are_encrypted_never_shown_and_can_be_replaced_or_removed(admin_client):
    headers = {"X-Title": "chatweb", "api-key": HEADER_SECRET}
    provider = add_provider(admin_client, extra_headers=json.dumps(headers))
    assert provider.extra_headers == {"X-Title": "chatweb"}, "a visible header stays visible"
    assert provider.secret_header_values == {"api-key": HEADER_SECRET}
    assert HEADER_SECRET not in stored_secret_headers(provider) and stored_secret_headers(provider)
    target = upstream_target(provider)
    assert dict(target.headers) == {"X-Title": "chatweb", "api-key": HEADER_SECRET}
    assert HEADER_SECRET not in repr(target)
    change = page(admin_client, url("conversations_provider_change", provider.pk))
    assert HEADER_SECRET not in change and "set: api-key (values never shown)" in change
    entry = AuditLog.objects.filter(object_id=str(provider.pk)).latest("pk")
    assert "secret_headers" in entry.fields and HEADER_SECRET not in json.dumps(entry.fields)

    # Saving the form again as it is keeps the secret header; typing it again replaces it.
    admin_client.post(url("conversations_provider_change", provider.pk), provider_form(provider))
    assert Provider.objects.get(pk=provider.pk).secret_header_values == {"api-key": HEADER_SECRET}
    replaced = {"X-Title": "chatweb", "API-Key": "new-" + HEADER_SECRET}
    admin_client.post(url("conversations_provider_change", provider.pk),
                      provider_form(provider, extra_headers=json.dumps(replaced)))
    provider.refresh_from_db()
    assert provider.secret_header_values == {"API-Key": "new-" + HEADER_SECRET}
    admin_client.post(url("conversations_provider_change", provider.pk),
                      provider_form(provider, clear_secret_headers=["API-Key"]))
    provider.refresh_from_db()
    assert provider.secret_header_values == {} and stored_secret_headers(provider) == ""
    assert "none" in page(admin_client, url("conversations_provider_change", provider.pk))


def test_a_header_that_would_inject_a_line_is_refused_by_the_form(admin_client):
    data = provider_form(extra_headers=json.dumps({"X-Title": "a\r\nX-Injected: 1"}))
    response = admin_client.post(url("conversations_provider_add"), data)
    assert response.status_code == 200 and "invalid value in header" in response.content.decode()
    assert not Provider.objects.filter(name=data["name"]).exists()


def test_rotatekeys_re_encrypts_secret_headers(db, settings):
    from cryptography.fernet import Fernet

    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    settings.CHATWEB_ENCRYPTION_KEYS = [old]
    provider = Provider.objects.create(name="azure", base_url="https://a.test/v1")
    provider.secret_header_values = {"api-key": HEADER_SECRET}
    provider.save()
    before = stored_secret_headers(provider)
    settings.CHATWEB_ENCRYPTION_KEYS = [new, old]
    out = io.StringIO()
    call_command("rotatekeys", stdout=out)
    assert "re-encrypted 0 provider key(s) and 1 set(s) of secret headers" in out.getvalue()
    assert stored_secret_headers(provider) != before
    settings.CHATWEB_ENCRYPTION_KEYS = [new]
    assert Provider.objects.get(pk=provider.pk).secret_header_values == {"api-key": HEADER_SECRET}
