"""Reasoning signatures the emulator issues and checks, the way the vendors do.

Every signature (an Anthropic ``thinking`` block's ``signature``, a
``redacted_thinking`` block's ``data``, a Gemini ``thoughtSignature``, a
Responses ``encrypted_content``) is a sealed token: the JSON of what it is
bound to plus an HMAC-SHA256 under a per-emulator secret, in standard base64.
A follow-up request whose reasoning was changed, merged, reordered or dropped
no longer matches what the tokens say, and the dialect refuses it with the
vendor's error (see ``check_*`` in each dialect):

- Anthropic binds each block to its place among the turn's reasoning blocks
  (``i`` of ``n``) and to a digest of its thinking text, so an edited, merged,
  reordered or dropped block fails with ``Invalid `signature` in `thinking`
  block`` (400 invalid_request_error).
- Gemini binds a function call's signature to the call's name and arguments.
- Responses binds ``encrypted_content`` to the reasoning item's id and summary,
  and remembers which ``function_call`` item needs which reasoning item.

Checking is on by default; ``Emulator(verify_signatures=False)`` turns it off
(tokens are still issued).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
from typing import Any

_MAGIC = b"\x00emu1"
_MAC_BYTES = 16


def digest(text: str) -> str:
    """A short digest of ``text`` to bind a token to (the token never holds the text itself)."""
    return hashlib.sha256(text.encode()).hexdigest()[:32]


class Signatures:
    """Issues and checks sealed tokens; one per emulator (``enabled``: whether dialects check them)."""

    __slots__ = ("_secret", "enabled", "required")

    def __init__(self, secret: bytes | None = None, *, enabled: bool = True) -> None:
        self._secret = secret if secret is not None else os.urandom(32)
        self.enabled = enabled
        # Responses: function_call item id -> the reasoning item id that must come before it.
        self.required: dict[str, str] = {}

    def seal(self, payload: dict[str, Any]) -> str:
        """A token holding ``payload``, in standard base64 (what Anthropic and Gemini send)."""
        body = _MAGIC + json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
        mac = hmac.new(self._secret, body, hashlib.sha256).digest()[:_MAC_BYTES]
        return base64.b64encode(body + mac).decode()

    def open(self, token: object) -> dict[str, Any] | None:
        """The payload of a token this emulator sealed; None for anything else (tampered, foreign)."""
        if not isinstance(token, str) or not token:
            return None
        try:
            raw = base64.b64decode(token.replace("-", "+").replace("_", "/") + "=" * (-len(token) % 4))
        except (binascii.Error, ValueError):
            return None
        body, mac = raw[:-_MAC_BYTES], raw[-_MAC_BYTES:]
        if not body.startswith(_MAGIC):
            return None
        expected = hmac.new(self._secret, body, hashlib.sha256).digest()[:_MAC_BYTES]
        if not hmac.compare_digest(mac, expected):
            return None
        try:
            payload = json.loads(body[len(_MAGIC):])
        except ValueError:
            return None
        return payload if isinstance(payload, dict) else None

    def reset(self) -> None:
        self.required.clear()
