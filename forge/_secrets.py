"""Credentials: one-way fingerprints for cache and budget keys, and masking for everything printed.

A service holds several keys; forge must tell them apart (a reply or a
rate-limit budget belongs to one account) without ever writing a key down.
:func:`fingerprint` is an HMAC-SHA256 of the credentials, truncated: stable
across processes and hosts (so Redis keys agree), useless for recovering
the key. :func:`redact` removes every key forge was given from a text
(an error message that echoes the key, a log line, a job row);
:func:`redact_url` masks the password of a ``redis://user:pass@host`` URL.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import threading
from urllib.parse import urlsplit, urlunsplit

__all__ = [
    "MASK", "fingerprint", "redact", "redact_url", "register_secret", "register_url_password",
    "registered_secrets", "scrub_exception",
]

MASK = "***"
# A fixed, public HMAC key: the fingerprint is not a secret either, it only must not
# reveal the key, and must be the same in every process that shares a cache or a budget.
_FINGERPRINT_KEY = b"forge-credential-fingerprint-v1"
_MIN_SECRET_LENGTH = 8

_lock = threading.Lock()
_secrets: tuple[str, ...] = ()


def fingerprint(*parts: str | None) -> str:
    """A 16-hex-digit one-way digest of ``parts`` (api key, organization, project...)."""
    text = "\x00".join(p or "" for p in parts)
    return hmac.new(_FINGERPRINT_KEY, text.encode("utf-8"), hashlib.sha256).hexdigest()[:16]


def register_secret(value: str | None) -> None:
    """Remember ``value`` so :func:`redact` removes it from anything forge prints or stores."""
    global _secrets
    if not value or len(value) < _MIN_SECRET_LENGTH or value in _secrets:
        return
    with _lock:
        if value not in _secrets:
            # Longest first, so a key that contains another is masked whole.
            _secrets = tuple(sorted({*_secrets, value}, key=len, reverse=True))


def redact(text: str) -> str:
    """``text`` with every registered secret replaced by ``***``."""
    for secret in _secrets:
        if secret in text:
            text = text.replace(secret, MASK)
    return text


def redact_url(url: str | None) -> str | None:
    """``url`` with its password (``scheme://user:PASSWORD@host``) replaced by ``***``."""
    if not url:
        return url
    try:
        parts = urlsplit(url)
    except ValueError:
        return MASK
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    user = parts.username or ""
    netloc = f"{user}:{MASK}@{host}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def scrub_exception(exc: BaseException) -> BaseException:
    """Remove every registered secret from ``exc``'s message, and from its causes' (in place).

    A server may echo the key it was sent ("Incorrect API key provided: sk-..."); the
    vendor exception kept as ``__cause__`` would print it in every traceback.
    """
    if not _secrets:
        return exc
    seen: set[int] = set()
    pending: list[BaseException] = [exc]
    while pending:
        current: BaseException | None = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        pending += _kept_errors(current)
        if any(isinstance(a, str) for a in current.args):
            current.args = tuple(redact(a) if isinstance(a, str) else a for a in current.args)
        message = getattr(current, "message", None)
        if isinstance(message, str):
            with contextlib.suppress(AttributeError, TypeError):
                current.message = redact(message)  # type: ignore[attr-defined]
        pending += [e for e in (current.__cause__, current.__context__) if e is not None]
    return exc


def _kept_errors(exc: BaseException) -> list[BaseException]:
    """The errors ``exc`` carries besides its causes: an error that ended a retried call keeps
    every attempt's error; a fallback chain's error its last link's."""
    kept: list[BaseException] = []
    last = getattr(exc, "last_error", None)
    if isinstance(last, BaseException):
        kept.append(last)
    for attempt in getattr(exc, "attempts", None) or ():
        error = getattr(attempt, "error", None)
        if isinstance(error, BaseException):
            kept.append(error)
    return kept


def registered_secrets() -> tuple[str, ...]:
    """Every value :func:`register_secret` was given (longest first)."""
    return _secrets


def register_url_password(url: str | None) -> None:
    """:func:`register_secret` for the password of ``scheme://user:password@host`` (if any)."""
    if url:
        with contextlib.suppress(ValueError):
            register_secret(urlsplit(url).password)
