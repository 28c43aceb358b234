"""Server-side markdown (conversations/chat/rendering.py): what it keeps, what it never lets through, its cache."""

from __future__ import annotations

import json
from html.parser import HTMLParser

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from hypothesis import given, settings
from hypothesis import strategies as st

from conversations.chat import rendering
from conversations.chat.rendering import ALLOWED_ATTRIBUTES, ALLOWED_TAGS, messages_render, policy, render_markdown
from conversations.models import Conversation, Message
from tests.browser.pages import HOSTILE


class Tags(HTMLParser):
    """Every start tag with its attributes, and the text, of an HTML fragment."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def parse(html: str) -> Tags:
    parser = Tags()
    parser.feed(html)
    return parser


def assert_within_policy(html: str) -> None:
    for tag, attrs in parse(html).tags:
        assert tag in ALLOWED_TAGS, tag
        allowed = ALLOWED_ATTRIBUTES.get(tag, frozenset()) | ({"rel", "target"} if tag == "a" else frozenset())
        assert set(attrs) <= allowed, (tag, attrs)
        if "href" in attrs:
            assert attrs["href"].split(":", 1)[0].lower() in rendering.URL_SCHEMES, attrs["href"]
        if tag == "a":
            assert attrs["rel"] == "noopener noreferrer nofollow" and attrs["target"] == "_blank"
        if "class" in attrs:
            assert rendering._attribute_filter(tag, "class", attrs["class"]) == attrs["class"]


def test_markdown_is_rendered():
    html = render_markdown(
        '# Title\n\n- one\n- two\n\n1. first\n\n**bold** *em* ~~gone~~ `code` [link](https://example.com "t")\n\n'
        "> quoted\n\n---\n\n```python\nprint('hi')\n```\n\n| a | b | c |\n|:--|:-:|--:|\n| 1 | 2 | 3 |\n"
    )
    assert "<h1>Title</h1>" in html and "<li>two</li>" in html and "<ol>" in html
    assert "<strong>bold</strong>" in html and "<em>em</em>" in html and "<s>gone</s>" in html
    assert "<code>code</code>" in html and "<blockquote>" in html and "<hr>" in html
    assert '<pre><code class="language-python">print(&#39;hi&#39;)\n</code></pre>' in html or (
        "<pre><code class=\"language-python\">print('hi')\n</code></pre>" in html
    )
    assert '<a href="https://example.com" title="t" target="_blank" rel="noopener noreferrer nofollow">link</a>' in html
    # table alignment as classes: the CSP refuses style attributes
    assert '<th class="align-left">a</th>' in html and '<td class="align-center">2</td>' in html
    assert '<td class="align-right">3</td>' in html and "style" not in html
    assert_within_policy(html)


def test_raw_html_is_text():
    html = render_markdown("<b>bold?</b> <script>alert(1)</script>")
    assert "&lt;b&gt;bold?&lt;/b&gt;" in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<script" not in html and "<b>" not in html


@pytest.mark.parametrize(
    "source",
    [
        "[x](javascript:alert(1))",
        "[x](JaVaScRiPt:alert(1))",
        "[x](&#106;avascript:alert(1))",
        "[x](vbscript:msgbox(1))",
        "[x](data:text/html;base64,PHNjcmlwdD4=)",
        "[x](file:///etc/passwd)",
        "<javascript:alert(1)>",
        "[r]\n\n[r]: javascript:alert(1)",
        "![x](javascript:alert(1))",
        "[x](/settings/)",
        "[x](//evil.example/x)",
    ],
)
def test_dangerous_or_relative_links_are_never_links(source):
    html = render_markdown(source)
    assert "href" not in html, html


def test_images_become_links_and_are_never_loaded():
    html = render_markdown("![a *cat*](https://example.com/cat.png) ![pixel](data:image/png;base64,iVBORw0KGgo=)")
    assert "<img" not in html
    assert '<a href="https://example.com/cat.png" target="_blank" rel="noopener noreferrer nofollow">a cat</a>' in html
    assert ">pixel</a>" in html and "data:" not in html


def test_code_block_languages_are_kept_only_when_plain():
    assert 'class="language-c++"' in render_markdown("```c++\nint x;\n```")
    hostile = render_markdown('```python" onmouseover="alert(1)\nx\n```')
    assert "class=" not in hostile and "onmouseover=" not in hostile.replace("&quot;", "")


def test_the_hostile_corpus_stays_within_the_policy():
    html = render_markdown(HOSTILE)
    assert_within_policy(html)
    text = "".join(parse(html).text)
    assert "<script>window.__pwned = 1; alert('script')</script>" in text  # shown, as text
    assert "<img src=x onerror=" in text


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("<>[]()!:*`#|-=\"' \n/&;javascriptdonerrorimgsvgahref1")), max_size=200))
def test_any_text_stays_within_the_policy(text):
    assert_within_policy(render_markdown(text))


def test_policy_is_the_data_the_page_gets():
    data = json.loads(json.dumps(policy()))
    assert set(data["tags"]) == ALLOWED_TAGS
    assert data["attributes"] == {tag: sorted(names) for tag, names in ALLOWED_ATTRIBUTES.items()}
    assert data["urlSchemes"] == ["http", "https", "mailto"]


@pytest.mark.django_db
def test_renderings_are_cached_on_the_row_and_redone_when_the_text_changes(alice):
    conversation = Conversation.objects.create(owner=alice)
    question = Message.objects.create(conversation=conversation, role="user", content="**not markdown**")
    answer = Message.objects.create(conversation=conversation, role="assistant", parent=question, content="**yes**")
    live = Message.objects.create(
        conversation=conversation, role="assistant", parent=question, content="*so far*", status="streaming"
    )
    messages = list(Message.objects.order_by("pk"))
    with CaptureQueriesContext(connection) as first:
        messages_render(messages)
    assert len(first) == 1  # one bulk update for the finished reply
    assert messages[0].html is None and str(messages[1].html) == "<p><strong>yes</strong></p>\n"
    assert str(messages[2].html) == "<p><em>so far</em></p>\n"
    stored = Message.objects.get(pk=answer.pk)
    assert stored.content_html == "<p><strong>yes</strong></p>\n"
    assert stored.content_html_key == rendering.html_key("**yes**")
    assert Message.objects.get(pk=live.pk).content_html == ""  # a streaming reply is not cached

    messages = list(Message.objects.order_by("pk"))
    with CaptureQueriesContext(connection) as second:
        messages_render(messages)
    assert len(second) == 0

    Message.objects.filter(pk=answer.pk).update(content="_changed_")
    messages = list(Message.objects.order_by("pk"))
    messages_render(messages)
    assert str(messages[1].html) == "<p><em>changed</em></p>\n"
    assert Message.objects.get(pk=answer.pk).content_html == "<p><em>changed</em></p>\n"


def test_the_key_covers_the_policy_version(monkeypatch):
    before = rendering.html_key("same text")
    monkeypatch.setattr(rendering, "RENDER_VERSION", rendering.RENDER_VERSION + 1)
    assert rendering.html_key("same text") != before
