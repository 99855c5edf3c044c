"""Job stores (SQLite, Redis) and the request/result codec that survives a restart."""

from __future__ import annotations

import os
import sqlite3
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from forge.errors import BatchError, RateLimitError, ServerError
from forge.jobs import (
    BatchJob,
    JobStore,
    RedisJobStore,
    SQLiteJobStore,
    decode_request,
    decode_result,
    default_job_store_path,
    encode_request,
    encode_result,
    open_job_store,
)
from forge.llm import build_request
from forge.types import Message, Request, Response, ResponseFormat, Tool, ToolCall, Usage
from tests._services import no_redis_reason

REDIS_URL = os.environ.get("FORGE_TEST_REDIS_URL")


def _job(job_id: str = "fj_test", count: int = 2) -> BatchJob:
    return BatchJob(id=job_id, provider="openai", model="gpt-4o-mini", state="submitting", count=count,
                    created_at=1000.0, updated_at=1000.0)


@pytest.fixture(params=["sqlite", "redis"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[JobStore]:
    if request.param == "sqlite":
        s: JobStore = SQLiteJobStore(tmp_path / "jobs.sqlite3")
    else:
        if not REDIS_URL:
            pytest.skip(no_redis_reason())
        s = RedisJobStore(REDIS_URL, prefix=f"forge-test-{uuid.uuid4().hex}")
    yield s
    await s.aclose()


async def test_a_created_job_reads_back_with_its_requests(store: JobStore) -> None:
    await store.create(_job(), ["r0", "r1"])
    assert await store.get("fj_test") == _job()
    assert await store.requests("fj_test") == ["r0", "r1"]
    assert await store.get("fj_missing") is None


async def test_creating_the_same_job_twice_is_refused(store: JobStore) -> None:
    await store.create(_job(), ["r0", "r1"])
    with pytest.raises((sqlite3.IntegrityError, ValueError)):
        await store.create(_job(), ["r0", "r1"])


async def test_update_with_expect_state_changes_the_job_only_once(store: JobStore) -> None:
    await store.create(_job(), ["r0", "r1"])
    first = await store.update("fj_test", state="submitted", batch_id="b1", expect_state="submitting", now=2.0)
    second = await store.update("fj_test", state="submitted", batch_id="b2", expect_state="submitting", now=3.0)
    job = await store.get("fj_test")
    assert (first, second) == (True, False)
    assert job is not None and job.batch_id == "b1" and job.state == "submitted" and job.updated_at == 2.0


async def test_finish_stores_results_and_state_together(store: JobStore) -> None:
    await store.create(_job(), ["r0", "r1"])
    assert await store.results("fj_test") == {}
    await store.finish("fj_test", {0: "a", 1: "b"}, state="completed", message=None, now=5.0)
    job = await store.get("fj_test")
    assert job is not None and job.done and job.state == "completed"
    assert await store.results("fj_test") == {0: "a", 1: "b"}


async def test_list_returns_the_newest_jobs_first(store: JobStore) -> None:
    for i in range(3):
        job = BatchJob(id=f"fj_{i}", provider="anthropic", model="m", state="submitting", count=1,
                       created_at=100.0 + i, updated_at=100.0 + i)
        await store.create(job, ["r"])
    assert [j.id for j in await store.list(limit=2)] == ["fj_2", "fj_1"]


async def test_a_new_sqlite_store_on_the_same_file_sees_committed_jobs(tmp_path: Path) -> None:
    path = tmp_path / "jobs.sqlite3"
    first = SQLiteJobStore(path)
    await first.create(_job(), ["r0", "r1"])
    await first.update("fj_test", state="submitted", batch_id="b1", now=2.0)
    # No close: as after a crash, the next process must still find everything committed.
    second = SQLiteJobStore(path)
    job = await second.get("fj_test")
    assert job is not None and job.batch_id == "b1"
    assert await second.requests("fj_test") == ["r0", "r1"]
    await first.aclose()
    await second.aclose()


async def test_sqlite_store_uses_wal_and_full_sync(tmp_path: Path) -> None:
    store = SQLiteJobStore(tmp_path / "jobs.sqlite3")
    await store.get("x")
    conn = sqlite3.connect(tmp_path / "jobs.sqlite3")
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()
    await store.aclose()


def test_default_path_follows_xdg_data_home() -> None:
    assert default_job_store_path({"XDG_DATA_HOME": "/data"}) == Path("/data/forge/jobs.sqlite3")
    assert default_job_store_path({}).parts[-3:] == ("share", "forge", "jobs.sqlite3")


def test_open_job_store_reads_paths_and_urls(tmp_path: Path) -> None:
    assert isinstance(open_job_store(tmp_path / "a.sqlite3"), SQLiteJobStore)
    sqlite = open_job_store(f"sqlite://{tmp_path}/b.sqlite3")
    assert isinstance(sqlite, SQLiteJobStore) and sqlite.path == tmp_path / "b.sqlite3"
    assert isinstance(open_job_store("redis://127.0.0.1:1/0"), RedisJobStore)


def test_a_request_round_trips_with_every_field() -> None:
    request = build_request(
        "gpt-4o-mini",
        [
            {"role": "system", "content": "be brief"},
            Message("user", "weather?"),
            Message("assistant", "", tool_calls=(ToolCall("c1", "weather", {"city": "Oslo"}, '{"city":"Oslo"}'),)),
            Message("tool", "sunny", tool_call_id="c1"),
        ],
        max_tokens=50,
        temperature=0.2,
        seed=7,
        stop=["END"],
        response_format={"type": "object", "properties": {"a": {"type": "string"}}},
        tools=[Tool("weather", "Look it up", {"type": "object", "properties": {"city": {"type": "string"}}})],
        tool_choice="auto",
        extra={"user": "u1", "nested": {"k": [1, 2]}},
    )
    decoded = decode_request(encode_request(request))
    assert decoded == request
    assert isinstance(decoded.response_format, ResponseFormat)
    assert isinstance(decoded.messages[1].tool_calls[0], ToolCall)


def test_a_request_with_unserializable_extra_fails_before_anything_is_stored() -> None:
    request = Request("m", (Message("user", "x"),), extra={"f": object()})
    with pytest.raises(TypeError):
        encode_request(request)


def test_a_response_round_trips_without_raw() -> None:
    response = Response("hi", "anthropic", "claude-haiku-4-5", "stop", Usage(10, 5, 2), id="msg_1",
                        cost_usd=0.001, raw={"big": "payload"})
    decoded = decode_result(encode_result(response))
    assert decoded == response  # raw is not compared
    assert isinstance(decoded, Response) and decoded.raw is None


def test_errors_round_trip_as_their_own_class() -> None:
    error = ServerError("boom", provider="openai", model="m", status=500, code="server_error")
    decoded = decode_result(encode_result(error))
    assert isinstance(decoded, ServerError) and decoded.retryable
    assert (decoded.status, decoded.code, decoded.provider, str(decoded)) == (500, "server_error", "openai",
                                                                               str(error))
    batch_error = decode_result(encode_result(BatchError("gone", code="cancelled", job_id="fj_1")))
    assert isinstance(batch_error, BatchError) and batch_error.code == "cancelled" and batch_error.job_id == "fj_1"
    limited = decode_result(encode_result(RateLimitError("slow", retry_after=3.0)))
    assert isinstance(limited, RateLimitError) and limited.retry_after == 3.0


def test_custom_ids_carry_the_job_id() -> None:
    assert _job(count=3).custom_ids == ["fj_test-0", "fj_test-1", "fj_test-2"]
