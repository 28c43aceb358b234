"""Offline token counting: the shipped BPE file and its pinned hash, counts, the environment left as found."""

from __future__ import annotations

import hashlib
import inspect
import os
import re
import subprocess
import sys
from pathlib import Path

from conversations.upstream import tokens
from conversations.upstream.tokens import count_prompt_tokens, count_tokens

ROOT = Path(__file__).resolve().parents[2]


def test_the_shipped_file_matches_the_hash_pinned_in_tiktoken() -> None:
    from tiktoken_ext import openai_public

    source = inspect.getsource(openai_public.o200k_base)
    pinned = re.search(r'expected_hash="([0-9a-f]{64})"', source)
    url = re.search(r'"(https://[^"]+o200k_base\.tiktoken)"', source)
    assert pinned and url
    assert pinned.group(1) == tokens.EXPECTED_SHA256
    assert tokens.CACHE_FILE.name == hashlib.sha1(url.group(1).encode()).hexdigest()  # noqa: S324 (tiktoken's naming)
    assert hashlib.sha256(tokens.CACHE_FILE.read_bytes()).hexdigest() == tokens.EXPECTED_SHA256


def test_counts_are_exact_o200k() -> None:
    assert tokens.is_exact()
    assert count_tokens("") == 0
    assert count_tokens("hello world") == 2
    assert count_tokens("<|endoftext|>") > 1  # special-token text is plain text here, never an error
    assert count_tokens("日本語のテキスト") >= 3


def test_prompt_overhead() -> None:
    # 3 per message + 3 priming the reply + the text of every field, + 1 for a name.
    one = [{"role": "user", "content": "hello world"}]
    assert count_prompt_tokens(one) == 3 + count_tokens("user") + 2 + 3
    assert count_prompt_tokens([]) == 3
    named = [{"role": "user", "name": "alice", "content": "hi"}]
    assert count_prompt_tokens(named) == 3 + count_tokens("user") + count_tokens("alice") + 1 + 1 + 3


def test_prompt_with_parts_tool_calls_and_nulls() -> None:
    messages = [
        {
            "role": "user",
            "content": [{"type": "text", "text": "describe"}, {"type": "image_url", "image_url": {}}],
        },
        {"role": "assistant", "content": None, "tool_calls": [{"id": "c", "function": {"name": "f"}}]},
    ]
    assert count_prompt_tokens(messages) > count_prompt_tokens([{"role": "user", "content": "describe"}])


def test_loading_leaves_the_environment_as_found_and_does_not_download() -> None:
    code = (
        "import os, tiktoken.load\n"
        "def no_network(*a, **k): raise AssertionError('tried to download')\n"
        "tiktoken.load.read_file = no_network\n"
        "from conversations.upstream.tokens import count_tokens, is_exact\n"
        "assert count_tokens('hello world') == 2 and is_exact()\n"
        "print(os.environ.get('TIKTOKEN_CACHE_DIR'))\n"
    )
    env = {**os.environ, "TIKTOKEN_CACHE_DIR": "/nonexistent/elsewhere"}
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "/nonexistent/elsewhere"


def test_long_text_is_fast_enough() -> None:
    text = "The quick brown fox jumps over the lazy dog. " * 20_000  # ~900 kB
    assert 150_000 < count_tokens(text) < 250_000


def test_heuristic_fallback() -> None:
    assert tokens._heuristic("abcd" * 10) == 10
    assert tokens._heuristic("é") == 1


# --- images ---------------------------------------------------------------------------------------------------
def _data_url(fmt: str, width: int, height: int) -> str:
    import base64
    import io

    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (width, height), (90, 140, 30)).save(out, fmt)
    mime = {"PNG": "png", "JPEG": "jpeg", "WEBP": "webp", "GIF": "gif"}[fmt]
    return f"data:image/{mime};base64,{base64.b64encode(out.getvalue()).decode()}"


def test_openai_tile_rule() -> None:
    # OpenAI's worked examples: 1024×1024 → 768×768, 4 tiles; 2048×4096 → 1024×2048 → 768×1536, 6 tiles.
    assert tokens.image_tokens(1024, 1024) == 85 + 170 * 4 == 765
    assert tokens.image_tokens(2048, 4096) == 85 + 170 * 6 == 1105
    assert tokens.image_tokens(4096, 8192, detail="high") == 1105
    assert tokens.image_tokens(4096, 8192, detail="low") == 85
    assert tokens.image_tokens(512, 512) == 85 + 170  # small images are not scaled up
    assert tokens.image_tokens(513, 100) == 85 + 170 * 2
    assert tokens.image_tokens(64, 48, rule="no-such-rule") == 255  # an unknown rule counts as the default
    assert tokens.image_tokens(None, None) == tokens.UNKNOWN_SIZE_TOKENS["openai"] == 85 + 170 * 8


def test_anthropic_pixel_rule() -> None:
    assert tokens.image_tokens(1000, 1000, rule="anthropic") == 1334  # ceil(1,000,000 / 750)
    assert tokens.image_tokens(200, 150, rule="anthropic") == 40
    assert tokens.image_tokens(3136, 1000, rule="anthropic") == 1046  # scaled to 1568×500 first
    assert tokens.image_tokens(1568, 1568, rule="anthropic") == tokens.ANTHROPIC_MAX_TOKENS
    assert tokens.image_tokens(100, 100, detail="low", rule="anthropic") == 14  # no detail setting there


def test_image_sizes_are_read_from_data_urls_of_each_format() -> None:
    for fmt in ("PNG", "JPEG", "WEBP", "GIF"):
        assert tokens.image_size(_data_url(fmt, 300, 200)) == (300, 200), fmt
    assert tokens.image_size("https://example.com/cat.png") is None
    assert tokens.image_size("data:image/png;base64,not-an-image") is None
    assert tokens.image_size("data:text/plain,hello") is None
    # a header claiming more pixels than Pillow opens (a decompression bomb) is no size, never an error
    import base64
    import struct
    import zlib

    ihdr = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)
    bomb = b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    assert tokens.image_size("data:image/png;base64," + base64.b64encode(bomb).decode()) is None


def test_a_large_image_is_sized_from_its_header_alone() -> None:
    import base64
    import io
    import time

    from PIL import Image

    out = io.BytesIO()
    noise = Image.frombytes("RGB", (2048, 2048), os.urandom(2048 * 2048 * 3))  # megabytes that do not compress
    noise.save(out, "PNG", compress_level=0)
    url = "data:image/png;base64," + base64.b64encode(out.getvalue()).decode()
    assert len(url) > 4 * max(tokens.DATA_URL_HEADS)
    start = time.perf_counter()
    assert tokens.image_size(url) == (2048, 2048)
    assert time.perf_counter() - start < 0.05


def test_prompt_tokens_count_each_image_by_the_rule() -> None:
    text_only = [{"role": "user", "content": [{"type": "text", "text": "describe"}]}]
    url = _data_url("PNG", 1024, 1024)
    with_image = [{"role": "user", "content": [
        {"type": "text", "text": "describe"}, {"type": "image_url", "image_url": {"url": url}},
    ]}]
    base = count_prompt_tokens(text_only)
    assert count_prompt_tokens(with_image) == base + 765
    assert count_prompt_tokens(with_image, image_rule="anthropic") == base + 1399  # ceil(1024² / 750)
    low = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url, "detail": "low"}}]}]
    assert count_prompt_tokens(low) == count_prompt_tokens([{"role": "user", "content": []}]) + 85
    # A URL chatweb cannot size counts the most one image costs; sizes given by URL are taken as given.
    remote = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://x/cat.png"}}]}]
    empty = count_prompt_tokens([{"role": "user", "content": []}])
    assert count_prompt_tokens(remote) == empty + tokens.UNKNOWN_SIZE_TOKENS["openai"]
    assert count_prompt_tokens(remote, image_sizes={"https://x/cat.png": (512, 512)}) == empty + 255


def test_prompt_counts_remember_long_texts_and_stay_exact(monkeypatch) -> None:
    monkeypatch.setattr(tokens, "_remembered", type(tokens._remembered)())
    monkeypatch.setattr(tokens, "REMEMBERED_TEXTS", 3)
    history = [{"role": "user" if i % 2 == 0 else "assistant", "content": f"message {i}: " + "tide and moon " * 40}
               for i in range(5)]
    fresh = tokens.REPLY_PRIMING + sum(
        tokens.TOKENS_PER_MESSAGE + count_tokens(m["role"]) + count_tokens(m["content"]) for m in history
    )
    assert tokens.count_prompt_tokens(history) == fresh
    assert len(tokens._remembered) == 3  # the least recently used forgotten first
    assert tokens.count_prompt_tokens(history) == fresh  # counted again from what it remembers, the same
    short = [{"role": "user", "content": "hi"}]
    assert tokens.count_prompt_tokens(short) == tokens.REPLY_PRIMING + tokens.TOKENS_PER_MESSAGE + 2
    assert len(tokens._remembered) == 3  # short texts are counted, not remembered
