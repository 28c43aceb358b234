"""Markdown of model output, made safe: the one policy for the stored page and (mirrored by static/js/render.js,
which reads `policy()` from the page) the live view while a reply streams.

Model output is untrusted. markdown-it's "js-default" preset never passes raw HTML through (it is shown as text);
nh3 then keeps only the tags and attributes below, links only to http(s) and mailto, and adds rel/target.
Images are not loaded (a remote image is a tracking or exfiltration channel): they become links.
"""

from __future__ import annotations

import hashlib
import html
import logging
import re
from collections.abc import Iterable
from typing import Any

import nh3
from django.db import DatabaseError
from django.utils.safestring import SafeString, mark_safe
from markdown_it import MarkdownIt
from markdown_it.token import Token

ALLOWED_TAGS: frozenset[str] = frozenset(
    {
        "a",
        "blockquote",
        "br",
        "code",
        "del",
        "em",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "hr",
        "li",
        "ol",
        "p",
        "pre",
        "s",
        "strong",
        "table",
        "tbody",
        "td",
        "th",
        "thead",
        "tr",
        "ul",
    }
)
ALLOWED_ATTRIBUTES: dict[str, frozenset[str]] = {
    "a": frozenset({"href", "title"}),
    "ol": frozenset({"start"}),
    "code": frozenset({"class"}),
    "th": frozenset({"class"}),
    "td": frozenset({"class"}),
}
# `class` is kept only when it matches (per tag): a code block's language, a table column's alignment.
CLASS_PATTERNS: dict[str, str] = {
    "code": r"^language-[A-Za-z0-9_+#.-]{1,40}$",
    "th": r"^align-(?:left|center|right)$",
    "td": r"^align-(?:left|center|right)$",
}
URL_SCHEMES: frozenset[str] = frozenset({"http", "https", "mailto"})  # relative URLs are refused too
LINK_REL = "noopener noreferrer nofollow"
# Bump when anything above or in _markdown() changes: every cached rendering (Message.content_html) is redone.
RENDER_VERSION = 1
LINK_TARGET = "_blank"

log = logging.getLogger(__name__)

_CLASS_RES = {tag: re.compile(pattern) for tag, pattern in CLASS_PATTERNS.items()}
_ALIGN = re.compile(r"^text-align:(left|center|right)$")


def policy() -> dict[str, Any]:
    """The allowlist as data, for the page (json_script) so the client sanitiser applies exactly the same one."""
    return {
        "tags": sorted(ALLOWED_TAGS),
        "attributes": {tag: sorted(names) for tag, names in ALLOWED_ATTRIBUTES.items()},
        "classPatterns": CLASS_PATTERNS,
        "urlSchemes": sorted(URL_SCHEMES),
        "linkRel": LINK_REL,
        "linkTarget": LINK_TARGET,
    }


def _attribute_filter(tag: str, name: str, value: str) -> str | None:
    if name == "class":
        pattern = _CLASS_RES.get(tag)
        return value if pattern is not None and pattern.match(value) else None
    return value


def _alignment_as_class(state: Any) -> None:
    """markdown-it aligns table cells with style="text-align:..."; the CSP refuses inline style: use a class."""
    for token in state.tokens:
        if token.type in ("th_open", "td_open"):
            style = token.attrs.pop("style", None)
            found = _ALIGN.match(str(style or ""))
            if found:
                token.attrSet("class", f"align-{found.group(1)}")


def _image_as_link(self: Any, tokens: list[Token], idx: int, options: Any, env: Any) -> str:
    token = tokens[idx]
    src = str(token.attrGet("src") or "")
    alt = self.renderInlineAsText(token.children or [], options, env)
    return f'<a href="{html.escape(src)}">{html.escape(alt or src, quote=False)}</a>'


def _markdown() -> MarkdownIt:
    md = MarkdownIt("js-default")  # CommonMark + tables + strikethrough, raw HTML off
    md.core.ruler.push("chatweb_alignment", _alignment_as_class)
    md.add_render_rule("image", _image_as_link)
    return md


_MD = _markdown()
_CLEANER = nh3.Cleaner(
    tags=set(ALLOWED_TAGS),
    clean_content_tags={"script", "style"},
    attributes={tag: set(names) for tag, names in ALLOWED_ATTRIBUTES.items()},
    attribute_filter=_attribute_filter,
    url_schemes=set(URL_SCHEMES),
    url_relative="deny",
    link_rel=LINK_REL,
    set_tag_attribute_values={"a": {"target": LINK_TARGET}},
    strip_comments=True,
)


def sanitize(fragment: str) -> str:
    """Keep only the allowlist (tags, attributes, classes, URL schemes) of an HTML fragment."""
    return _CLEANER.clean(fragment)


def render_markdown(text: str) -> SafeString:
    """Model output (markdown) as safe HTML for the page. Pure: the same text always gives the same HTML."""
    if not text:
        return mark_safe("")
    return mark_safe(sanitize(_MD.render(text)))  # noqa: S308 - sanitised by nh3 above


def html_key(text: str) -> str:
    """What a cached rendering of `text` is valid for: the text and the policy's version."""
    return hashlib.blake2b(f"{RENDER_VERSION}\0{text}".encode(), digest_size=16).hexdigest()


def messages_render(messages: Iterable[Any]) -> None:
    """Set `html` on each assistant message (markdown rendered; other roles are shown as plain text). Renderings
    are cached on the row (Message.content_html): stale ones of finished replies are redone and stored in one
    query; a reply still streaming is rendered each time (its text changes)."""
    from conversations.models import Message

    stale = []
    for message in messages:
        if message.role != Message.Role.ASSISTANT:
            message.html = None
            continue
        key = html_key(message.content)
        if message.content_html_key == key:
            message.html = mark_safe(message.content_html)  # noqa: S308 - stored by this function, sanitised
            continue
        message.html = render_markdown(message.content)
        if message.status not in (Message.Status.STREAMING, Message.Status.PENDING):
            message.content_html, message.content_html_key = str(message.html), key
            stale.append(message)
    if stale:
        try:
            Message.objects.bulk_update(stale, ["content_html", "content_html_key"], batch_size=200)
        except DatabaseError:  # a cache: the page is right without it (e.g. the database is busy)
            log.warning("could not store %d renderings", len(stale), exc_info=True)
