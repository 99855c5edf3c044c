"""What the suite does without Redis or the real recordings: skip locally, naming them; fail in CI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# One of the three that needed the folder (the Gemini and Ollama ones skip through the same helper).
COVERAGE_TEST = "tests/test_real_cassettes.py::test_every_recording_is_verified_or_a_listed_gap"


def _pytest(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k not in ("CI", "FORGE_TEST_REDIS_URL", "FORGE_TEST_REDIS_MISSING")}
    base.update(env)
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", *args],
                          cwd=ROOT, env=base, capture_output=True, text=True, timeout=300, check=False)


def test_without_the_real_recordings_their_tests_skip_naming_the_folder(tmp_path: Path) -> None:
    missing = tmp_path / "shared" / "cassettes-real"
    result = _pytest(COVERAGE_TEST, FORGE_REAL_CASSETTES=str(missing))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 skipped" in result.stdout
    assert f"the real provider recordings are not here: {missing} is absent" in result.stdout


def test_in_ci_missing_recordings_or_redis_fail_the_run(tmp_path: Path) -> None:
    missing = tmp_path / "shared" / "cassettes-real"
    result = _pytest(COVERAGE_TEST, CI="true", FORGE_REAL_CASSETTES=str(missing))
    assert result.returncode == 4, result.stdout + result.stderr  # a usage error: nothing ran
    assert "CI is set, so nothing may be skipped for lack of a service" in result.stderr
    assert f"{missing} is absent" in result.stderr
    assert "FORGE_TEST_REDIS_URL is not set" in result.stderr


def test_without_redis_the_redis_tests_skip_with_the_reason_scripts_services_gave() -> None:
    why = "redis-server is not installed, and installing it needs root"
    result = _pytest("tests/test_cache.py", "-k", "redis", FORGE_TEST_REDIS_MISSING=why)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"no Redis: {why}" in result.stdout
