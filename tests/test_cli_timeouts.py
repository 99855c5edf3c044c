"""The forge command's timeout messages name its own option (--timeout), not the Python API's.

Run against the hostile raw-bytes server: it accepts the request and then says nothing.
"""

from __future__ import annotations

import asyncio
import io
import json
from pathlib import Path

import pytest

from forge.cli import main
from tests.hostile import Hang, HostileServer, Reply, sse


def _config(srv: HostileServer, tmp_path: Path) -> str:
    path = tmp_path / "forge.json"
    path.write_text(json.dumps({"providers": {"openai": {"api_key": "sk-test", "base_url": srv.url("/v1")}}}))
    return str(path)


async def _cli(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    rc = await asyncio.to_thread(main, list(argv), out)  # the command runs its own event loop
    return rc, out.getvalue()


def _no_python_names(message: str) -> None:
    assert "--timeout" in message
    assert "timeout=" not in message and "timeout argument" not in message
    assert ".partial_text" not in message


async def test_invoke_timeout_names_the_option(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    async with HostileServer() as srv:
        srv.push(Reply.raw(Hang()))
        rc, _ = await _cli("invoke", "openai:gpt-4o-mini", "hi", "--timeout", "0.3", "--max-attempts", "1",
                           "--config", _config(srv, tmp_path))
    err = capsys.readouterr().err
    assert rc == 1
    assert err.startswith("forge: ProviderTimeout: openai:gpt-4o-mini: no reply within 0.3s (--timeout)")
    assert "(provider=openai, model=gpt-4o-mini)" in err
    _no_python_names(err)


async def test_stream_timeout_says_what_arrived(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    chunk = {"id": "c1", "object": "chat.completion.chunk", "model": "gpt-4o-mini",
             "choices": [{"index": 0, "delta": {"content": "Hello"}, "finish_reason": None}]}
    async with HostileServer() as srv:
        srv.push(Reply.stream([*sse(chunk), Hang()], finish=False))
        rc, printed = await _cli("stream", "openai:gpt-4o-mini", "hi", "--timeout", "0.3",
                                 "--max-attempts", "1", "--config", _config(srv, tmp_path))
    err = capsys.readouterr().err
    assert rc == 1
    assert printed == "Hello"
    assert "did not finish within 0.3s (--timeout); 5 characters arrived before it (printed above)" in err
    _no_python_names(err)


async def test_stream_timeout_before_anything_arrived(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    async with HostileServer() as srv:
        srv.push(Reply.raw(Hang()))
        rc, printed = await _cli("stream", "openai:gpt-4o-mini", "hi", "--timeout", "0.3",
                                 "--max-attempts", "1", "--config", _config(srv, tmp_path))
    err = capsys.readouterr().err
    assert rc == 1 and printed == ""
    assert "(--timeout); nothing arrived" in err
    _no_python_names(err)


async def test_batch_error_lines_name_the_option(tmp_path: Path) -> None:
    source, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    source.write_text(json.dumps({"prompt": "hi"}) + "\n")
    async with HostileServer() as srv:
        srv.push(Reply.raw(Hang()))
        rc, _ = await _cli("batch", "openai:gpt-4o-mini", str(source), "--mode", "concurrent",
                           "--timeout", "0.3", "--max-attempts", "1", "--out", str(out),
                           "--job-store", str(tmp_path / "jobs.db"), "--config", _config(srv, tmp_path))
    assert rc == 3
    [line] = [json.loads(x) for x in out.read_text().splitlines()]
    assert line["error"]["type"] == "ProviderTimeout"
    _no_python_names(line["error"]["message"])
