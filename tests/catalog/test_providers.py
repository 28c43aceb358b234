"""Providers as code: `providers apply` (idempotent, all or nothing, clear errors) and `providers export`."""

import io
from decimal import Decimal

import pytest
from django.core.management import CommandError, call_command

from conversations.models import Model, Provider

GOOD = """
[[provider]]
name = "deepinfra"
base_url = "https://api.deepinfra.com/v1/openai/"
api_key_env = "DEEPINFRA_TOKEN"
headers = { "X-Extra" = "1" }

[[provider.model]]
id = "01-ai/Yi-34B-Chat"
input_price = 0.60
output_price = 0.60
context_length = 4096

[[provider.model]]
id = "meta-llama/Meta-Llama-3.1-8B-Instruct"
alias = "llama-8b"

[[provider]]
name = "local"
base_url = "http://ollama:11434/v1"
send_stream_options = false

[[provider.model]]
id = "llama3.2:3b"
api = "completions"
"""


def apply(tmp_path, text: str) -> str:
    path = tmp_path / "providers.toml"
    path.write_text(text)
    out = io.StringIO()
    call_command("providers", "apply", str(path), stdout=out)
    return out.getvalue()


@pytest.fixture
def token(monkeypatch):
    monkeypatch.setenv("DEEPINFRA_TOKEN", "di-secret-token-9876")


def test_apply_creates_then_is_idempotent(db, tmp_path, token):
    assert "2 created" in apply(tmp_path, GOOD)
    assert "2 updated" in apply(tmp_path, GOOD)
    assert Provider.objects.count() == 2 and Model.objects.count() == 3
    deepinfra = Provider.objects.get(name="deepinfra")
    assert deepinfra.base_url == "https://api.deepinfra.com/v1/openai"
    assert deepinfra.api_key == "di-secret-token-9876"
    assert deepinfra.extra_headers == {"X-Extra": "1"}
    yi = Model.objects.get(public_name="deepinfra/01-ai/Yi-34B-Chat")
    assert yi.input_price == Decimal("0.6") and yi.context_length == 4096
    assert Model.objects.get(public_name="llama-8b").input_price is None
    assert Model.objects.get(public_name="local/llama3.2:3b").api == "completions"
    assert not Provider.objects.get(name="local").send_stream_options


def test_apply_updates_prices(db, tmp_path, token):
    apply(tmp_path, GOOD)
    apply(tmp_path, GOOD.replace("input_price = 0.60", "input_price = 0.75"))
    assert Model.objects.get(upstream_id="01-ai/Yi-34B-Chat").input_price == Decimal("0.75")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            ("input_price = 0.60", 'input_price = "cheap"'),
            "model '01-ai/Yi-34B-Chat': input_price must be a number",
        ),
        (("input_price = 0.60", "input_price = -1"), "input_price must be >= 0"),
        (('base_url = "http://ollama:11434/v1"', 'base_url = "ftp://x"'), "provider 'local': base_url"),
        (('api = "completions"', 'api = "embeddings"'), "model 'llama3.2:3b': api must be one of"),
        (("context_length = 4096", "context_length = 0"), "context_length must be a positive integer"),
        (('name = "local"', 'name = "not a slug"'), "name must be a slug"),
        (
            ("send_stream_options = false", "send_stream_options = 1"),
            "send_stream_options must be true or false",
        ),
        (("context_length = 4096", "colour = 4"), "unknown field(s): colour"),
        (('alias = "llama-8b"', 'alias = "deepinfra/01-ai/Yi-34B-Chat"'), "is used twice"),
        (('[[provider.model]]\nid = "llama3.2:3b"', '[[provider.model]]\nalias = "x"'), "id is required"),
        (
            ('headers = { "X-Extra" = "1" }', 'headers = { "X-Extra" = 1 }'),
            "headers must be a table of strings",
        ),
        (('name = "deepinfra"', 'name = "deepinfra" oops'), "not valid TOML"),
    ],
)
def test_a_bad_file_names_the_problem_and_changes_nothing(db, tmp_path, token, change, message):
    with pytest.raises(CommandError) as excinfo:
        apply(tmp_path, GOOD.replace(*change))
    assert message in str(excinfo.value)
    assert "nothing was changed" in str(excinfo.value)
    assert not Provider.objects.exists() and not Model.objects.exists()


def test_a_bad_second_provider_rolls_back_the_first(db, tmp_path, token):
    apply(tmp_path, GOOD)
    broken = GOOD.replace("input_price = 0.60", "input_price = 9").replace('api = "completions"', 'api = "x"')
    with pytest.raises(CommandError):
        apply(tmp_path, broken)
    assert Model.objects.get(upstream_id="01-ai/Yi-34B-Chat").input_price == Decimal("0.6")


def test_missing_api_key_env_is_an_error(db, tmp_path, monkeypatch):
    monkeypatch.delenv("DEEPINFRA_TOKEN", raising=False)
    with pytest.raises(CommandError, match="environment variable DEEPINFRA_TOKEN is not set"):
        apply(tmp_path, GOOD)
    assert not Provider.objects.exists()


def test_export_never_prints_keys_and_round_trips(db, tmp_path, token):
    apply(tmp_path, GOOD)
    out = io.StringIO()
    call_command("providers", "export", stdout=out)
    exported = out.getvalue()
    assert "di-secret-token-9876" not in exported
    assert 'id = "01-ai/Yi-34B-Chat"' in exported and "input_price = 0.6" in exported
    Provider.objects.all().delete()
    apply(tmp_path, exported)
    assert Model.objects.count() == 3
    assert Model.objects.get(public_name="llama-8b").provider.name == "deepinfra"


def test_missing_file(db):
    with pytest.raises(CommandError, match="cannot read"):
        call_command("providers", "apply", "/nonexistent/providers.toml")


def test_display_name_and_description_are_applied_and_exported(db, tmp_path, token):
    apply(tmp_path, """
[[provider]]
name = "local"
base_url = "http://127.0.0.1:9/v1"

[[provider.model]]
id = "m"
display_name = "My Model"
description = "Quick answers, \\"cheap\\""
""")
    model = Model.objects.get(public_name="local/m")
    assert model.display_name == "My Model" and model.description == 'Quick answers, "cheap"'
    out = io.StringIO()
    call_command("providers", "export", stdout=out)
    assert 'display_name = "My Model"' in out.getvalue()
    Provider.objects.all().delete()
    apply(tmp_path, out.getvalue())
    assert Model.objects.get(public_name="local/m").description == 'Quick answers, "cheap"'
    with pytest.raises(CommandError, match="display_name must be a string"):
        apply(tmp_path, '[[provider]]\nname = "x"\nbase_url = "http://127.0.0.1:9/v1"\n'
                        '[[provider.model]]\nid = "m"\ndisplay_name = 3\n')


def test_vision_and_the_image_token_rule_are_applied_and_exported(db, tmp_path):
    apply(tmp_path, '[[provider]]\nname = "local"\nbase_url = "http://127.0.0.1:9/v1"\n'
                    '[[provider.model]]\nid = "claude"\nvision = true\nimage_tokens = "anthropic"\n'
                    '[[provider.model]]\nid = "plain"\n')
    claude, plain = Model.objects.get(upstream_id="claude"), Model.objects.get(upstream_id="plain")
    assert (claude.vision, claude.image_tokens) == (True, "anthropic")
    assert (plain.vision, plain.image_tokens) == (False, "openai")
    out = io.StringIO()
    call_command("providers", "export", stdout=out)
    assert 'vision = true\nimage_tokens = "anthropic"' in out.getvalue()
    assert out.getvalue().count("image_tokens") == 1  # the default is not written out
    with pytest.raises(CommandError, match="image_tokens must be one of 'openai', 'anthropic'"):
        apply(tmp_path, '[[provider]]\nname = "x"\nbase_url = "http://127.0.0.1:9/v1"\n'
                        '[[provider.model]]\nid = "m"\nimage_tokens = "gemini"\n')


# --- secret headers --------------------------------------------------------------------------------------------

SECRET_HEADER_FILE = """
[[provider]]
name = "azure"
base_url = "https://acme.openai.azure.test/openai/v1"
headers = { "X-Team" = "research", "api-key" = "azure-in-file-5521" }
"""


def test_credential_headers_of_a_file_are_stored_encrypted_and_never_exported(db, tmp_path, monkeypatch):
    apply(tmp_path, SECRET_HEADER_FILE)
    azure = Provider.objects.get(name="azure")
    assert azure.extra_headers == {"X-Team": "research"}
    assert azure.secret_header_values == {"api-key": "azure-in-file-5521"}
    out = io.StringIO()
    call_command("providers", "export", stdout=out)
    exported = out.getvalue()
    assert "azure-in-file-5521" not in exported and "secret headers are set (not exported): api-key" in exported
    assert 'headers = { "X-Team" = "research" }' in exported

    # The exported file applied again keeps the stored secret header, as it keeps a key.
    apply(tmp_path, exported)
    assert Provider.objects.get(name="azure").secret_header_values == {"api-key": "azure-in-file-5521"}

    monkeypatch.setenv("AZURE_KEY", "azure-from-env-7788")
    apply(tmp_path, exported.replace('headers = {', 'headers_env = { "api-key" = "AZURE_KEY" }\nheaders = {'))
    assert Provider.objects.get(name="azure").secret_header_values == {"api-key": "azure-from-env-7788"}


def test_a_header_that_would_inject_a_line_is_refused_by_apply(db, tmp_path):
    bad = SECRET_HEADER_FILE.replace('"research"', '"research\\r\\nX-Injected: 1"')
    with pytest.raises(CommandError, match="invalid value in header 'X-Team'"):
        apply(tmp_path, bad)
    assert not Provider.objects.filter(name="azure").exists()
