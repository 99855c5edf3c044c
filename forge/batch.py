"""Batch processing: provider batch APIs at half price, or rate-aware concurrent calls.

:class:`BatchProcessor` runs many requests for one :class:`~forge.LLM` and
returns one result per input, in input order: the :class:`~forge.Response`,
or the forge error of that item (one failing item never sinks the batch).
Most code uses it through the registry::

    results = await reg.batch_invoke("openai:gpt-4o-mini", prompts, mode="auto")
    job = await reg.batch_submit("anthropic:claude-haiku-4-5", prompts)   # returns at once
    results = await reg.batch_resume(job.id)                               # any process, later

Modes:

- ``batch_api``: the provider's batch API (OpenAI Batch, Anthropic Message
  Batches, Gemini batch mode): half price, results within the provider's
  window (up to 24 hours). The job is recorded in a :class:`~forge.jobs.JobStore`
  first, so it can be resumed from another process.
- ``concurrent``: ordinary calls, at most ``max_concurrent`` in flight, each
  through the provider's rate limiter and retry policy (``retry.batch``).
- ``auto``: the batch API when the provider has one and the caller can wait
  (no ``max_wait``, or one at least the batch completion window); otherwise
  concurrent.

Crash safety of ``batch_api`` jobs (see docs/batch.md):

1. The job (provider, model, every request, its custom ids) is committed to
   the job store, state ``submitting``, before anything is sent.
2. The batch is submitted carrying the job id as a marker (OpenAI batch
   metadata, Gemini display name, and in every custom id).
3. The provider's batch id is committed right after (state ``submitted``).
4. Resuming a ``submitting`` job first asks the provider for a batch with that
   marker; only when there is none is it submitted (it never got there). A
   crash between 2 and 3 therefore never leads to a second batch. The same
   check runs before a failed submission is retried.
5. When the batch is done, every result and the final state are committed in
   one transaction; resuming a finished job reads them from the store.
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, cast

from forge.errors import BatchError, ConfigError, ForgeError, ProviderError
from forge.jobs import (
    BatchJob,
    JobState,
    JobStore,
    decode_request,
    decode_result,
    encode_request,
    encode_result,
)
from forge.pricing import cost_usd
from forge.retry import RetryPolicy, RetryWrapper, backoff_wait
from forge.types import BatchProvider, BatchStatus, Request, Response

if TYPE_CHECKING:
    from forge._params import RequestParams
    from forge.llm import LLM, Prompt

_log = logging.getLogger("forge.batch")

__all__ = [
    "BATCH_WINDOW_S",
    "BatchMode",
    "BatchProcessor",
    "BatchProgress",
    "BatchResult",
    "PollSchedule",
    "ProgressHandler",
    "batch_provider_for",
]

BatchMode = Literal["auto", "batch_api", "concurrent"]
BatchResult = Response | ForgeError
BATCH_WINDOW_S = 24 * 3600.0
"""The completion window every supported batch API promises (24 hours)."""

_BATCH_MODULES = {
    "openai": ("forge.providers.openai_batch", "OpenAIBatch"),
    "anthropic": ("forge.providers.anthropic_batch", "AnthropicBatch"),
    "google": ("forge.providers.google_batch", "GoogleBatch"),
}
# How far before its record a job's provider batch may claim to have been created (clock skew).
_CLOCK_SKEW_S = 300.0


@dataclass(frozen=True, slots=True)
class BatchProgress:
    """A batch's progress, reported to ``on_progress`` as it changes.

    ``done`` items succeeded and ``failed`` ones ended with an error;
    ``in_flight`` are being processed (concurrent calls in flight, or items
    the provider has not finished). Tokens and cost add up the finished
    items; a provider batch reports no tokens while it runs, so for one they are
    0 until its last report, made once its results are in (``state``
    ``completed``, ``cancelled``, ``expired`` or ``failed``). A concurrent batch
    ends with a ``completed`` report too.
    """

    total: int
    done: int = 0
    failed: int = 0
    in_flight: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    elapsed_s: float = 0.0
    mode: Literal["batch_api", "concurrent"] = "concurrent"
    job_id: str | None = None
    state: str = "running"

    @property
    def finished(self) -> int:
        """Items with a result (a reply or an error)."""
        return self.done + self.failed

    @property
    def pending(self) -> int:
        """Items not started yet."""
        return max(0, self.total - self.finished - self.in_flight)


ProgressHandler = Callable[[BatchProgress], "Awaitable[object] | object"]


@dataclass(frozen=True, slots=True)
class PollSchedule:
    """How often a provider batch is polled: ``initial`` seconds, growing by ``factor`` up to ``max``.

    A server's ``retry-after`` on a poll is honoured (never poll earlier than asked).
    """

    initial: float = 5.0
    factor: float = 1.5
    max: float = 60.0

    def wait(self, attempt: int, hint: float | None = None) -> float:
        """Seconds to wait after poll number ``attempt`` (1-based)."""
        policy = RetryPolicy(
            max_attempts=1, initial_wait=self.initial, backoff_factor=self.factor, max_wait=self.max,
            jitter=False,
        )
        wait = backoff_wait(policy, attempt, None, 1.0)
        return max(wait, hint) if hint is not None else wait


def batch_provider_for(provider: object) -> BatchProvider | None:
    """The batch API over an adapter's client (None when its vendor has none)."""
    import importlib

    spec = _BATCH_MODULES.get(getattr(provider, "name", ""))
    if spec is None:
        return None
    module = importlib.import_module(spec[0])
    batch: BatchProvider = getattr(module, spec[1])(provider)
    return batch


def new_job_id() -> str:
    """``fj_`` and 16 random hex digits: short enough to prefix every custom id of a batch."""
    return "fj_" + secrets.token_hex(8)


class BatchProcessor:
    """Runs many requests for one LLM, through its provider's batch API or concurrently.

    Args:
        llm: the model (and its provider, retry policy and rate limiter).
        batch_provider: the provider's batch API (None: concurrent only).
        store: where ``batch_api`` jobs are recorded (None: an in-memory store;
            such jobs cannot be resumed by another process).
        clock, sleep: monotonic time and waiting (tests inject fakes).
        wall: unix time for job records.
        poll: how often a provider batch is polled.
        delete_files: delete the provider's batch input and result files once the results
            are in the store (OpenAI keeps them, and bills their storage, until deleted).
            A failed delete is logged at WARNING and never fails the batch.
    """

    def __init__(
        self,
        llm: LLM,
        *,
        batch_provider: BatchProvider | None = None,
        store: JobStore | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
        wall: Callable[[], float] = time.time,
        poll: PollSchedule | None = None,
        delete_files: bool = True,
    ) -> None:
        self.llm = llm
        self.batch_provider = batch_provider
        self.delete_files = delete_files
        self._owns_store = store is None
        if store is None:
            from forge.jobs import SQLiteJobStore

            store = SQLiteJobStore(":memory:")
        self.store = store
        self._clock = clock
        self._sleep = sleep
        self._wall = wall
        self.poll = poll or PollSchedule()
        # Submissions and polls are retried with the batch policy but never rate limited:
        # batch endpoints have their own limits, apart from the model's requests/min.
        self._calls = RetryWrapper(llm.policy("batch"), sleep=sleep)

    async def aclose(self) -> None:
        """Close the job store this processor opened itself (a store passed in is the caller's)."""
        if self._owns_store:
            self._owns_store = False
            await self.store.aclose()

    async def __aenter__(self) -> BatchProcessor:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    # ------------------------------------------------------------------ entry points

    def choose_mode(self, mode: BatchMode, max_wait: float | None) -> Literal["batch_api", "concurrent"]:
        """The mode ``auto`` resolves to (or ``mode`` itself, checked)."""
        if mode == "concurrent":
            return "concurrent"
        if mode == "batch_api":
            if self.batch_provider is None:
                raise ConfigError(
                    f"{self.llm.provider_name} has no batch API forge can use; run the batch with "
                    "mode='concurrent' (or 'auto').",
                    key="mode",
                )
            return "batch_api"
        if mode != "auto":
            raise ValueError(f"mode must be 'auto', 'batch_api' or 'concurrent', got {mode!r}.")
        if self.batch_provider is not None and (max_wait is None or max_wait >= BATCH_WINDOW_S):
            return "batch_api"
        return "concurrent"

    def requests(self, prompts: Sequence[Prompt | Request], params: Mapping[str, object]) -> list[Request]:
        """Build and validate every request before anything is sent.

        Raises:
            TypeError / ValueError: a bad prompt or parameter (naming its index).
        """
        out: list[Request] = []
        for i, prompt in enumerate(prompts):
            try:
                if isinstance(prompt, Request):
                    out.append(dataclasses.replace(prompt, model=self.llm.model))
                else:
                    out.append(self.llm.request(prompt, **cast("RequestParams", params)))
            except (TypeError, ValueError) as exc:
                # A plain TypeError/ValueError: subclasses (pydantic's, ConfigError) take other arguments.
                kind = TypeError if isinstance(exc, TypeError) else ValueError
                raise kind(f"prompts[{i}]: {exc}") from exc
        return out

    async def run(
        self,
        requests: Sequence[Request | ForgeError],
        *,
        mode: BatchMode = "auto",
        max_concurrent: int = 16,
        on_progress: ProgressHandler | None = None,
        max_wait: float | None = None,
        timeout: float | None = None,  # noqa: ASYNC109  # the per-call option, not a wait
        max_attempts: int | None = None,
    ) -> list[BatchResult]:
        """One result per request, in order. Items given as a ForgeError are returned as such (not sent).

        ``timeout`` and ``max_attempts`` apply to each item's call in concurrent mode
        (see :meth:`forge.LLM.invoke`); a provider batch is bounded by ``max_wait`` instead.
        """
        chosen = self.choose_mode(mode, max_wait)
        if chosen == "concurrent":
            return await self.run_concurrent(
                requests, max_concurrent=max_concurrent, on_progress=on_progress,
                timeout=timeout, max_attempts=max_attempts,
            )
        if timeout is not None or max_attempts is not None:
            raise ValueError(
                "timeout= and max_attempts= apply to each call of a concurrent batch; this batch would "
                "use the provider's batch API: pass mode='concurrent', or bound it with max_wait= instead."
            )
        sendable = [r for r in requests if isinstance(r, Request)]
        if not sendable:
            return list(requests)  # type: ignore[arg-type]  # every item is a ForgeError
        job = await self.submit(sendable)
        results = iter(await self.collect(job, on_progress=on_progress, max_wait=max_wait))
        return [r if isinstance(r, ForgeError) else next(results) for r in requests]

    # ------------------------------------------------------------------ concurrent

    async def run_concurrent(
        self,
        requests: Sequence[Request | ForgeError],
        *,
        max_concurrent: int = 16,
        on_progress: ProgressHandler | None = None,
        timeout: float | None = None,  # noqa: ASYNC109  # the per-call option, not a wait
        max_attempts: int | None = None,
    ) -> list[BatchResult]:
        """Send every request as an ordinary call, at most ``max_concurrent`` at a time.

        ``timeout`` and ``max_attempts`` apply to each call (see :meth:`forge.LLM.invoke`).

        Each call goes through the provider's rate limiter (so configured limits
        are never exceeded) and the ``batch`` retry policy. Cancelling the
        caller cancels every call in flight and waits for them to close.
        """
        if max_concurrent < 1:
            raise ValueError(f"max_concurrent must be >= 1, got {max_concurrent}.")
        self.llm._call_limit(timeout)  # a bad value fails the batch before anything is sent
        self.llm._policy("batch", max_attempts)
        total = len(requests)
        results: list[BatchResult | None] = [r if isinstance(r, ForgeError) else None for r in requests]
        progress = _Tracker(total, self._clock, on_progress, mode="concurrent")
        progress.failed = sum(1 for r in results if r is not None)
        todo = iter([i for i, r in enumerate(requests) if isinstance(r, Request)])
        llm = self.llm

        async def worker() -> None:
            for i in todo:  # workers share one iterator: each index is taken once
                request = requests[i]
                assert isinstance(request, Request)
                progress.in_flight += 1
                try:
                    response = await llm.complete(
                        request, operation="batch", timeout=timeout, max_attempts=max_attempts
                    )
                except Exception as exc:
                    progress.in_flight -= 1
                    results[i] = llm.classify(exc)
                    progress.failed += 1
                else:
                    progress.in_flight -= 1
                    if response.cost_usd is None:
                        price = cost_usd(
                            llm.provider_name, response.model or llm.model, response.usage,
                            overrides=llm.prices,
                        )
                        response = dataclasses.replace(response, cost_usd=price)
                    results[i] = response
                    progress.add(response)
                await progress.report()

        await progress.report()
        tasks = [asyncio.ensure_future(worker()) for _ in range(min(max_concurrent, total))]
        try:
            await asyncio.gather(*tasks)
        except BaseException:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
        progress.state = "completed"
        await progress.report()
        return [r for r in results if r is not None]

    # ------------------------------------------------------------------ batch API

    def _require_batch(self) -> BatchProvider:
        if self.batch_provider is None:
            raise ConfigError(
                f"{self.llm.provider_name} has no batch API forge can use; use mode='concurrent'.", key="mode"
            )
        return self.batch_provider

    async def submit(self, requests: Sequence[Request]) -> BatchJob:
        """Record a job, then submit it to the provider's batch API; returns the submitted job.

        If the process dies at any point, :meth:`resume` finishes the job
        without submitting it twice.
        """
        batch = self._require_batch()
        if not requests:
            raise ValueError("a batch needs at least one request.")
        optimizer = self.llm.optimizer
        if optimizer is not None:  # its synchronous steps: seed, JSON mode, breakpoints (no Gemini caches)
            requests = [optimizer.optimize_request(r) for r in requests]
        encoded = [encode_request(r) for r in requests]  # before recording: unserializable extras fail here
        now = self._wall()
        job = BatchJob(
            id=new_job_id(), provider=self.llm.provider_name, model=self.llm.model, state="submitting",
            count=len(requests), created_at=now, updated_at=now,
        )
        await self.store.create(job, encoded)
        return await self._submit(job, list(requests), batch)

    async def _submit(self, job: BatchJob, requests: list[Request], batch: BatchProvider) -> BatchJob:
        pairs = list(zip(job.custom_ids, requests, strict=True))

        async def attempt() -> str:
            try:
                return await batch.submit(pairs, marker=job.id)
            except ForgeError as exc:
                if not exc.retryable:
                    raise
                # A submission that failed in transit may still have reached the provider:
                # look before the retry sends it again, and do not retry blind.
                try:
                    found = await batch.find(job.id, count=job.count, created_after=self._since(job))
                except ForgeError as lookup:
                    raise BatchError(
                        f"Submitting job {job.id} failed ({exc}) and the provider could not be asked "
                        f"whether it arrived ({lookup}). Resume it later with batch_resume({job.id!r}); "
                        "it will be submitted only if the provider does not have it.",
                        code="ambiguous", job_id=job.id, provider=job.provider, model=job.model,
                    ) from exc
                if found is not None:
                    return found
                raise

        batch_id, _ = await self._calls.call(attempt, classify=self.llm.classify, operation="batch")
        return await self._record_batch_id(job, batch_id, batch)

    @staticmethod
    def _since(job: BatchJob) -> float:
        return job.created_at - _CLOCK_SKEW_S

    async def _find(self, job: BatchJob, batch: BatchProvider) -> str | None:
        found, _ = await self._calls.call(
            lambda: batch.find(job.id, count=job.count, created_after=self._since(job)),
            classify=self.llm.classify, operation="batch",
        )
        return found

    async def _record_batch_id(self, job: BatchJob, batch_id: str, batch: BatchProvider) -> BatchJob:
        now = self._wall()
        if not await self.store.update(
            job.id, state="submitted", batch_id=batch_id, expect_state="submitting", now=now
        ):
            # Another process resumed the same job and recorded its batch first:
            # ours is a duplicate, cancel it before it runs.
            current = await self.store.get(job.id)
            if current is not None and current.batch_id not in (None, batch_id):
                await self._calls.call(lambda: batch.cancel(batch_id), classify=self.llm.classify)
                return current
        return dataclasses.replace(job, state="submitted", batch_id=batch_id, updated_at=now)

    async def resume(
        self,
        job: BatchJob,
        *,
        on_progress: ProgressHandler | None = None,
        max_wait: float | None = None,
    ) -> list[BatchResult]:
        """Finish ``job`` from wherever it stopped and return its results (stored ones if done)."""
        if job.done:
            return await self._stored_results(job)
        batch = self._require_batch()
        if job.batch_id is None:
            found = await self._find(job, batch)
            if found is not None:
                job = await self._record_batch_id(job, found, batch)
            else:
                requests = [decode_request(r) for r in await self.store.requests(job.id)]
                job = await self._submit(job, requests, batch)
        return await self.collect(job, on_progress=on_progress, max_wait=max_wait)

    async def collect(
        self,
        job: BatchJob,
        *,
        on_progress: ProgressHandler | None = None,
        max_wait: float | None = None,
    ) -> list[BatchResult]:
        """Poll a submitted job until its batch is done, then store and return its results.

        With ``max_wait`` (seconds), a batch still running after that long is
        cancelled; items it did not finish come back as ``BatchError("cancelled")``.
        """
        if job.done:
            return await self._stored_results(job)
        batch = self._require_batch()
        batch_id = job.batch_id
        assert batch_id is not None, "collect() needs a submitted job; use resume()"
        progress = _Tracker(job.count, self._clock, on_progress, mode="batch_api", job_id=job.id)
        start = self._clock()
        cancelled = False
        polls = 0
        while True:
            status: BatchStatus
            status, _ = await self._calls.call(
                lambda: batch.status(batch_id), classify=self.llm.classify, operation="batch"
            )
            progress.from_status(status)
            if status.done:
                break  # reported once its results (and their tokens and cost) are in: see _finish
            await progress.report()
            polls += 1
            wait = self.poll.wait(polls, status.retry_after)
            if max_wait is not None and not cancelled:
                left = max_wait - (self._clock() - start)
                if left <= 0:
                    await self._calls.call(
                        lambda: batch.cancel(batch_id), classify=self.llm.classify, operation="batch"
                    )
                    cancelled = True
                    continue
                wait = min(wait, left)
            await self._sleep(wait)
        return await self._finish(job, status, batch, progress)

    async def _finish(
        self, job: BatchJob, status: BatchStatus, batch: BatchProvider, progress: _Tracker
    ) -> list[BatchResult]:
        custom_ids = job.custom_ids
        found: Mapping[str, BatchResult] = {}
        if status.state != "failed":
            found, _ = await self._calls.call(
                lambda: batch.results(status.id, custom_ids), classify=self.llm.classify, operation="batch"
            )
        missing_code = {"cancelled": "cancelled", "expired": "expired", "failed": "batch_failed"}.get(
            status.state, "missing_result"
        )
        results: list[BatchResult] = []
        for custom_id in custom_ids:
            result = found.get(custom_id)
            if result is None:
                reason = f": {status.message}" if status.message else ""
                result = BatchError(
                    f"{job.provider} batch {status.id} ended {status.state} without a result for item "
                    f"{custom_id}{reason}",
                    code=missing_code, job_id=job.id, provider=job.provider, model=job.model,
                )
            elif isinstance(result, Response):
                result = dataclasses.replace(
                    result,
                    model=job.model,
                    cost_usd=cost_usd(
                        job.provider, job.model, result.usage, batch=True, overrides=self.llm.prices
                    ),
                )
            elif isinstance(result, ProviderError) and result.model is None:
                result.model = job.model
            results.append(result)
        state: JobState = {"cancelled": "cancelled", "expired": "expired", "failed": "failed"}.get(
            status.state, "completed"
        )  # type: ignore[assignment]
        await self.store.finish(
            job.id, {i: encode_result(r) for i, r in enumerate(results)}, state=state,
            message=status.message, now=self._wall(),
        )
        await self._delete_files(batch, status.id)
        metrics = self.llm.metrics
        if metrics is not None:
            for result in results:
                if isinstance(result, Response):
                    metrics.record_success(result, batch=True, prices=self.llm.prices)
                else:
                    metrics.record_failure(job.provider, job.model, result)
        progress.settle(results)
        progress.state = state
        await progress.report()
        return results

    async def _delete_files(self, batch: BatchProvider, batch_id: str) -> None:
        """The provider's files of a batch whose results are stored (a provider without any: no-op)."""
        delete = getattr(batch, "delete_files", None)
        if not self.delete_files or delete is None:
            return
        try:
            await delete(batch_id)
        except Exception as exc:  # the results are safe in the store; only storage is at stake
            _log.warning("forge batch: could not delete the files of %s batch %s (%s); they stay "
                         "(and are billed as storage) until deleted by hand", batch.name, batch_id, exc)

    async def _stored_results(self, job: BatchJob) -> list[BatchResult]:
        stored = await self.store.results(job.id)
        out: list[BatchResult] = []
        for i in range(job.count):
            payload = stored.get(i)
            if payload is None:
                out.append(BatchError(
                    f"job {job.id} ended {job.state} without a stored result for item {i}",
                    code="missing_result", job_id=job.id, provider=job.provider, model=job.model,
                ))
            else:
                out.append(decode_result(payload))
        return out

    async def cancel(self, job: BatchJob) -> BatchJob:
        """Cancel the provider's batch of ``job`` (and a job not yet submitted, so it never is).

        The job stays resumable: :meth:`resume` then collects whatever
        finished before the cancellation, the other items as cancelled.
        """
        if job.done:
            return job
        batch = self._require_batch()
        if job.batch_id is None:
            found = await self._find(job, batch)
            if found is None:
                now = self._wall()
                results = {
                    i: encode_result(BatchError(
                        f"job {job.id} was cancelled before it was submitted", code="cancelled",
                        job_id=job.id, provider=job.provider, model=job.model,
                    ))
                    for i in range(job.count)
                }
                await self.store.finish(job.id, results, state="cancelled", message="cancelled", now=now)
                return dataclasses.replace(job, state="cancelled", updated_at=now, message="cancelled")
            job = await self._record_batch_id(job, found, batch)
        batch_id = job.batch_id
        assert batch_id is not None
        await self._calls.call(lambda: batch.cancel(batch_id), classify=self.llm.classify, operation="batch")
        return job

    async def status(self, job: BatchJob) -> BatchStatus | None:
        """The provider's view of the job's batch (None before it was submitted or after it is done)."""
        if job.batch_id is None or job.done:
            return None
        batch = self._require_batch()
        batch_id = job.batch_id
        status, _ = await self._calls.call(
            lambda: batch.status(batch_id), classify=self.llm.classify, operation="batch"
        )
        return status


class _Tracker:
    """Counts for :class:`BatchProgress` and the call to ``on_progress`` (sync or async)."""

    __slots__ = (
        "_callback", "_clock", "_start", "cost", "done", "failed", "in_flight", "input_tokens", "job_id",
        "mode", "output_tokens", "state", "total",
    )

    def __init__(
        self,
        total: int,
        clock: Callable[[], float],
        callback: ProgressHandler | None,
        *,
        mode: Literal["batch_api", "concurrent"],
        job_id: str | None = None,
    ) -> None:
        self.total = total
        self._clock = clock
        self._start = clock()
        self._callback = callback
        self.mode = mode
        self.job_id = job_id
        self.state = "running"
        self.done = 0
        self.failed = 0
        self.in_flight = 0
        self.input_tokens = 0
        self.output_tokens = 0
        self.cost = 0.0

    def add(self, response: Response) -> None:
        self.done += 1
        self.input_tokens += response.usage.input_tokens
        self.output_tokens += response.usage.output_tokens
        self.cost += response.cost_usd or 0.0

    def from_status(self, status: BatchStatus) -> None:
        self.state = status.state
        self.done = status.succeeded
        self.failed = status.failed
        self.in_flight = 0 if status.done else max(0, self.total - status.succeeded - status.failed)

    def settle(self, results: Sequence[BatchResult]) -> None:
        self.done = self.failed = self.in_flight = 0
        self.input_tokens = self.output_tokens = 0
        self.cost = 0.0
        for result in results:
            if isinstance(result, Response):
                self.add(result)
            else:
                self.failed += 1

    def snapshot(self) -> BatchProgress:
        return BatchProgress(
            total=self.total, done=self.done, failed=self.failed, in_flight=self.in_flight,
            input_tokens=self.input_tokens, output_tokens=self.output_tokens, cost_usd=self.cost,
            elapsed_s=self._clock() - self._start, mode=self.mode, job_id=self.job_id, state=self.state,
        )

    async def report(self) -> None:
        if self._callback is None:
            return
        result = self._callback(self.snapshot())
        if inspect.isawaitable(result):
            await result
