"""scripts/services: says what it does, reuses a running Redis, stops only the one it started."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SERVICES = ROOT / "scripts" / "services"
BASH = shutil.which("bash") or "bash"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def _source(script: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """Run ``script`` in bash after sourcing scripts/services from ``cwd`` (as scripts/test does)."""
    full_env = {k: v for k, v in os.environ.items()
                if not k.startswith(("FORGE_TEST_REDIS", "FORGE_REDIS", "FORGE_NO_INSTALL"))}
    full_env.update(env)
    return subprocess.run(
        [BASH, "-c", f"set -euo pipefail; source {SERVICES}; {script}"],
        cwd=cwd, env=full_env, capture_output=True, text=True, timeout=60, check=False,
    )


needs_redis_server = pytest.mark.skipif(shutil.which("redis-server") is None,
                                        reason="redis-server is not installed")


@needs_redis_server
def test_a_started_redis_is_announced_exported_and_stopped(tmp_path: Path) -> None:
    port = _free_port()
    result = _source('echo "URL=$FORGE_TEST_REDIS_URL"; forge_services_stop', tmp_path,
                     FORGE_REDIS_PORT=str(port))
    assert result.returncode == 0, result.stderr
    assert f"URL=redis://127.0.0.1:{port}/0" in result.stdout
    assert f"starting redis-server on 127.0.0.1:{port}" in result.stderr
    assert "stopped the redis-server it started" in result.stderr
    for _ in range(50):  # SIGTERM: the server exits promptly but not instantly
        if not _answers(port):
            break
        subprocess.run(["sleep", "0.1"], check=True)
    assert not _answers(port)


@needs_redis_server
def test_a_redis_already_running_is_reused_and_left_running(tmp_path: Path) -> None:
    port = _free_port()
    own = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", ""],
                           cwd=tmp_path, stdout=subprocess.DEVNULL)
    try:
        for _ in range(50):
            if _answers(port):
                break
            subprocess.run(["sleep", "0.1"], check=True)
        result = _source('echo "URL=$FORGE_TEST_REDIS_URL"; forge_services_stop', tmp_path,
                         FORGE_REDIS_PORT=str(port), FORGE_REDIS_DB="3")
        assert result.returncode == 0, result.stderr
        assert f"URL=redis://127.0.0.1:{port}/3" in result.stdout
        assert "reusing the Redis already running" in result.stderr
        assert _answers(port)
    finally:
        own.terminate()
        own.wait(timeout=10)


def test_without_redis_and_no_install_the_tests_are_told_why(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"  # a PATH with the shell's tools but no redis-server
    bin_dir.mkdir()
    for tool in ("mkdir", "id", "cat", "seq", "sleep"):
        found = shutil.which(tool)
        assert found is not None
        (bin_dir / tool).symlink_to(found)
    result = _source('echo "URL=${FORGE_TEST_REDIS_URL:-unset}"; echo "WHY=$FORGE_TEST_REDIS_MISSING"',
                     tmp_path, PATH=str(bin_dir), FORGE_REDIS_PORT=str(_free_port()), FORGE_NO_INSTALL="1")
    assert result.returncode == 0, result.stderr
    assert "URL=unset" in result.stdout
    assert "WHY=redis-server is not installed (FORGE_NO_INSTALL=1 forbids installing it)" in result.stdout
    assert "the Redis tests will be skipped" in result.stderr
    assert "installing" not in result.stderr.replace("forbids installing", "")
