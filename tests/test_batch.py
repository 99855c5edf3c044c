"""BatchProcessor: concurrent mode, mode choice, and provider-batch jobs that survive crashes (fakes, fake clock)."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Mapping, Sequence

import pytest

from forge.batch import BATCH_WINDOW_S, BatchProcessor, BatchProgress, PollSchedule
from forge.errors import (
    BadRequestError,
    BatchError,
    ConfigError,
    ForgeError,
    ProviderConnectionError,
    ProviderError,
    ServerError,
)
from forge.jobs import BatchJob, JobState, SQLiteJobStore, encode_request
from forge.llm import LLM
from forge.pricing import cost_usd
from forge.retry import RetryPolicy
from forge.types import BatchStatus, Request, Response, StreamEvent, Usage
from tests.conftest import FakeClock

MODEL = "gpt-4o-mini"  # a priced model, so costs can be compared


class EchoProvider:
    """Answers each prompt with its upper case; scripted failures; counts calls in flight."""

    name = "openai"

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.in_flight = 0
        self.max_in_flight = 0
        self.flaky: set[str] = set()  # fail the first attempt
        self.broken: set[str] = set()  # always fail, not retryable
        self.gate: asyncio.Event | None = None
        self.cancelled = 0
        self.busy = asyncio.Event()  # set when ``busy_at`` calls are in flight
        self.busy_at = 0

    async def complete(self, request: Request) -> Response:
        text = request.messages[-1].content
        self.calls[text] += 1
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        if self.in_flight == self.busy_at:
            self.busy.set()
        try:
            await asyncio.sleep(0)
            if self.gate is not None:
                await self.gate.wait()
            if text in self.broken:
                raise BadRequestError(f"cannot answer {text}", provider=self.name)
            if text in self.flaky and self.calls[text] == 1:
                raise ServerError("flaky", provider=self.name)
            return Response(text.upper(), self.name, request.model, "stop", Usage(4, 2))
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        finally:
            self.in_flight -= 1

    def stream(self, request: Request) -> AsyncIterator[StreamEvent]:
        raise NotImplementedError

    def classify(self, exc: BaseException) -> ForgeError:
        return exc if isinstance(exc, ForgeError) else ProviderError(str(exc), provider=self.name)

    async def aclose(self) -> None:
        pass


class FakeBatchAPI:
    """An in-memory provider batch API: batches finish after ``delay`` seconds of the fake clock."""

    name = "openai"

    def __init__(self, clock: FakeClock, *, delay: float = 30.0) -> None:
        self.clock = clock
        self.delay = delay
        self.batches: dict[str, dict[str, object]] = {}
        self.submits = 0
        self.calls: list[str] = []
        self.lose_submit_response = False
        self.retry_after: float | None = None
        self.before_submit: list[object] = []

    async def submit(self, requests: Sequence[tuple[str, Request]], *, marker: str) -> str:
        self.calls.append("submit")
        self.submits += 1
        batch_id = f"batch_{len(self.batches)}"
        self.batches[batch_id] = {"marker": marker, "items": list(requests), "created": self.clock(),
                                  "cancelled": False}
        if self.lose_submit_response:
            self.lose_submit_response = False
            raise ProviderConnectionError("connection dropped after the batch was created", provider="openai")
        return batch_id

    def _state(self, batch_id: str) -> str:
        b = self.batches[batch_id]
        if b["cancelled"]:
            return "cancelled"
        return "completed" if self.clock() - float(b["created"]) >= self.delay else "running"  # type: ignore[arg-type]

    async def status(self, batch_id: str) -> BatchStatus:
        self.calls.append("status")
        state = self._state(batch_id)
        n = len(self.batches[batch_id]["items"])  # type: ignore[arg-type]
        done = n if state == "completed" else 0
        return BatchStatus(batch_id, state, total=n, succeeded=done, retry_after=self.retry_after)  # type: ignore[arg-type]

    async def results(self, batch_id: str, custom_ids: Sequence[str]) -> Mapping[str, Response | ForgeError]:
        self.calls.append("results")
        if self._state(batch_id) != "completed":
            return {}
        out: dict[str, Response | ForgeError] = {}
        for cid, request in self.batches[batch_id]["items"]:  # type: ignore[attr-defined]
            text = request.messages[-1].content
            if text == "bad":
                out[cid] = BadRequestError("bad item", provider="openai")
            else:
                out[cid] = Response(text.upper(), "openai", request.model, "stop", Usage(4, 2))
        return out

    async def cancel(self, batch_id: str) -> BatchStatus:
        self.calls.append("cancel")
        self.batches[batch_id]["cancelled"] = True
        return await self.status(batch_id)

    async def find(self, marker: str, *, count: int, created_after: float) -> str | None:
        self.calls.append("find")
        for batch_id, b in self.batches.items():
            if b["marker"] == marker:
                return batch_id
        return None


class CrashingStore(SQLiteJobStore):
    """A store whose process "dies" right after the provider accepted the batch."""

    async def update(self, job_id: str, **kwargs: object) -> bool:
        if kwargs.get("state") == "submitted":
            raise KeyboardInterrupt("process killed")
        return await super().update(job_id, **kwargs)  # type: ignore[arg-type]


@pytest.fixture
def provider() -> EchoProvider:
    return EchoProvider()


@pytest.fixture
def llm(provider: EchoProvider, clock: FakeClock) -> LLM:
    return LLM(provider, MODEL, clock=clock, sleep=clock.sleep, rng=lambda: 0.5,
               retry=RetryPolicy(max_attempts=3))


@pytest.fixture
def batch_api(clock: FakeClock) -> FakeBatchAPI:
    return FakeBatchAPI(clock)


@pytest.fixture
def store(tmp_path: object) -> SQLiteJobStore:
    return SQLiteJobStore(f"{tmp_path}/jobs.sqlite3")


def processor(llm: LLM, clock: FakeClock, batch_api: FakeBatchAPI | None = None,
              store: SQLiteJobStore | None = None) -> BatchProcessor:
    return BatchProcessor(llm, batch_provider=batch_api, store=store, clock=clock, sleep=clock.sleep,
                          wall=clock, poll=PollSchedule(5.0, 1.5, 60.0))


# ---------------------------------------------------------------------- concurrent


async def test_concurrent_results_keep_input_order_and_one_failure_stays_with_its_item(
    llm: LLM, clock: FakeClock, provider: EchoProvider
) -> None:
    provider.broken = {"c"}
    p = processor(llm, clock)
    results = await p.run(p.requests(["a", "b", "c", "d"], {}), mode="concurrent", max_concurrent=2)
    assert [r.text if isinstance(r, Response) else type(r).__name__ for r in results] == [
        "A", "B", "BadRequestError", "D"]


async def test_concurrent_never_has_more_than_max_concurrent_calls_in_flight(
    llm: LLM, clock: FakeClock, provider: EchoProvider
) -> None:
    p = processor(llm, clock)
    await p.run_concurrent(p.requests([f"p{i}" for i in range(50)], {}), max_concurrent=7)
    assert provider.max_in_flight == 7
    assert sum(provider.calls.values()) == 50


async def test_concurrent_retries_a_failing_item_with_the_batch_policy(
    llm: LLM, clock: FakeClock, provider: EchoProvider
) -> None:
    provider.flaky = {"b"}
    p = processor(llm, clock)
    results = await p.run_concurrent(p.requests(["a", "b"], {}))
    assert isinstance(results[1], Response) and results[1].text == "B" and results[1].attempts == 2
    assert provider.calls["b"] == 2


async def test_concurrent_results_carry_their_cost(llm: LLM, clock: FakeClock) -> None:
    p = processor(llm, clock)
    [result] = await p.run_concurrent(p.requests(["a"], {}))
    assert isinstance(result, Response)
    assert result.cost_usd == pytest.approx(cost_usd("openai", MODEL, Usage(4, 2)))


async def test_progress_counts_done_failed_in_flight_tokens_and_cost(
    llm: LLM, clock: FakeClock, provider: EchoProvider
) -> None:
    provider.broken = {"x"}
    seen: list[BatchProgress] = []
    p = processor(llm, clock)
    await p.run_concurrent(p.requests(["a", "x", "b"], {}), max_concurrent=3, on_progress=seen.append)
    first, last = seen[0], seen[-1]
    assert (first.total, first.finished, first.pending) == (3, 0, 3)
    assert (last.done, last.failed, last.in_flight) == (2, 1, 0)
    assert (last.input_tokens, last.output_tokens) == (8, 4)
    assert last.cost_usd == pytest.approx(2 * cost_usd("openai", MODEL, Usage(4, 2)))  # type: ignore[operator]
    assert max(s.in_flight for s in seen) >= 1


async def test_an_async_progress_callback_is_awaited(llm: LLM, clock: FakeClock) -> None:
    seen: list[int] = []

    async def on_progress(progress: BatchProgress) -> None:
        await asyncio.sleep(0)
        seen.append(progress.finished)

    p = processor(llm, clock)
    await p.run_concurrent(p.requests(["a", "b"], {}), on_progress=on_progress)
    assert seen[-1] == 2


async def test_cancelling_a_concurrent_batch_cancels_every_call_in_flight(
    llm: LLM, clock: FakeClock, provider: EchoProvider
) -> None:
    provider.gate = asyncio.Event()  # never set: calls hang until cancelled
    provider.busy_at = 4
    p = processor(llm, clock)
    task = asyncio.ensure_future(p.run_concurrent(p.requests([f"p{i}" for i in range(10)], {}), max_concurrent=4))
    await provider.busy.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert (provider.in_flight, provider.cancelled) == (0, 4)
    assert sum(provider.calls.values()) == 4  # nothing else was started


async def test_a_raising_progress_callback_stops_the_batch_and_surfaces(llm: LLM, clock: FakeClock) -> None:
    def on_progress(progress: BatchProgress) -> None:
        if progress.finished:
            raise RuntimeError("callback bug")

    p = processor(llm, clock)
    with pytest.raises(RuntimeError, match="callback bug"):
        await p.run_concurrent(p.requests(["a", "b", "c"], {}), on_progress=on_progress)


async def test_items_given_as_errors_are_returned_without_being_sent(
    llm: LLM, clock: FakeClock, provider: EchoProvider
) -> None:
    p = processor(llm, clock)
    bad = BadRequestError("line 2 is not JSON")
    results = await p.run_concurrent([*p.requests(["a"], {}), bad])
    assert results[1] is bad and sum(provider.calls.values()) == 1


def test_invalid_prompts_are_refused_before_anything_is_sent(llm: LLM, clock: FakeClock) -> None:
    with pytest.raises(ValueError, match=r"prompts\[1\]"):
        processor(llm, clock).requests(["ok", []], {})


# ---------------------------------------------------------------------- mode choice


def test_auto_uses_the_batch_api_when_the_caller_can_wait(
    llm: LLM, clock: FakeClock, batch_api: FakeBatchAPI
) -> None:
    with_api = processor(llm, clock, batch_api)
    assert with_api.choose_mode("auto", None) == "batch_api"
    assert with_api.choose_mode("auto", BATCH_WINDOW_S) == "batch_api"
    assert with_api.choose_mode("auto", 600) == "concurrent"
    assert processor(llm, clock).choose_mode("auto", None) == "concurrent"


def test_batch_api_mode_without_a_batch_api_is_a_config_error(llm: LLM, clock: FakeClock) -> None:
    with pytest.raises(ConfigError, match="no batch API"):
        processor(llm, clock).choose_mode("batch_api", None)


def test_poll_schedule_backs_off_and_never_polls_earlier_than_asked() -> None:
    schedule = PollSchedule(5.0, 1.5, 20.0)
    assert [schedule.wait(n) for n in range(1, 6)] == [5.0, 7.5, 11.25, 16.875, 20.0]
    assert schedule.wait(1, hint=10.0) == 10.0


# ---------------------------------------------------------------------- provider batches


async def test_batch_api_results_come_back_in_order_at_half_the_cost(
    llm: LLM, clock: FakeClock, batch_api: FakeBatchAPI, store: SQLiteJobStore
) -> None:
    p = processor(llm, clock, batch_api, store)
    results = await p.run(p.requests(["a", "bad", "c"], {}), mode="batch_api")
    assert isinstance(results[0], Response) and results[0].text == "A"
    assert isinstance(results[1], BadRequestError) and results[1].model == MODEL
    assert isinstance(results[2], Response) and results[2].text == "C"
    full = cost_usd("openai", MODEL, Usage(4, 2))
    assert results[0].cost_usd == pytest.approx(full / 2)  # type: ignore[operator]


async def test_polling_backs_off_on_the_injected_clock(
    llm: LLM, clock: FakeClock, batch_api: FakeBatchAPI, store: SQLiteJobStore
) -> None:
    p = processor(llm, clock, batch_api, store)
    await p.run(p.requests(["a"], {}), mode="batch_api")
    assert clock.sleeps == [5.0, 7.5, 11.25, 16.875]  # 40.6 s >= the 30 s the batch takes
    assert batch_api.calls.count("status") == 5


async def test_polling_honours_the_servers_retry_after(
    llm: LLM, clock: FakeClock, batch_api: FakeBatchAPI, store: SQLiteJobStore
) -> None:
    batch_api.retry_after = 10.0
    p = processor(llm, clock, batch_api, store)
    await p.run(p.requests(["a"], {}), mode="batch_api")
    assert clock.sleeps[:2] == [10.0, 10.0]


async def test_the_job_is_recorded_before_the_provider_sees_it(
    llm: LLM, clock: FakeClock, batch_api: FakeBatchAPI, store: SQLiteJobStore
) -> None:
    recorded: list[JobState] = []
    real_submit = batch_api.submit

    async def submit(requests: Sequence[tuple[str, Request]], *, marker: str) -> str:
        job = await store.get(marker)
        recorded.append(job.state if job else "missing")  # type: ignore[arg-type]
        assert [r for _, r in requests] == [r for r in p.requests(["a", "b"], {})]
        return await real_submit(requests, marker=marker)

    batch_api.submit = submit  # type: ignore[method-assign]
    p = processor(llm, clock, batch_api, store)
    job = await p.submit(p.requests(["a", "b"], {}))
    assert recorded == ["submitting"]
    assert (await store.get(job.id)) == job and job.state == "submitted" and job.batch_id == "batch_0"


async def test_a_crash_right_after_submission_resumes_without_a_second_batch(
    llm: LLM, clock: FakeClock, batch_api: FakeBatchAPI, tmp_path: object
) -> None:
    path = f"{tmp_path}/jobs.sqlite3"
    crashing = processor(llm, clock, batch_api, CrashingStore(path))
    with pytest.raises(KeyboardInterrupt):
        await crashing.submit(crashing.requests(["a", "b"], {}))
    fresh = SQLiteJobStore(path)  # the next process
    [job] = await fresh.list()
    assert job.state == "submitting" and job.batch_id is None
    results = await processor(llm, clock, batch_api, fresh).resume(job)
    assert batch_api.submits == 1
    assert [r.text for r in results if isinstance(r, Response)] == ["A", "B"]
    resumed = await fresh.get(job.id)
    assert resumed is not None and resumed.batch_id == "batch_0" and resumed.state == "completed"


async def test_a_job_recorded_but_never_submitted_is_submitted_once_on_resume(
    llm: LLM, clock: FakeClock, batch_api: FakeBatchAPI, store: SQLiteJobStore
) -> None:
    p = processor(llm, clock, batch_api, store)
    requests = p.requests(["a", "b"], {})
    job = BatchJob("fj_0000000000000001", "openai", MODEL, "submitting", 2, clock(), clock())
    await store.create(job, [encode_request(r) for r in requests])  # then the process died
    results = await p.resume(job)
    assert batch_api.submits == 1 and batch_api.calls[0] == "find"
    assert [r.text for r in results if isinstance(r, Response)] == ["A", "B"]


async def test_a_lost_submit_response_is_found_rather_than_submitted_again(
    llm: LLM, clock: FakeClock, batch_api: FakeBatchAPI, store: SQLiteJobStore
) -> None:
    batch_api.lose_submit_response = True
    p = processor(llm, clock, batch_api, store)
    job = await p.submit(p.requests(["a"], {}))
    assert batch_api.submits == 1 and job.batch_id == "batch_0"


async def test_a_failed_submission_that_never_arrived_is_retried(
    llm: LLM, clock: FakeClock, batch_api: FakeBatchAPI, store: SQLiteJobStore
) -> None:
    real_submit = batch_api.submit
    failures = [ServerError("503", provider="openai")]

    async def submit(requests: Sequence[tuple[str, Request]], *, marker: str) -> str:
        if failures:
            raise failures.pop()
        return await real_submit(requests, marker=marker)

    batch_api.submit = submit  # type: ignore[method-assign]
    p = processor(llm, clock, batch_api, store)
    job = await p.submit(p.requests(["a"], {}))
    assert job.batch_id == "batch_0" and batch_api.calls == ["find", "submit"]


async def test_resuming_a_finished_job_reads_the_store_and_calls_nobody(
    llm: LLM, clock: FakeClock, batch_api: FakeBatchAPI, store: SQLiteJobStore
) -> None:
    p = processor(llm, clock, batch_api, store)
    first = await p.run(p.requests(["a", "bad"], {}), mode="batch_api")
    [job] = await store.list()
    batch_api.calls.clear()
    again = await processor(llm, clock, batch_api, store).resume(job)
    assert batch_api.calls == []
    assert again[0] == first[0] and isinstance(again[1], BadRequestError)


async def test_max_wait_cancels_the_provider_batch_and_returns_cancelled_items(
    llm: LLM, clock: FakeClock, batch_api: FakeBatchAPI, store: SQLiteJobStore
) -> None:
    batch_api.delay = 1e9
    p = processor(llm, clock, batch_api, store)
    results = await p.run(p.requests(["a", "b"], {}), mode="batch_api", max_wait=20.0)
    assert "cancel" in batch_api.calls
    assert all(isinstance(r, BatchError) and r.code == "cancelled" for r in results)
    assert sum(clock.sleeps) == pytest.approx(20.0)
    [job] = await store.list()
    assert job.state == "cancelled"


async def test_cancelling_a_job_that_never_reached_the_provider_ends_it_for_good(
    llm: LLM, clock: FakeClock, batch_api: FakeBatchAPI, store: SQLiteJobStore
) -> None:
    p = processor(llm, clock, batch_api, store)
    job = BatchJob("fj_0000000000000002", "openai", MODEL, "submitting", 1, clock(), clock())
    await store.create(job, [encode_request(p.requests(["a"], {})[0])])
    cancelled = await p.cancel(job)
    assert cancelled.state == "cancelled"
    [result] = await p.resume(cancelled)
    assert isinstance(result, BatchError) and result.code == "cancelled" and batch_api.submits == 0


async def test_a_duplicate_batch_from_a_racing_process_is_cancelled(
    llm: LLM, clock: FakeClock, batch_api: FakeBatchAPI, store: SQLiteJobStore
) -> None:
    p = processor(llm, clock, batch_api, store)
    job = BatchJob("fj_0000000000000003", "openai", MODEL, "submitting", 1, clock(), clock())
    await store.create(job, [encode_request(p.requests(["a"], {})[0])])
    # Another host recorded its batch for this job a moment ago.
    await store.update(job.id, state="submitted", batch_id="batch_other", expect_state="submitting", now=1.0)
    mine = await batch_api.submit([("x", p.requests(["a"], {})[0])], marker=job.id)
    recorded = await p._record_batch_id(job, mine, batch_api)  # what our submission does next
    assert recorded.batch_id == "batch_other"
    assert batch_api.calls[:2] == ["submit", "cancel"] and batch_api.batches[mine]["cancelled"]
