"""Batches end to end through the registry, the official clients and the emulator over real sockets:
provider batch APIs of all three vendors, per-item failures, costs, polling, cancellation,
crash recovery, a new process resuming a job, and concurrent mode under enforced rate limits."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import textwrap
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest
import pytest_asyncio

from forge import PollSchedule, Registry, Response, SQLiteJobStore
from forge.batch import BatchProcessor, batch_provider_for
from forge.errors import BadRequestError, BatchError, ForgeError, ProviderConnectionError, ServerError
from forge.jobs import RedisJobStore
from forge.pricing import cost_usd
from forge.testing import Emulator, Fault, Reply
from forge.types import BatchProvider, Request
from tests._services import no_redis_reason
from tests.conftest import FakeClock

MODELS = {
    "openai": "openai:gpt-4o-mini",
    "anthropic": "anthropic:claude-haiku-4-5",
    "google": "google:gemini-2.5-flash",
}
BATCH_PROVIDERS = list(MODELS)
FAST_POLL = PollSchedule(0.01, 2.0, 0.05)


@pytest_asyncio.fixture
async def emu() -> AsyncIterator[Emulator]:
    async with Emulator() as e:
        yield e


@pytest_asyncio.fixture
async def reg(emu: Emulator, tmp_path: Path) -> AsyncIterator[Registry]:
    async with Registry(emu.config()) as r:
        r.job_store = SQLiteJobStore(tmp_path / "jobs.sqlite3")
        yield r
        await r.job_store.aclose()


def _texts(results: Sequence[Response | ForgeError]) -> list[str]:
    return [r.text if isinstance(r, Response) else type(r).__name__ for r in results]


def _count(emu: Emulator, method: str, suffix: str) -> int:
    return sum(1 for r in emu.requests if r.method == method and r.path.endswith(suffix))


_CREATE = {"openai": "/v1/batches", "anthropic": "/v1/messages/batches", "google": ":batchGenerateContent"}


# ---------------------------------------------------------------------- batch API


@pytest.mark.parametrize("provider", BATCH_PROVIDERS)
async def test_batch_api_returns_every_result_in_input_order_with_per_item_failures(
    provider: str, emu: Emulator, reg: Registry
) -> None:
    emu.set_batch_delay(0.05)
    emu.script(Fault.status(400, "item rejected"), path="batch:*-1")
    results = await reg.batch_invoke(MODELS[provider], ["zero", "one", "two"], mode="batch_api", poll=FAST_POLL,
                                     max_tokens=50)
    assert isinstance(results[1], BadRequestError) and "item rejected" in str(results[1])
    for i in (0, 2):
        result = results[i]
        assert isinstance(result, Response)
        assert result.text.endswith(f"You said: {['zero', 'one', 'two'][i]}")
        assert result.provider == provider and result.model == MODELS[provider].split(":")[1]
    assert _count(emu, "POST", _CREATE[provider]) == 1


@pytest.mark.parametrize("provider", BATCH_PROVIDERS)
async def test_the_same_100_prompts_cost_half_through_the_batch_api(
    provider: str, emu: Emulator, reg: Registry
) -> None:
    prompts = [f"prompt number {i}: summarize the plot of a short story" for i in range(100)]
    batch = await reg.batch_invoke(MODELS[provider], prompts, mode="batch_api", poll=FAST_POLL, max_tokens=64)
    concurrent = await reg.batch_invoke(MODELS[provider], prompts, mode="concurrent", max_concurrent=20,
                                        max_tokens=64)
    assert all(isinstance(r, Response) for r in [*batch, *concurrent])
    batch_cost = sum(r.cost_usd or 0 for r in batch if isinstance(r, Response))
    concurrent_cost = sum(r.cost_usd or 0 for r in concurrent if isinstance(r, Response))
    assert concurrent_cost > 0
    assert batch_cost == pytest.approx(concurrent_cost / 2)
    assert [r.usage for r in batch] == [r.usage for r in concurrent]  # type: ignore[union-attr]


async def test_batch_results_are_priced_from_their_usage(emu: Emulator, reg: Registry) -> None:
    emu.script(Reply(text="x", input_tokens=1000, output_tokens=500), path="batch:*", times=None)
    [result] = await reg.batch_invoke(MODELS["anthropic"], ["hi"], mode="batch_api", poll=FAST_POLL)
    assert isinstance(result, Response)
    full = cost_usd("anthropic", "claude-haiku-4-5", result.usage)
    assert full is not None and result.cost_usd == pytest.approx(full / 2)


async def test_auto_mode_uses_the_batch_api_where_there_is_one_and_concurrent_elsewhere(
    emu: Emulator, reg: Registry
) -> None:
    await reg.batch_invoke(MODELS["openai"], ["a"], poll=FAST_POLL)
    assert _count(emu, "POST", "/v1/batches") == 1
    await reg.batch_invoke("ollama:llama3.2", ["a"])
    assert _count(emu, "POST", "/api/chat") == 1
    await reg.batch_invoke(MODELS["openai"], ["a"], max_wait=60)  # cannot wait a day: concurrent
    assert _count(emu, "POST", "/v1/chat/completions") == 1


async def test_polling_backs_off_on_the_emulators_clock(emu: Emulator, tmp_path: Path) -> None:
    clock = FakeClock()
    async with Emulator(clock=clock) as fake_time, Registry(fake_time.config(), clock=clock,
                                                            sleep=clock.sleep) as r:
        r.job_store = SQLiteJobStore(tmp_path / "jobs.sqlite3")
        fake_time.set_batch_delay(3600)
        seen: list[str] = []
        results = await r.batch_invoke(MODELS["openai"], ["a", "b"], mode="batch_api",
                                       on_progress=lambda p: seen.append(p.state))
        assert _texts(results)[0].endswith("You said: a")
        assert clock.sleeps[:4] == [5.0, 7.5, 11.25, 16.875] and max(clock.sleeps) == 60.0
        assert 3600 <= sum(clock.sleeps) < 3600 + 60
        polls = _count(fake_time, "GET", "") - 1  # every GET but the output file's content
        assert polls == len(clock.sleeps) + 1 + 1  # one poll per wait, the first, and results' re-read
        assert seen[0] == "running" and seen[-1] == "completed"
        await r.job_store.aclose()


@pytest.mark.parametrize("provider", BATCH_PROVIDERS)
async def test_cancel_cancels_the_provider_batch_and_resume_reports_cancelled_items(
    provider: str, emu: Emulator, reg: Registry
) -> None:
    emu.set_batch_delay(3600)
    job = await reg.batch_submit(MODELS[provider], ["a", "b"])
    status = await reg.batch_status(job.id)
    assert status is not None and status.state == "running"
    await reg.batch_cancel(job.id)
    cancels = [r for r in emu.requests if "cancel" in r.path]
    assert len(cancels) == 1
    results = await reg.batch_resume(job.id, poll=FAST_POLL)
    assert all(isinstance(r, BatchError) and r.code == "cancelled" for r in results)
    assert (await reg.batch_job(job.id)).state == "cancelled"


async def test_max_wait_cancels_a_batch_that_runs_too_long(emu: Emulator, reg: Registry) -> None:
    emu.set_batch_delay(3600)
    results = await reg.batch_invoke(MODELS["anthropic"], ["a"], mode="batch_api", max_wait=0.05, poll=FAST_POLL)
    assert isinstance(results[0], BatchError) and results[0].code == "cancelled"
    assert _count(emu, "POST", "/cancel") == 1


async def test_an_unknown_job_is_a_batch_error(reg: Registry) -> None:
    with pytest.raises(BatchError) as info:
        await reg.batch_resume("fj_nope")
    assert info.value.code == "unknown_job"


async def test_a_provider_without_a_batch_api_cannot_submit(reg: Registry) -> None:
    with pytest.raises(Exception, match="no batch API"):
        await reg.batch_submit("ollama:llama3.2", ["a"])


# ---------------------------------------------------------------------- crashes and restarts


class _DiesAfterSubmitting(SQLiteJobStore):
    """The process is killed after the provider accepted the batch, before its id was recorded."""

    async def update(self, job_id: str, **kwargs: object) -> bool:
        if kwargs.get("state") == "submitted":
            raise KeyboardInterrupt("killed")
        return await super().update(job_id, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("provider", BATCH_PROVIDERS)
async def test_a_crash_between_submitting_and_recording_is_resumed_without_a_second_batch(
    provider: str, emu: Emulator, reg: Registry, tmp_path: Path
) -> None:
    emu.set_batch_delay(0.05)
    path = tmp_path / "crash.sqlite3"
    reg.job_store = _DiesAfterSubmitting(path)
    with pytest.raises(KeyboardInterrupt):
        await reg.batch_submit(MODELS[provider], ["a", "b", "c"])
    await reg.job_store.aclose()
    reg.job_store = SQLiteJobStore(path)  # the next process
    [job] = await reg.job_store.list()
    assert job.state == "submitting" and job.batch_id is None
    results = await reg.batch_resume(job.id, poll=FAST_POLL)
    assert _count(emu, "POST", _CREATE[provider]) == 1
    assert [t.split("You said: ")[-1] for t in _texts(results)] == ["a", "b", "c"]
    await reg.job_store.aclose()


class _LosesTheSubmitResponse:
    """Wraps a batch API: the batch is created, then the connection drops before the answer."""

    def __init__(self, inner: BatchProvider) -> None:
        self.inner = inner
        self.name = inner.name
        self.lost = False

    async def submit(self, requests: Sequence[tuple[str, Request]], *, marker: str) -> str:
        batch_id = await self.inner.submit(requests, marker=marker)
        if not self.lost:
            self.lost = True
            raise ProviderConnectionError("connection reset", provider=self.name)
        return batch_id

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)


@pytest.mark.parametrize("provider", BATCH_PROVIDERS)
async def test_a_lost_submit_response_is_not_retried_into_a_second_batch(
    provider: str, emu: Emulator, reg: Registry
) -> None:
    llm = reg.get_llm(MODELS[provider])
    inner = batch_provider_for(llm.provider)
    assert inner is not None
    processor = BatchProcessor(llm, batch_provider=_LosesTheSubmitResponse(inner),  # type: ignore[arg-type]
                               store=reg.job_store, poll=FAST_POLL)
    results = await processor.run(processor.requests(["a"], {}), mode="batch_api")
    assert isinstance(results[0], Response)
    assert _count(emu, "POST", _CREATE[provider]) == 1


async def test_a_job_submitted_by_a_process_that_exited_is_resumed_by_another(
    emu: Emulator, tmp_path: Path
) -> None:
    emu.set_batch_delay(0.2)
    config = tmp_path / "forge.json"
    config.write_text(json.dumps(emu.config()))
    store = tmp_path / "jobs.sqlite3"
    env = {**os.environ, "FORGE_CONFIG": str(config), "FORGE_JOB_STORE": str(store)}
    submit = textwrap.dedent("""
        import asyncio, forge
        async def main():
            async with forge.Registry() as reg:
                job = await reg.batch_submit("openai:gpt-4o-mini", ["first", "second"], max_tokens=40)
                print(job.id)
        asyncio.run(main())
    """)
    proc = await asyncio.create_subprocess_exec(sys.executable, "-c", submit, env=env,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    job_id = out.decode().strip()
    assert job_id.startswith("fj_")
    # This process never saw the job: it has only the store the other one wrote and exited from.
    async with Registry(emu.config()) as reg:
        reg.job_store = SQLiteJobStore(store)
        results = await reg.batch_resume(job_id, poll=FAST_POLL)
        assert [t.split("You said: ")[-1] for t in _texts(results)] == ["first", "second"]
        assert _count(emu, "POST", "/v1/batches") == 1
        again = await reg.batch_resume(job_id)  # done: read from the store, nothing sent
        assert again == results and _count(emu, "GET", "/content") == 1
        await reg.job_store.aclose()


async def test_jobs_shared_through_redis_resume_from_another_store_instance(emu: Emulator) -> None:
    url = os.environ.get("FORGE_TEST_REDIS_URL")
    if not url:
        pytest.skip(no_redis_reason())
    prefix = f"forge-test-{os.getpid()}-{id(emu)}"
    async with Registry(emu.config()) as host_a, Registry(emu.config()) as host_b:
        host_a.job_store = RedisJobStore(url, prefix=prefix)
        host_b.job_store = RedisJobStore(url, prefix=prefix)
        job = await host_a.batch_submit(MODELS["google"], ["a", "b"])
        results = await host_b.batch_resume(job.id, poll=FAST_POLL)
        assert [t.split("You said: ")[-1] for t in _texts(results)] == ["a", "b"]
        await host_a.job_store.aclose()
        await host_b.job_store.aclose()


# ---------------------------------------------------------------------- concurrent mode


async def test_concurrent_mode_under_enforced_limits_draws_no_429(emu: Emulator, tmp_path: Path) -> None:
    limits = {"requests_per_minute": 1200, "tokens_per_minute": 120_000}
    emu.set_limits("openai", **limits)
    config = emu.config()
    config["providers"]["openai"]["rate_limit"] = dict(limits)  # type: ignore[index]
    async with Registry(config) as r:
        results = await r.batch_invoke(MODELS["openai"], [f"p{i}" for i in range(40)], mode="concurrent",
                                       max_concurrent=40, max_tokens=32)
    assert all(isinstance(x, Response) for x in results)
    assert [x.status for x in emu.requests].count(429) == 0
    assert [t.split("You said: ")[-1] for t in _texts(results)] == [f"p{i}" for i in range(40)]


async def test_concurrent_mode_retries_items_and_keeps_failures_per_item(emu: Emulator, reg: Registry) -> None:
    emu.script(Fault.server_error(503), when=lambda r: "flaky" in json.dumps(r.body))
    emu.script(Fault.status(400, "never"), when=lambda r: "broken" in json.dumps(r.body), times=None)
    results = await reg.batch_invoke(MODELS["anthropic"], ["ok", "flaky", "broken"], mode="concurrent")
    assert isinstance(results[0], Response) and isinstance(results[2], BadRequestError)
    assert isinstance(results[1], Response) and results[1].attempts == 2
    assert not isinstance(results[1], ServerError)


async def test_cancelling_concurrent_mode_closes_every_connection(emu: Emulator, reg: Registry) -> None:
    emu.script(Fault.hang(), path="/v1/chat/completions", times=None)
    seen: list[int] = []
    task = asyncio.ensure_future(reg.batch_invoke(MODELS["openai"], [f"p{i}" for i in range(20)],
                                                  mode="concurrent", max_concurrent=5,
                                                  on_progress=lambda p: seen.append(p.in_flight)))
    while len([r for r in emu.requests if r.path == "/v1/chat/completions"]) < 5:  # noqa: ASYNC110
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await emu.wait_connections(0)
    assert len([r for r in emu.requests if r.path == "/v1/chat/completions"]) == 5
