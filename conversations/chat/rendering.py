"""Markdown of model output, made safe: the one policy for the stored page and (mirrored by static/js/render.js,
which reads `policy()` from the page) the live view while a reply streams.

Model output is untrusted. markdown-it's "js-default" preset never passes raw HTML through (it is shown as text);
nh3 then keeps only the tags and attributes below, links only to http(s) and mailto, and adds rel/target.
Images are not loaded (a remote image is a tracking or exfiltration channel): they become links.

Math (`$...$`, `\\(...\\)` inline; `$$...$$`, `\\[...\\]` displayed) is kept out of markdown's hands and marked,
its TeX as text: `<span class="math-inline">`, `<span class="math-display">` inside a line, `<div class="math-display">`
as a block. The page typesets those elements with KaTeX (static/js/render.js); nothing here produces TeX's HTML.
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
        "div",
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
        "span",
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
    "span": frozenset({"class"}),
    "div": frozenset({"class"}),
}
# `class` is kept only when it matches (per tag): a code block's language, a table column's alignment.
CLASS_PATTERNS: dict[str, str] = {
    "code": r"^language-[A-Za-z0-9_+#.-]{1,40}$",
    "th": r"^align-(?:left|center|right)$",
    "td": r"^align-(?:left|center|right)$",
    "span": r"^math-(?:inline|display)$",
    "div": r"^math-display$",
}
URL_SCHEMES: frozenset[str] = frozenset({"http", "https", "mailto"})  # relative URLs are refused too
LINK_REL = "noopener noreferrer nofollow"
# Bump when anything above or in _markdown() changes: every cached rendering (Message.content_html) is redone.
RENDER_VERSION = 2
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


# --- math: the same rules as mathInline/mathBlock in static/js/render.js (the live view must split text alike) ---
_INLINE_CLOSERS = {"\\(": "\\)", "\\[": "\\]", "$$": "$$"}


def _math_inline(state: Any, silent: bool) -> bool:
    """`$tex$` (no space inside either dollar, no digit after the closing one: "$5 and $6" stays text),
    `$$tex$$`, `\\(tex\\)`, `\\[tex\\]` within a line of text."""
    src, start = state.src, state.pos
    opener = src[start:start + 2]
    if opener in _INLINE_CLOSERS:
        closer = _INLINE_CLOSERS[opener]
        end = src.find(closer, start + 2)
        if end < 0 or end == start + 2:
            return False
        tex, after = src[start + 2:end], end + 2
        display = opener != "\\("
    elif src[start] == "$":
        end = start + 1
        while True:
            end = src.find("$", end)
            if end < 0:
                return False
            if src[end - 1] != "\\":
                break
            end += 1
        tex, after = src[start + 1:end], end + 1
        if (not tex or tex[0].isspace() or tex[-1].isspace()
                or (after < len(src) and src[after] in "0123456789")):
            return False
        display = False
    else:
        return False
    if not silent:
        token = state.push("math_inline", "span", 0)
        token.content = tex
        token.markup = opener
        token.meta = {"display": display}
    state.pos = after
    return True


def _math_block(state: Any, start_line: int, end_line: int, silent: bool) -> bool:
    """A block opened by `$$` or `\\[` at the start of a line and closed by `$$` / `\\]` at the end of a line."""
    if state.sCount[start_line] - state.blkIndent >= 4:
        return False
    begin = state.bMarks[start_line] + state.tShift[start_line]
    first = state.src[begin:state.eMarks[start_line]]
    opener = first[:2]
    if opener not in ("$$", "\\["):
        return False
    closer = "$$" if opener == "$$" else "\\]"
    rest = first[2:].rstrip()
    line, lines = start_line, []
    if len(rest) >= 2 and rest.endswith(closer):
        lines.append(rest[: -2])
    else:
        lines.append(rest)
        while True:
            line += 1
            if line >= end_line:
                return False
            text = state.src[state.bMarks[line] + state.tShift[line]:state.eMarks[line]].rstrip()
            if text.endswith(closer):
                lines.append(text[:-2])
                break
            lines.append(text)
    if silent:
        return True
    state.line = line + 1
    token = state.push("math_block", "div", 0)
    token.block = True
    token.content = "\n".join(lines).strip()
    token.markup = opener
    token.map = [start_line, state.line]
    return True


def _render_math_inline(self: Any, tokens: list[Token], idx: int, options: Any, env: Any) -> str:
    token = tokens[idx]
    kind = "math-display" if token.meta.get("display") else "math-inline"
    return f'<span class="{kind}">{html.escape(token.content, quote=False)}</span>'


def _render_math_block(self: Any, tokens: list[Token], idx: int, options: Any, env: Any) -> str:
    return f'<div class="math-display">{html.escape(tokens[idx].content, quote=False)}</div>\n'


def _markdown() -> MarkdownIt:
    md = MarkdownIt("js-default")  # CommonMark + tables + strikethrough, raw HTML off
    md.core.ruler.push("chatweb_alignment", _alignment_as_class)
    md.add_render_rule("image", _image_as_link)
    # before `escape`, which would take the backslash of \( and \[
    md.inline.ruler.before("escape", "math_inline", _math_inline)
    md.block.ruler.before("fence", "math_block", _math_block, {"alt": ["paragraph", "reference", "blockquote", "list"]})
    md.add_render_rule("math_inline", _render_math_inline)
    md.add_render_rule("math_block", _render_math_block)
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
