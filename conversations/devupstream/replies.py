"""The dev upstream's fake model: deterministic markdown-ish replies seeded by the prompt, cut into pieces."""

from __future__ import annotations

import hashlib
import json
import random
import re
from dataclasses import dataclass
from functools import lru_cache
from json.encoder import encode_basestring_ascii  # json.dumps of one string, without its overhead

from conversations.upstream.tokens import count_tokens

# A "piece" is what one SSE chunk carries: roughly one tokenizer token (a word with its leading space,
# a run of digits, a run of punctuation, or whitespace). The catch-all `.` keeps "".join(pieces) == text.
_PIECE_RE = re.compile(r" ?[^\W\d_]+| ?\d{1,3}| ?[^\s\w]+|\n+| +(?=\S)|\s+|.", re.DOTALL)


def split_pieces(text: str) -> list[str]:
    """Cut text into word pieces; joining them gives the text back exactly."""
    return _PIECE_RE.findall(text)


@dataclass(frozen=True, slots=True)
class Reply:
    """A planned reply: its pieces, each piece JSON-encoded once (for cheap chunk building)."""

    pieces: tuple[str, ...]
    encoded: tuple[str, ...]

    @property
    def text(self) -> str:
        return "".join(self.pieces)


def make_reply(pieces: list[str] | tuple[str, ...]) -> Reply:
    return Reply(tuple(pieces), tuple(map(encode_basestring_ascii, pieces)))


def seed_of(*parts: object) -> int:
    """A stable 64-bit seed from whatever identifies the prompt."""
    digest = hashlib.blake2b(json.dumps(parts, sort_keys=True, default=str).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


@lru_cache(maxsize=4096)
def piece_token_counts(reply: Reply) -> tuple[int, ...]:
    """Tokens per piece (cached with the reply: counting is the only costly step)."""
    return tuple(count_tokens(p) for p in reply.pieces)


# --- vocabulary ---------------------------------------------------------------------------------

_STOPWORD_TEXT = """about above after again against also because been before being below between both could
    does doing down during each from further have having here into itself just more most much
    once only other over same should some such than that their theirs them then there these
    they this those through under until very want what when where which while whom with would
    your yours please tell explain show give make help know like need using write"""
_STOPWORDS = frozenset(_STOPWORD_TEXT.split())
_FALLBACK_TOPICS = (
    "the request",
    "this approach",
    "the design",
    "the data",
    "the workflow",
    "the idea",
    "the setup",
)
_NOUNS = (
    "cache",
    "queue",
    "schema",
    "budget",
    "timeline",
    "draft",
    "pipeline",
    "interface",
    "record",
    "trade-off",
    "baseline",
    "constraint",
    "checklist",
    "summary",
    "example",
    "boundary",
    "default",
    "measurement",
    "estimate",
    "outline",
    "deadline",
    "detail",
    "edge case",
    "assumption",
)
_ADJECTIVES = (
    "simple",
    "careful",
    "robust",
    "small",
    "explicit",
    "predictable",
    "readable",
    "practical",
    "steady",
    "clear",
    "modest",
    "reliable",
    "consistent",
    "useful",
    "honest",
    "quick",
)
_VERBS = (
    "check",
    "measure",
    "write down",
    "compare",
    "simplify",
    "review",
    "test",
    "sketch",
    "name",
    "separate",
    "document",
    "limit",
    "group",
    "revisit",
    "trim",
    "validate",
)
_GERUNDS = (
    "optimising",
    "scaling",
    "refactoring",
    "automating",
    "shipping",
    "adding features",
    "tuning",
    "rewriting",
    "migrating",
    "splitting it up",
)
_ADVERBS = ("usually", "often", "almost always", "in practice", "most of the time", "typically")
_OPENERS = (
    "Good question.",
    "Sure — here is a short overview of {topic}.",
    "Let's look at {topic} step by step.",
    "Here is how I would think about {topic}.",
    "Happy to help with {topic}.",
    "There are a few things worth knowing about {topic}.",
    "In short: start small with {topic}.",
)
_SENTENCES = (
    "{Topic} {adverb} works best when you {verb} the {noun} before {gerund}.",
    "A {adj} {noun} makes {topic} much easier to reason about.",
    "The main trade-off is between a {adj} {noun} and a {adj2} {noun2}.",
    "If the {noun} changes often, {verb} it first and keep the {noun2} {adj}.",
    "Most problems with {topic} come from an unclear {noun}.",
    "It helps to {verb} one {noun} at a time rather than everything at once.",
    "You can {verb} the {noun} later; a {adj} version is enough to start.",
    "People {adverb} underestimate how much a {adj} {noun} saves them.",
    "Think of the {noun} as the contract and the {noun2} as the detail.",
    "When in doubt, {verb} the {noun} and look at the numbers.",
    "A common mistake is {gerund} before the {noun} is {adj}.",
    "Keep the {noun} {adj}: it is the part everyone else depends on.",
    "The {noun} matters more than the {noun2} here.",
    "For {topic}, a {adj} {noun} beats a clever one.",
    "Write the {noun} so that a newcomer can {verb} it in five minutes.",
    "Around {number}% of the effort {adverb} goes into the {noun}.",
)
_CLOSERS = (
    "Let me know if you want me to go deeper into any of these.",
    "I hope this helps — happy to expand on any part.",
    "If you share more about your {noun}, I can be more specific.",
    "That should be enough to get started.",
    "Want an example tailored to your {noun}?",
)
_HEADINGS = ("Overview", "Key points", "In practice", "What to watch for", "A quick example", "Next steps")
_LIST_ITEMS = (
    "**{Noun}**: {verb} it early and keep it {adj}.",
    "{Verb} the {noun} before {gerund}.",
    "Prefer a {adj} {noun} over a {adj2} one.",
    "Measure the {noun} — do not guess.",
    "Keep a {adj} record of every {noun}.",
    "**{Adj} defaults**: they save a {noun} later.",
    "Review the {noun} with someone else.",
)
_CODE = {
    "python": (
        'def {ident}({arg}):\n    """{Verb} the {noun}."""\n    result = []\n'
        "    for item in {arg}:\n        if item:\n            result.append(item)\n    return result\n",
        "from dataclasses import dataclass\n\n\n@dataclass\nclass {Ident}:\n    name: str\n"
        "    {arg}: int = {number}\n\n    def is_{adj_ident}(self) -> bool:\n        return self.{arg} > 0\n",
    ),
    "javascript": (
        "function {ident}({arg}) {{\n  return {arg}.filter(Boolean).map((x) => x * {number});\n}}\n",
        "const {ident} = async ({arg}) => {{\n  const res = await fetch(`/api/${{{arg}}}`);\n"
        "  return res.json();\n}};\n",
    ),
    "bash": ('#!/usr/bin/env bash\nset -euo pipefail\nfor f in *.{arg}; do\n  echo "$f"\ndone\n',),
    "sql": ("SELECT {arg}, count(*) AS n\nFROM {ident}\nGROUP BY {arg}\nORDER BY n DESC\nLIMIT {number};\n",),
}


_WORDS = {"verb": _VERBS, "gerund": _GERUNDS, "adverb": _ADVERBS}


class _Slots(dict):
    """Template values drawn on first use, so a template pays only for the slots it names."""

    def __init__(self, writer: _Writer) -> None:
        super().__init__()
        self.writer = writer

    def _other(self, words: tuple[str, ...], first: str) -> str:
        choice = self.writer.rng.choice
        word = choice(words)
        while word == first:
            word = choice(words)
        return word

    def __missing__(self, key: str) -> str:
        w, r = self.writer, self.writer.rng
        if key == "Ident":
            value = "".join(part.capitalize() for part in self["ident"].split("_"))
        elif key[:1].isupper():
            base = self[key[0].lower() + key[1:]]
            value = base[:1].upper() + base[1:]
        elif key == "topic":
            value = w.topic if r.random() < 0.7 else r.choice(w.topics)
        elif key in ("adj", "noun"):
            value = r.choice(_ADJECTIVES if key == "adj" else _NOUNS)
        elif key in ("adj2", "noun2"):
            value = self._other(_ADJECTIVES if key == "adj2" else _NOUNS, self[key[:-1]])
        elif key == "number":
            value = str(r.randint(2, 90))
        elif key == "ident":
            word = re.sub(r"\W", "_", self["topic"].removeprefix("the ")).strip("_") or "item"
            value = f"{r.choice(_VERBS).split()[0]}_{word}"
        elif key == "arg":
            value = self["noun"].split()[0].replace("-", "_")
        elif key == "adj_ident":
            value = self["adj"]
        else:
            value = r.choice(_WORDS[key])
        self[key] = value
        return value


class _Writer:
    """Fills the templates from one seeded random generator, around the prompt's topic words."""

    def __init__(self, rng: random.Random, prompt: str) -> None:
        self.rng = rng
        words = [w.lower() for w in re.findall(r"[A-Za-z][A-Za-z-]{3,}", prompt)]
        keywords = [w for w in dict.fromkeys(words) if w not in _STOPWORDS]
        self.topics = [f"the {w}" for w in keywords[-6:]] or list(_FALLBACK_TOPICS)
        self.topic = rng.choice(self.topics)

    def fill(self, template: str) -> str:
        return template.format_map(_Slots(self))

    def paragraph(self) -> str:
        count = self.rng.randint(2, 4)
        sentences = [self.fill(s) for s in self.rng.sample(_SENTENCES, count)]
        if self.rng.random() < 0.25:
            # Inline code now and then, as models like to do.
            i = self.rng.randrange(count)
            sentences[i] = sentences[i].rstrip(".") + f" (see `{self.fill('{ident}')}`)."
        return " ".join(sentences)

    def bullet_list(self) -> str:
        numbered = self.rng.random() < 0.4
        items = [self.fill(t) for t in self.rng.sample(_LIST_ITEMS, self.rng.randint(3, 5))]
        return "\n".join(f"{i}. {item}" if numbered else f"- {item}" for i, item in enumerate(items, 1))

    def code_block(self) -> str:
        lang = self.rng.choice(sorted(_CODE))
        return f"```{lang}\n{self.fill(self.rng.choice(_CODE[lang]))}```"

    def answer(self, min_pieces: int, *, markdown: bool = True) -> list[str]:
        """Blocks of markdown until there are at least `min_pieces` pieces; returned as pieces."""
        blocks = [self.fill(self.rng.choice(_OPENERS))] if markdown else []
        pieces = split_pieces(blocks[0]) if blocks else []
        while len(pieces) < min_pieces:
            roll = self.rng.random()
            if not markdown or roll < 0.55 or not blocks:
                block = self.paragraph()
            elif roll < 0.72:
                block = self.bullet_list()
            elif roll < 0.84:
                block = self.code_block()
            else:
                block = f"### {self.rng.choice(_HEADINGS)}\n\n{self.paragraph()}"
            if blocks:
                pieces.append("\n\n")
            blocks.append(block)
            pieces += split_pieces(block)
        if markdown and self.rng.random() < 0.6:
            pieces += ["\n\n", *split_pieces(self.fill(self.rng.choice(_CLOSERS)))]
        return pieces

    def reasoning(self) -> str:
        r = self.rng
        steps = [
            f"The user is asking about {self.topic}.",
            self.fill("I should {verb} the {noun} first, then mention the {noun2}."),
            self.fill("A {adj} answer with one example is probably best."),
        ]
        if r.random() < 0.5:
            steps.append(self.fill("Maybe also warn about {gerund} too early."))
        steps.append("Let me structure the reply.")
        return " ".join(steps)


@lru_cache(maxsize=2048)
def generate(
    seed: int, prompt: str, *, reasoning: bool, markdown: bool, length: int | None
) -> tuple[Reply, Reply]:
    """(reasoning, answer) for a prompt. `length` is an exact piece count for the answer, else seeded."""
    rng = random.Random(seed)
    writer = _Writer(rng, prompt)
    thinking = make_reply(split_pieces(writer.reasoning()) if reasoning else ())
    target = length if length is not None else rng.randint(60, 260)
    pieces = writer.answer(target, markdown=markdown)
    if length is not None:
        pieces = pieces[:length]
    return thinking, make_reply(pieces)


@lru_cache(maxsize=1024)
def echo(text: str) -> Reply:
    return make_reply(split_pieces(text))


def prompt_text(messages: list[dict]) -> str:
    """The last user message's text (string content or the text parts of a content array)."""
    for message in reversed(messages):
        if message.get("role") == "user":
            return content_text(message.get("content"))
    return ""


def content_text(content: object) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            part.get("text", "") for part in content if isinstance(part, dict) and part.get("type") == "text"
        )
    return ""


FIRST_WORDS = 12


def _image_size(url: str) -> str:
    """"640x480" for a data URL's image, "?" when it cannot be read (or is a remote URL)."""
    if not url.startswith("data:") or ";base64," not in url:
        return "?"
    import base64
    import binascii
    import io

    try:
        from PIL import Image

        with Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1], validate=True))) as image:
            return f"{image.width}x{image.height}"
    except (ImportError, OSError, ValueError, binascii.Error):
        return "?"


def describe_received(messages: list[dict]) -> str:
    """What the last user message held, for the vision model's answer: its images and text parts."""
    content: object = ""
    for message in reversed(messages):
        if message.get("role") == "user":
            content = message.get("content")
            break
    parts = content if isinstance(content, list) else [{"type": "text", "text": content_text(content)}]
    images = [
        _image_size((p.get("image_url") or {}).get("url", ""))
        for p in parts if isinstance(p, dict) and p.get("type") == "image_url"
    ]
    texts = [p.get("text", "") for p in parts if isinstance(p, dict) and p.get("type") == "text"]
    noun = "image" if len(images) == 1 else "images"
    lines = [f"I received {len(images)} {noun}" + (f" ({', '.join(images)})" if images else "")
             + f" and {len(texts)} text part{'' if len(texts) == 1 else 's'}."]
    for number, text in enumerate(texts, 1):
        words = " ".join(text.split()[:FIRST_WORDS])
        lines.append(f"Text part {number} ({len(text)} characters) begins: {words}")
    return "\n\n".join(lines)
