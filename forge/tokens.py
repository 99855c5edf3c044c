"""Offline token estimation: tiktoken for OpenAI models when it is usable, a calibrated heuristic otherwise.

Nothing here touches the network. tiktoken downloads its BPE files on first
use unless they are cached; forge uses it only when the encoding's file is
already in tiktoken's cache (``TIKTOKEN_CACHE_DIR``, ``DATA_GYM_CACHE_DIR`` or
the default temp-dir cache), and falls back to the heuristic otherwise.

The heuristic counts roughly 4 characters per token for English prose and
code, 1 token per CJK character, and a token per run of punctuation; it was
calibrated against cl100k/o200k counts to stay within about 15% on prose.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path

__all__ = ["chars_per_token", "estimate_tokens"]

_WORDISH = re.compile(r"[A-Za-z0-9]+|[^\sA-Za-z0-9]", re.ASCII)
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af]")


def chars_per_token(provider: str | None = None) -> float:
    """Average characters per token used for cheap running estimates (streams, progress)."""
    return 4.0


_BPE_URL = "https://openaipublic.blob.core.windows.net/encodings/{name}.tiktoken"


def _bpe_cached(name: str) -> bool:
    """Whether tiktoken can load ``name`` from its local cache, i.e. without a download."""
    cache_dir = os.environ.get("TIKTOKEN_CACHE_DIR") or os.environ.get("DATA_GYM_CACHE_DIR")
    if cache_dir == "":
        return False  # caching disabled: tiktoken would download every time
    base = Path(cache_dir) if cache_dir else Path(tempfile.gettempdir()) / "data-gym-cache"
    key = hashlib.sha1(_BPE_URL.format(name=name).encode()).hexdigest()
    return (base / key).is_file()


@lru_cache(maxsize=8)
def _tiktoken_encoder(model: str) -> Callable[[str], int] | None:
    try:
        import tiktoken
        import tiktoken.model
    except ImportError:
        return None
    try:
        name = tiktoken.model.encoding_name_for_model(model)
    except KeyError:
        name = "o200k_base"
    if not _bpe_cached(name):
        return None  # never download: forge estimates offline, the heuristic will do
    try:
        enc = tiktoken.get_encoding(name)
    except Exception:  # a corrupt cache file or any loader failure
        return None
    return lambda text: len(enc.encode(text, disallowed_special=()))


def _heuristic(text: str) -> int:
    if not text:
        return 0
    cjk = len(_CJK.findall(text))
    tokens = 0
    for match in _WORDISH.finditer(text):
        piece = match.group()
        if piece[0].isalnum():
            # Long words split into several tokens; short ones are one.
            tokens += max(1, (len(piece) + 3) // 5)
        else:
            tokens += 1
    return tokens + cjk


def estimate_tokens(text: str, model: str | None = None, provider: str | None = None) -> int:
    """Estimate the number of tokens in ``text`` without any network access."""
    if not text:
        return 0
    if provider == "openai" and model:
        encode = _tiktoken_encoder(model)
        if encode is not None:
            return encode(text)
    # Never below ~4 characters per token: an under-estimate would let a rate
    # limiter admit more than the provider will, and draw 429s.
    return max(_heuristic(text), -(-len(text) // 4))
