"""Token estimation is offline: tiktoken only from its local cache, else the heuristic."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from forge import tokens
from forge.tokens import estimate_tokens


def test_heuristic_is_close_to_four_chars_per_token() -> None:
    text = "Large language models read text as tokens, roughly four characters each. " * 20
    assert len(text) / 5 <= estimate_tokens(text) <= len(text) / 3


def test_never_below_chars_over_four() -> None:
    assert estimate_tokens("a" * 400) >= 100


def test_cjk_counts_per_character() -> None:
    assert estimate_tokens("日本語のテキスト") >= 8


def test_no_download_without_a_cached_encoding(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))  # an empty cache
    tokens._tiktoken_encoder.cache_clear()

    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError("token estimation tried to use the network")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    assert estimate_tokens("hello world", model="gpt-4o-mini", provider="openai") > 0
    tokens._tiktoken_encoder.cache_clear()
