"""Offline token counts (tiktoken o200k_base, shipped in tiktoken_cache/) for replies without usage, and what an
image in a prompt costs in tokens by its model's rule (`image_tokens`)."""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import json
import logging
import math
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

ENCODING_NAME = "o200k_base"  # GPT-4o and later; for other models' tokenizers an estimate all the same
CACHE_DIR = Path(__file__).resolve().with_name("tiktoken_cache")
# tiktoken names a cache entry by the SHA-1 of the download URL and checks the content against this
# SHA-256, pinned in tiktoken's own tiktoken_ext/openai_public.py.
_URL = "https://openaipublic.blob.core.windows.net/encodings/o200k_base.tiktoken"
CACHE_FILE = CACHE_DIR / hashlib.sha1(_URL.encode()).hexdigest()  # noqa: S324 (a file name, not security)
EXPECTED_SHA256 = "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d"

TOKENS_PER_MESSAGE = 3  # <|start|>role<|message|> ... <|end|> framing around each message
TOKENS_PER_NAME = 1
REPLY_PRIMING = 3  # <|start|>assistant<|message|> opening the reply

_load_lock = threading.Lock()

# A conversation's history is counted again for every estimate and every send: the counts of the longer texts
# are remembered, by a digest of the text (16 bytes a text, whatever its length), the least recently used
# forgotten first. Hashing is about 30 times cheaper than tokenizing.
REMEMBER_FROM_CHARS = 256
REMEMBERED_TEXTS = 8192
_remembered: OrderedDict[bytes, int] = OrderedDict()
_remembered_lock = threading.Lock()


def _heuristic(text: str) -> int:
    # About four bytes of UTF-8 per token for English prose and code; only used without the BPE file.
    return math.ceil(len(text.encode("utf-8", "surrogatepass")) / 4)


@lru_cache(maxsize=1)
def _encoder() -> Callable[[str], int]:
    """The counting function, loaded once per process."""
    try:
        data = CACHE_FILE.read_bytes()
    except OSError:
        data = b""
    # Checked here first: on a mismatch tiktoken would delete the file and try to download it.
    if hashlib.sha256(data).hexdigest() != EXPECTED_SHA256:
        logger.warning("%s is missing or altered: token counts are estimated at 4 bytes a token", CACHE_FILE)
        return _heuristic
    import tiktoken

    # TIKTOKEN_CACHE_DIR is read when the file is loaded; it is set for this load only (a value the
    # deployment set for other purposes is put back), under a lock since the environment is process-wide.
    with _load_lock:
        previous = os.environ.get("TIKTOKEN_CACHE_DIR")
        os.environ["TIKTOKEN_CACHE_DIR"] = str(CACHE_DIR)
        try:
            encoding = tiktoken.get_encoding(ENCODING_NAME)
        finally:
            if previous is None:
                del os.environ["TIKTOKEN_CACHE_DIR"]
            else:
                os.environ["TIKTOKEN_CACHE_DIR"] = previous
    encode = encoding.encode_ordinary  # special-token text such as "<|endoftext|>" counts as plain text

    def count(text: str) -> int:
        return len(encode(text))

    return count


def is_exact() -> bool:
    """True when counts come from the real BPE file, False when they are the 4-bytes-a-token estimate."""
    return _encoder() is not _heuristic


def count_tokens(text: str) -> int:
    """Tokens in `text` with o200k_base."""
    if not text:
        return 0
    return _encoder()(text)


def _count_remembered(text: str, count: Callable[[str], int]) -> int:
    if len(text) < REMEMBER_FROM_CHARS:
        return count(text)
    key = hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()
    with _remembered_lock:
        known = _remembered.get(key)
        if known is not None:
            _remembered.move_to_end(key)
            return known
    counted = count(text)
    with _remembered_lock:
        _remembered[key] = counted
        if len(_remembered) > REMEMBERED_TEXTS:
            _remembered.popitem(last=False)
    return counted


# --- images -----------------------------------------------------------------------------------------------------
# How providers count an image's prompt tokens. `openai` (GPT-4o and its kind, the default for a model without a
# rule): `detail: low` costs 85; otherwise the image is fitted in 2048×2048, its shortest side scaled to 768, and
# each 512-px tile costs 170, plus 85. `anthropic` (Claude): width × height / 750, the image first scaled so its
# long side fits 1568 px and its cost stays under about 1,600 tokens.
IMAGE_RULES = ("openai", "anthropic")
DEFAULT_IMAGE_RULE = "openai"
OPENAI_LOW_DETAIL = 85
OPENAI_BASE = 85
OPENAI_PER_TILE = 170
ANTHROPIC_LONG_SIDE = 1568
ANTHROPIC_MAX_TOKENS = 1600
# An image whose size cannot be read (a remote URL, a broken data URL) costs the most the rule charges for one.
UNKNOWN_SIZE_TOKENS = {"openai": OPENAI_BASE + OPENAI_PER_TILE * 8, "anthropic": ANTHROPIC_MAX_TOKENS}
# Base64 characters of a data URL read to find an image's size: a PNG's, GIF's or WebP's header is in the first few
# dozen bytes, a JPEG's after its metadata (up to 64 KB of EXIF); the whole image only when neither holds it.
DATA_URL_HEADS = (4_096, 131_072)


def image_tokens(width: int | None, height: int | None, *, detail: str = "auto",
                 rule: str = DEFAULT_IMAGE_RULE) -> int:
    """An image's prompt tokens under `rule` (IMAGE_RULES; an unknown rule counts as the default)."""
    if rule not in IMAGE_RULES:
        rule = DEFAULT_IMAGE_RULE
    if rule == "openai" and detail == "low":
        return OPENAI_LOW_DETAIL
    if not width or not height or width < 0 or height < 0:
        return UNKNOWN_SIZE_TOKENS[rule]
    w, h = float(width), float(height)
    if rule == "anthropic":
        if max(w, h) > ANTHROPIC_LONG_SIDE:
            scale = ANTHROPIC_LONG_SIDE / max(w, h)
            w, h = w * scale, h * scale
        return min(ANTHROPIC_MAX_TOKENS, max(1, math.ceil(w * h / 750)))
    if max(w, h) > 2048:
        scale = 2048 / max(w, h)
        w, h = w * scale, h * scale
    if min(w, h) > 768:
        scale = 768 / min(w, h)
        w, h = w * scale, h * scale
    tiles = math.ceil(round(w, 6) / 512) * math.ceil(round(h, 6) / 512)
    return OPENAI_BASE + OPENAI_PER_TILE * tiles


def image_size(url: str) -> tuple[int, int] | None:
    """(width, height) of the image in a base64 data URL, read from its header; None for any other URL or
    what cannot be read."""
    if not url.startswith("data:") or ";base64," not in url[:200]:
        return None
    from PIL import Image, UnidentifiedImageError

    start = url.index(";base64,") + 8
    # The header first (a slice of the URL, never a copy of all of it); the whole image only when it is not there.
    for end in sorted({*(min(start + head, len(url)) for head in DATA_URL_HEADS), len(url)}):
        chunk = url[start:end]
        try:
            data = base64.b64decode(chunk[: len(chunk) - len(chunk) % 4], validate=False)
            with Image.open(io.BytesIO(data)) as image:  # reads the header only, decodes no pixels
                return image.size
        except (binascii.Error, UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError,
                SyntaxError, EOFError):
            if end == len(url):
                break
    return None


def _image_part_tokens(part: dict[str, Any], rule: str, sizes: Mapping[str, tuple[int, int]]) -> int:
    image = part.get("image_url")
    if isinstance(image, str):
        image = {"url": image}
    if not isinstance(image, dict):
        return image_tokens(None, None, rule=rule)
    url, detail = image.get("url"), image.get("detail")
    url = url if isinstance(url, str) else ""
    detail = detail if isinstance(detail, str) else "auto"
    size = (sizes.get(url) if sizes else None) or image_size(url)  # an empty map: a data URL is not even hashed
    return image_tokens(*(size or (None, None)), detail=detail, rule=rule)


def _value_tokens(value: Any, count: Callable[[str], int], rule: str = DEFAULT_IMAGE_RULE,
                  sizes: Mapping[str, tuple[int, int]] | None = None) -> int:
    if isinstance(value, str):
        return count(value) if value else 0
    if isinstance(value, list):  # content parts: text by its tokens, images by the model's rule
        total = 0
        for part in value:
            if not isinstance(part, dict):
                continue
            if isinstance(part.get("text"), str):
                total += count(part["text"]) if part["text"] else 0
            elif part.get("type") == "image_url":
                total += _image_part_tokens(part, rule, sizes or {})
        return total
    if value is None:
        return 0
    return count(json.dumps(value, ensure_ascii=False, separators=(",", ":")))  # tool calls and the like


def count_prompt_tokens(messages: list[dict[str, Any]], *, image_rule: str = DEFAULT_IMAGE_RULE,
                        image_sizes: Mapping[str, tuple[int, int]] | None = None) -> int:
    """Prompt tokens of a chat request as OpenAI counts them: each message's fields, plus 3 per message
    and 1 per `name`, plus 3 priming the reply; each image part by `image_rule` (its size read from its data URL,
    or given in `image_sizes` by URL). Exact for OpenAI's models, an estimate elsewhere."""
    encode = _encoder()

    def count(text: str) -> int:
        return _count_remembered(text, encode)

    total = REPLY_PRIMING
    for message in messages:
        total += TOKENS_PER_MESSAGE
        for key, value in message.items():
            total += _value_tokens(value, count, image_rule, image_sizes)
            if key == "name":
                total += TOKENS_PER_NAME
    return total
