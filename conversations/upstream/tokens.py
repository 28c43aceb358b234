"""Offline token counts (tiktoken o200k_base, shipped in tiktoken_cache/) for replies without usage."""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import threading
from collections import OrderedDict
from collections.abc import Callable
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


def _value_tokens(value: Any, count: Callable[[str], int]) -> int:
    if isinstance(value, str):
        return count(value) if value else 0
    if isinstance(value, list):  # content parts: only text is counted (images are priced apart)
        return sum(
            count(part["text"])
            for part in value
            if isinstance(part, dict) and isinstance(part.get("text"), str) and part["text"]
        )
    if value is None:
        return 0
    return count(json.dumps(value, ensure_ascii=False, separators=(",", ":")))  # tool calls and the like


def count_prompt_tokens(messages: list[dict[str, Any]]) -> int:
    """Prompt tokens of a chat request as OpenAI counts them: each message's fields, plus 3 per message
    and 1 per `name`, plus 3 priming the reply. Exact for OpenAI's models, an estimate elsewhere."""
    encode = _encoder()

    def count(text: str) -> int:
        return _count_remembered(text, encode)

    total = REPLY_PRIMING
    for message in messages:
        total += TOKENS_PER_MESSAGE
        for key, value in message.items():
            total += _value_tokens(value, count)
            if key == "name":
                total += TOKENS_PER_NAME
    return total
