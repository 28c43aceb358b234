"""Importing ChatGPT's conversations.json and chatweb's own export: branches kept with the current node's branch
shown, timestamps kept, odd content types readable, a malformed file refused whole with its first bad entry named,
idempotence (a second import skips), nothing in the ledger, the settings page's upload, and isolation."""

from __future__ import annotations

import copy
import datetime as dt
import json
from io import StringIO
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import CommandError, call_command

from conversations.chat.selectors import conversation_branch
from conversations.models import Conversation, Message, UsageRecord
from tests.chat.test_pages import chain, client_for

pytestmark = pytest.mark.django_db

T0 = 1_700_000_000.0  # 2023-11-14 22:13:20 UTC


def node(node_id, parent, children, role=None, content=None, t=None, **message_extra):
    message = None
    if role is not None:
        message = {
            "id": node_id,
            "author": {"role": role, "name": message_extra.pop("name", None), "metadata": {}},
            "create_time": t,
            "content": content,
            "status": "finished_successfully",
            "metadata": message_extra.pop("metadata", {}),
            **message_extra,
        }
    return {"id": node_id, "message": message, "parent": parent, "children": children}


def text(*parts):
    return {"content_type": "text", "parts": list(parts)}


def chatgpt_export() -> list[dict]:
    """Two conversations as ChatGPT writes them: a hidden root and system message, an edited question (two
    branches, the first one current), code-interpreter steps, a browsing quote, an image, an unknown kind."""
    branched = {
        "title": "Tides and moons",
        "create_time": T0,
        "update_time": T0 + 500,
        "conversation_id": "conv-tides",
        "id": "conv-tides",
        "current_node": "a1",
        "mapping": {
            "root": node("root", None, ["sys"]),
            "sys": node("sys", "root", ["q1", "q1b"], "system", text(""), None,
                        metadata={"is_visually_hidden_from_conversation": True}),
            "q1": node("q1", "sys", ["a1"], "user", text("Why does the sea rise?"), T0 + 10),
            "a1": node("a1", "q1", [], "assistant", text("Because of the **moon**."), T0 + 20,
                       metadata={"model_slug": "gpt-4o"}),
            "q1b": node("q1b", "sys", ["a1b"], "user", text("Why does the sea rise, really?"), T0 + 100),
            "a1b": node("a1b", "q1b", [], "assistant", text("Gravity of moon and sun."), T0 + 110),
        },
    }
    tools = {
        "title": "Plot it",
        "create_time": T0 + 1000,
        "update_time": T0 + 2000,
        "conversation_id": "conv-tools",
        "current_node": "a3",
        "mapping": {
            "root": node("root", None, ["q"]),
            "q": node("q", "root", ["code"], "user",
                      {"content_type": "multimodal_text",
                       "parts": [{"content_type": "image_asset_pointer", "asset_pointer": "file-service://x"},
                                 "Plot this please"]}, T0 + 1010),
            "code": node("code", "q", ["out"], "assistant",
                         {"content_type": "code", "language": "python", "text": "print(6 * 7)"}, T0 + 1020),
            "out": node("out", "code", ["quote"], "tool",
                        {"content_type": "execution_output", "text": "42"}, T0 + 1030, name="python"),
            "quote": node("quote", "out", ["odd"], "tool",
                          {"content_type": "tether_quote", "url": "https://example.org/tides", "title": "Tides",
                           "text": "The tide is the rise and fall of the sea."}, T0 + 1040, name="browser"),
            "odd": node("odd", "quote", ["a3"], "assistant",
                        {"content_type": "brand_new_kind", "payload": {"answer": 42}}, T0 + 1050),
            "a3": node("a3", "odd", [], "assistant", text("Here is your plot."), T0 + 1060),
        },
    }
    return [branched, tools]


def write(tmp_path: Path, data, name: str = "conversations.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def run(*args) -> list[str]:
    out = StringIO()
    call_command("importchats", *args, stdout=out)
    return out.getvalue().strip().splitlines()


def test_a_chatgpt_export_comes_in_whole(alice, tmp_path):
    lines = run("alice", str(write(tmp_path, chatgpt_export())))
    assert lines[-1] == "imported 2 conversations, 10 messages"
    tides = Conversation.objects.get(owner=alice, title="Tides and moons")
    # both branches are kept; current_node's branch is the one shown
    assert tides.messages.count() == 4
    branch = conversation_branch(tides)
    assert [(m.role, m.content) for m in branch] == [
        ("user", "Why does the sea rise?"), ("assistant", "Because of the **moon**."),
    ]
    assert branch[1].model_name == "gpt-4o"
    other = tides.messages.get(content="Why does the sea rise, really?")
    assert other.parent_id is None and other.children.get().content == "Gravity of moon and sun."
    # timestamps as they were
    assert branch[0].created_at == dt.datetime.fromtimestamp(T0 + 10, tz=dt.UTC)
    assert tides.created_at == dt.datetime.fromtimestamp(T0, tz=dt.UTC)
    assert tides.updated_at == dt.datetime.fromtimestamp(T0 + 500, tz=dt.UTC)


def test_odd_content_types_become_readable_text(alice, tmp_path):
    run("alice", str(write(tmp_path, chatgpt_export())))
    tools = Conversation.objects.get(owner=alice, title="Plot it")
    contents = [m.content for m in conversation_branch(tools)]
    assert len(contents) == 6
    assert contents[0] == "[image]\n\nPlot this please"
    assert contents[1] == "```python\nprint(6 * 7)\n```"
    assert "Output:" in contents[2] and "42" in contents[2] and "python" in contents[2]
    assert "The tide is the rise and fall of the sea." in contents[3] and "https://example.org/tides" in contents[3]
    assert "brand_new_kind" in contents[4] and '"answer": 42' in contents[4]
    assert contents[5] == "Here is your plot."


def test_imported_replies_are_not_in_the_ledger(alice, tmp_path):
    run("alice", str(write(tmp_path, chatgpt_export())))
    assert UsageRecord.objects.count() == 0


def test_importing_again_skips_what_came_in_before(alice, bob, tmp_path):
    path = str(write(tmp_path, chatgpt_export()))
    run("alice", path)
    lines = run("alice", path)
    assert lines == ["skipped 2 conversations imported before", "imported 0 conversations, 0 messages"]
    assert Conversation.objects.filter(owner=alice).count() == 2
    # a file with one new conversation beside the old ones imports just that one
    data = chatgpt_export()
    extra = copy.deepcopy(data[0])
    extra.update(conversation_id="conv-new", id="conv-new", title="New one")
    assert run("alice", str(write(tmp_path, [*data, extra], "more.json")))[-1] == (
        "imported 1 conversations, 4 messages"
    )
    # the policy is per user: bob imports the same file as his own
    assert run("bob", path)[-1] == "imported 2 conversations, 10 messages"
    assert Conversation.objects.filter(owner=bob).count() == 2


@pytest.mark.parametrize(
    ("breakage", "named"),
    [
        (lambda d: d[1]["mapping"]["odd"]["message"].pop("author"), "conversation 2 ('Plot it'), node 'odd'"),
        (lambda d: d[1]["mapping"]["out"].update(parent="nowhere"), "conversation 2 ('Plot it'), node 'out'"),
        (lambda d: d[1].update(current_node="gone"), "conversation 2 ('Plot it'): current_node 'gone'"),
        (lambda d: d[1]["mapping"]["q"]["message"].update(content="just a string"), "node 'q'"),
        (lambda d: d[1].update(mapping=[]), "conversation 2 ('Plot it'): 'mapping'"),
        (lambda d: d.append("not a conversation"), "conversation 3: not an object"),
        (lambda d: d[1]["mapping"]["q"]["message"].update(create_time="yesterday"), "node 'q'"),
    ],
)
def test_a_malformed_file_is_refused_whole_naming_the_first_bad_entry(alice, tmp_path, breakage, named):
    data = chatgpt_export()
    breakage(data)
    with pytest.raises(CommandError) as refused:
        run("alice", str(write(tmp_path, data)))
    assert "Nothing imported" in str(refused.value) and named in str(refused.value)
    assert Conversation.objects.count() == 0 and Message.objects.count() == 0  # not even the good first one


def test_files_that_are_not_exports_are_refused(alice, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json", encoding="utf-8")
    with pytest.raises(CommandError, match="not JSON"):
        run("alice", str(bad))
    with pytest.raises(CommandError, match="neither"):
        run("alice", str(write(tmp_path, {"hello": 1})))
    with pytest.raises(CommandError, match="No user named"):
        run("nobody", str(write(tmp_path, [])))
    with pytest.raises(CommandError, match="Cannot read"):
        run("alice", str(tmp_path / "missing.json"))


def test_a_loop_of_parents_is_refused(alice, tmp_path):
    data = chatgpt_export()
    data[0]["mapping"]["q1"]["parent"] = "a1"
    with pytest.raises(CommandError, match="loop"):
        run("alice", str(write(tmp_path, data)))
    assert Conversation.objects.count() == 0


def test_chatwebs_own_export_comes_back_with_its_branches(alice, bob, tmp_path):
    source = Conversation.objects.create(owner=alice, title="Round trip", system_prompt="Be brief.",
                                         params={"temperature": 0.5})
    q1, _a1, q2, a2 = chain(source, "One?", "**Two**.", "Three?", "Four.")
    alt = Message.objects.create(conversation=source, parent=q2, role="assistant", content="Another four.")
    Message.objects.filter(pk=a2.pk).update(reasoning="thinking")
    source.active_leaf = a2
    source.save()
    export = client_for(alice).get(f"/c/{source.pk}/export.json").content
    path = tmp_path / "export.json"
    path.write_bytes(export)
    assert run("bob", str(path))[-1] == "imported 1 conversations, 5 messages"
    copy_ = Conversation.objects.get(owner=bob)
    assert (copy_.title, copy_.system_prompt, copy_.params) == ("Round trip", "Be brief.", {"temperature": 0.5})
    branch = conversation_branch(copy_)
    assert [m.content for m in branch] == ["One?", "**Two**.", "Three?", "Four."]
    assert branch[-1].reasoning == "thinking"
    assert copy_.messages.get(content="Another four.").parent_id == branch[2].pk
    assert branch[0].created_at == q1.created_at  # timestamps kept
    assert run("bob", str(path))[-1] == "imported 0 conversations, 0 messages"
    # a list of exports works too
    both = tmp_path / "both.json"
    both.write_text(json.dumps([json.loads(export), {**json.loads(export), "title": "Round trip 2"}]))
    assert run("alice", str(both))[-1] == "imported 2 conversations, 10 messages"
    assert alt.pk not in [m.pk for m in Message.objects.filter(conversation__owner=bob)]


def test_a_chatweb_export_with_a_bad_message_is_refused(alice, tmp_path):
    data = {"title": "x", "messages": [{"id": 1, "parent_id": None, "role": "wizard", "content": "hi"}]}
    with pytest.raises(CommandError, match="conversation 1, message 1: unknown role 'wizard'"):
        run("alice", str(write(tmp_path, data)))


def test_the_settings_page_imports_an_upload(alice, bob):
    client = client_for(alice)
    upload = SimpleUploadedFile("conversations.json", json.dumps(chatgpt_export()).encode(), "application/json")
    response = client.post("/settings/import/", {"file": upload}, follow=True)
    assert response.status_code == 200
    assert "Imported 2 conversations, 10 messages" in response.content.decode()
    assert Conversation.objects.filter(owner=alice).count() == 2
    assert Conversation.objects.filter(owner=bob).count() == 0
    assert client_for(bob).post("/settings/import/", {}, follow=True).content.decode().count("Choose an export")
    html = client.get("/settings/").content.decode()
    assert 'id="import-form"' in html and 'enctype="multipart/form-data"' in html and "import-progress" in html


def test_the_settings_page_refuses_a_malformed_upload_and_keeps_nothing(alice):
    data = chatgpt_export()
    data[1]["mapping"]["odd"]["message"].pop("author")
    upload = SimpleUploadedFile("conversations.json", json.dumps(data).encode(), "application/json")
    response = client_for(alice).post("/settings/import/", {"file": upload}, follow=True)
    assert response.status_code == 200
    assert "Nothing imported" in response.content.decode() and "node &#x27;odd&#x27;" in response.content.decode()
    assert Conversation.objects.count() == 0
