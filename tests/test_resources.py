"""Everything forge opens is closed (even when a close fails), files are owner-only, no blocking on the loop."""

from __future__ import annotations

import asyncio
import logging
import os
import stat
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

import forge
from forge.batch import BatchProcessor, batch_provider_for
from forge.errors import ForgeError
from forge.jobs import BatchJob, SQLiteJobStore
from forge.llm import LLM
from forge.optimize import optimizer_for
from forge.optimize.google import _CacheEntry
from forge.providers.google import GoogleProvider
from forge.testing import Emulator, Fault
from tests.conftest import FakeProvider, text_steps
from tests.hostile import HostileServer, Reply

REDIS_URL = os.environ.get("FORGE_TEST_REDIS_URL")
needs_redis = pytest.mark.skipif(not REDIS_URL, reason="no Redis: run with `bash scripts/test`")


def private(path: Path) -> bool:
    return stat.S_IMODE(path.stat().st_mode) & 0o077 == 0


# --------------------------------------------------------------------------- Registry.aclose


async def test_registry_aclose_closes_every_client_even_when_one_close_fails() -> None:
    async with Emulator() as emu:
        reg = forge.Registry(emu.config())
        await reg.invoke("openai:gpt-4o-mini", "hi")
        await reg.invoke("anthropic:claude-haiku-4-5", "hi")
        openai, anthropic = reg._providers["openai"], reg._providers["anthropic"]
        closed: list[str] = []
        real_openai = openai.aclose

        async def broken() -> None:
            closed.append("openai")
            await real_openai()
            raise RuntimeError("close failed")

        real = anthropic.aclose

        async def recorded() -> None:
            closed.append("anthropic")
            await real()

        openai.aclose, anthropic.aclose = broken, recorded  # type: ignore[method-assign]
        with pytest.raises(RuntimeError, match="close failed") as info:
            await reg.aclose()
        assert closed == ["openai", "anthropic"]
        assert any("openai client" in note for note in getattr(info.value, "__notes__", []))


async def test_registry_aclose_raises_every_failure_as_a_group() -> None:
    async with Emulator() as emu:
        reg = forge.Registry(emu.config())
        await reg.invoke("openai:gpt-4o-mini", "hi")
        await reg.invoke("anthropic:claude-haiku-4-5", "hi")

        def broken(real: Callable[[], Awaitable[None]]) -> Callable[[], Awaitable[None]]:
            async def close() -> None:
                await real()
                raise RuntimeError("close failed")
            return close

        for provider in reg._providers.values():
            provider.aclose = broken(provider.aclose)  # type: ignore[method-assign]
        with pytest.raises(ExceptionGroup) as info:
            await reg.aclose()
        assert len(info.value.exceptions) == 2


@needs_redis
async def test_registry_aclose_closes_the_limiters_redis_connection() -> None:
    async with Emulator() as emu:
        cfg = emu.config()
        cfg["providers"]["openai"]["rate_limit"] = {  # type: ignore[index]
            "requests_per_minute": 6000, "backend": "redis", "redis_url": REDIS_URL}
        reg = forge.Registry(cfg)
        await reg.invoke("openai:gpt-4o-mini", "hi")
        limiter = reg.limiter("openai")
        assert limiter is not None and limiter.requests is not None
        pool = limiter.requests._client.connection_pool  # type: ignore[attr-defined]
        assert any(c.is_connected for c in pool._available_connections)
        await reg.aclose()
        assert not any(c.is_connected for c in [*pool._available_connections, *pool._in_use_connections])


async def test_registry_aclose_closes_its_job_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FORGE_JOB_STORE", str(tmp_path / "jobs.sqlite3"))
    reg = forge.Registry({})
    store = reg.job_store
    assert isinstance(store, SQLiteJobStore)
    await store.list()
    await reg.aclose()
    assert store._conn is None


# --------------------------------------------------------------------------- batches


async def test_batch_processor_closes_the_job_store_it_opened(
    make_llm: Callable[..., LLM], fake: FakeProvider
) -> None:
    async with BatchProcessor(make_llm()) as processor:
        store = processor.store
        assert isinstance(store, SQLiteJobStore)
        await store.list()
        assert store._conn is not None
    assert store._conn is None


async def test_batch_processor_leaves_a_given_store_open(make_llm: Callable[..., LLM], tmp_path: Path) -> None:
    store = SQLiteJobStore(tmp_path / "jobs.sqlite3")
    await store.list()
    async with BatchProcessor(make_llm(), store=store):
        pass
    assert store._conn is not None
    await store.aclose()


async def test_openai_batch_files_are_deleted_once_results_are_stored() -> None:
    async with Emulator() as emu:
        async with forge.Registry(emu.config()) as reg:
            results = await reg.batch_invoke("openai:gpt-4o-mini", ["one", "two"], mode="batch_api",
                                             poll=forge.batch.PollSchedule(initial=0.01, max=0.01))
        assert all(isinstance(r, forge.Response) for r in results)
        uploads = [r for r in emu.requests if r.method == "POST" and r.path == "/v1/files"]
        deletes = [r for r in emu.requests if r.method == "DELETE"]
        assert len(uploads) == 1 and len(deletes) >= 2  # the input and the output file
        assert not emu._batches.files


async def test_openai_batch_files_are_kept_when_configured() -> None:
    async with Emulator() as emu:
        async with forge.Registry(emu.config()) as reg:
            llm = reg.get_llm("openai:gpt-4o-mini")
            processor = BatchProcessor(llm, batch_provider=batch_provider_for(llm.provider), delete_files=False,
                                       poll=forge.batch.PollSchedule(initial=0.01, max=0.01))
            await processor.run(processor.requests(["one"], {}), mode="batch_api")
            await processor.aclose()
        assert not [r for r in emu.requests if r.method == "DELETE"]
        assert emu._batches.files


async def test_a_failed_delete_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    async with Emulator() as emu:
        emu.script(Fault.server_error(), path="/v1/files/*", times=None,
                   when=lambda rec: rec.method == "DELETE")
        async with forge.Registry(emu.config()) as reg:
            with caplog.at_level(logging.WARNING, logger="forge.batch"):
                results = await reg.batch_invoke("openai:gpt-4o-mini", ["one"], mode="batch_api",
                                                 poll=forge.batch.PollSchedule(initial=0.01, max=0.01))
        assert isinstance(results[0], forge.Response)
        assert "could not delete the files" in caplog.text


def _file_object() -> dict[str, object]:
    return {"id": "file-hostile1", "object": "file", "bytes": 10, "created_at": 1, "filename": "x.jsonl",
            "purpose": "batch", "status": "processed"}


def _batch_object() -> dict[str, object]:
    return {"id": "batch_hostile1", "object": "batch", "endpoint": "/v1/chat/completions",
            "input_file_id": "file-hostile1", "completion_window": "24h", "status": "validating",
            "created_at": 1, "request_counts": {"total": 1, "completed": 0, "failed": 0}}


async def test_an_uploaded_batch_file_is_reused_when_batches_create_is_retried() -> None:
    async with HostileServer() as srv:
        srv.push(
            Reply.http(200, _file_object()),  # POST /v1/files
            Reply.http(500, {"error": {"message": "boom", "type": "server_error"}}),  # POST /v1/batches
            Reply.http(200, {"object": "list", "data": [], "has_more": False}),  # GET /v1/batches (find)
            Reply.http(200, _batch_object()),  # POST /v1/batches, retried
        )
        cfg = {"providers": {"openai": {"api_key": "sk-test-key", "base_url": srv.url("/v1"),
                                        "retry": {"max_attempts": 2, "initial_wait": 0.01}}}}
        async with forge.Registry(cfg) as reg:
            llm = reg.get_llm("openai:gpt-4o-mini")
            async with BatchProcessor(llm, batch_provider=batch_provider_for(llm.provider)) as processor:
                job = await processor.submit(processor.requests(["one"], {}))
        assert job.batch_id == "batch_hostile1"
        calls = [(r.method, r.path.split("?")[0]) for r in srv.requests]
        assert calls == [("POST", "/v1/files"), ("POST", "/v1/batches"), ("GET", "/v1/batches"),
                         ("POST", "/v1/batches")]
        assert srv.requests[3].json()["input_file_id"] == "file-hostile1"  # type: ignore[index]


async def test_an_uploaded_batch_file_is_reused_on_the_emulator() -> None:
    async with Emulator() as emu:
        emu.script(Fault.server_error(), path="/v1/batches", times=1, when=lambda rec: rec.method == "POST")
        cfg = emu.config()
        cfg["providers"]["openai"]["retry"] = {"max_attempts": 2, "initial_wait": 0.01}  # type: ignore[index]
        async with forge.Registry(cfg) as reg:
            await reg.batch_submit("openai:gpt-4o-mini", ["one"])
        uploads = [r for r in emu.requests if r.method == "POST" and r.path == "/v1/files"]
        creates = [r for r in emu.requests if r.method == "POST" and r.path == "/v1/batches"]
        assert len(uploads) == 1 and len(creates) == 2


# --------------------------------------------------------------------------- Gemini caches


async def test_a_failed_context_cache_delete_is_a_warning_with_its_cost(caplog: pytest.LogCaptureFixture) -> None:
    async with HostileServer() as srv:
        srv.push(Reply.http(500, {"error": {"code": 500, "message": "internal", "status": "INTERNAL"}}))
        cfg = forge.config.load_config({"providers": {"google": {"api_key": "test-key", "base_url": srv.url(),
                                                                  "retry": {"max_attempts": 1}}}})
        provider = GoogleProvider(cfg.provider("google"))
        now = [1000.0]
        optimizer = optimizer_for("google", {"context_cache": True}, clock=lambda: now[0])
        optimizer.bind(provider)
        optimizer._entries["k"] = _CacheEntry(  # type: ignore[attr-defined]
            "cachedContents/abc", 200_000, 1000.0 + 270.0, "gemini-2.5-pro")
        with caplog.at_level(logging.WARNING, logger="forge.optimize"):
            await optimizer.aclose()
        await provider.aclose()
    assert srv.requests[0].method == "DELETE"
    record = next(r for r in caplog.records if "cachedContents/abc" in r.getMessage())
    assert record.levelno == logging.WARNING
    message = record.getMessage()
    # 200,000 tokens at $4.50 per million per hour for 300 s: $0.075
    assert "200000 tokens" in message and "$0.075000" in message and "300 s" in message


# --------------------------------------------------------------------------- files


async def test_sqlite_job_store_files_are_owner_only(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        store = SQLiteJobStore(tmp_path / "new-dir" / "jobs.sqlite3")
        job = BatchJob(id="j1", provider="openai", model="m", state="submitting", count=1,
                       created_at=1.0, updated_at=1.0)
        await store.create(job, ['{"prompt": "secret plans"}'])
        files = list((tmp_path / "new-dir").iterdir())
        assert {f.name for f in files} >= {"jobs.sqlite3", "jobs.sqlite3-wal"}
        assert all(private(f) for f in files), {f.name: oct(f.stat().st_mode) for f in files}
        assert private(tmp_path / "new-dir")
        await store.aclose()
    finally:
        os.umask(old)


async def test_sqlite_aclose_waits_for_the_lock_off_the_event_loop(tmp_path: Path) -> None:
    store = SQLiteJobStore(tmp_path / "jobs.sqlite3")
    await store.list()
    ticked = threading.Event()
    loop_ran: list[bool] = []

    def hold() -> None:  # another worker thread in the middle of a long write
        with store._lock:
            loop_ran.append(ticked.wait(timeout=2.0))  # False: the loop was blocked on the lock

    holder = threading.Thread(target=hold)
    holder.start()
    await asyncio.sleep(0.01)

    async def tick() -> None:
        await asyncio.sleep(0)
        ticked.set()

    closing = asyncio.ensure_future(store.aclose())
    ticker = asyncio.ensure_future(tick())
    await asyncio.gather(closing, ticker)
    holder.join()
    assert store._conn is None
    assert loop_ran == [True]


async def test_stream_to_file_fsyncs_in_a_worker_thread(
    make_llm: Callable[..., LLM], fake: FakeProvider, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    threads: list[bool] = []
    real = os.fsync

    def fsync(fd: int) -> None:
        threads.append(threading.current_thread() is threading.main_thread())
        real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    fake.streams.append(text_steps("one ", "two"))
    await make_llm().stream("hi").to_file(tmp_path / "out.txt")
    assert threads == [False]


async def test_stream_to_file_output_and_partial_are_owner_only(
    make_llm: Callable[..., LLM], fake: FakeProvider, tmp_path: Path
) -> None:
    from tests.conftest import Step

    old = os.umask(0o022)
    try:
        fake.streams.append(text_steps("reply"))
        await make_llm().stream("hi").to_file(tmp_path / "out.txt")
        fake.streams.append([Step(forge.types.StreamEvent("text", "half")), Step(error=OSError("dropped"))])
        with pytest.raises(ForgeError):
            await make_llm(retry=forge.RetryPolicy(max_attempts=1)).stream("hi").to_file(tmp_path / "b.txt")
    finally:
        os.umask(old)
    assert private(tmp_path / "out.txt") and private(tmp_path / "b.txt.partial")
