"""What the suite needs from outside the repository, and what happens when it is missing.

Two things live outside a clone: a redis-server (started by ``scripts/services``,
which exports ``FORGE_TEST_REDIS_URL``) and the real provider recordings in
``../shared/cassettes-real`` (beside the clone; ``FORGE_REAL_CASSETTES`` overrides).
Locally, tests that need them skip with a reason that says what is missing and how
to get it. In CI (``CI`` set, as every CI service does) nothing may be skipped for
that reason: ``tests/conftest.py`` fails the run at start instead (:func:`ci_problems`).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REDIS_URL = os.environ.get("FORGE_TEST_REDIS_URL") or None
REAL_RECORDINGS = Path(
    os.environ.get("FORGE_REAL_CASSETTES")
    or Path(__file__).resolve().parents[2] / "shared" / "cassettes-real"
)


def in_ci() -> bool:
    """True on a CI runner (``CI=true``, set by GitHub Actions, GitLab and the others)."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def no_redis_reason() -> str:
    """Why the Redis tests do not run: scripts/services says why when it could not start one."""
    why = os.environ.get("FORGE_TEST_REDIS_MISSING")
    if why:
        return f"no Redis: {why}"
    return ("no Redis: FORGE_TEST_REDIS_URL is not set; run the suite with `bash scripts/test`, "
            "which starts a redis-server, or set it to a redis:// URL")


def no_recordings_reason() -> str:
    return (f"the real provider recordings are not here: {REAL_RECORDINGS} is absent "
            "(../shared/cassettes-real beside the clone, or set FORGE_REAL_CASSETTES)")


def require_redis() -> str:
    """The test Redis URL, or skip the test (locally) with the reason it is missing."""
    if REDIS_URL is None:
        pytest.skip(no_redis_reason())
    return REDIS_URL


def require_real_recordings() -> Path:
    """The real recordings folder, or skip the test (locally) naming the missing folder."""
    if not REAL_RECORDINGS.is_dir():
        pytest.skip(no_recordings_reason())
    return REAL_RECORDINGS


def ci_problems() -> list[str]:
    """What CI is missing that would turn tests into skips (empty when nothing is)."""
    problems = []
    if REDIS_URL is None:
        problems.append("FORGE_TEST_REDIS_URL is not set: scripts/services must start Redis in CI")
    if not REAL_RECORDINGS.is_dir():
        problems.append(f"{no_recordings_reason()}; CI must have them")
    return problems
