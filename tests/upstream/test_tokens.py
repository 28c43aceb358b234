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
