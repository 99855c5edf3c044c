"""Shared fixtures: a scripted in-memory provider and a fake clock (no wall-clock waits)."""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field

import pytest

from forge.errors import ForgeError, ProviderError
from forge.llm import LLM
from forge.retry import RetryPolicy
from forge.types import Provider, Request, Response, StreamEvent, Usage
from tests._services import ci_problems, in_ci


def pytest_sessionstart(session: pytest.Session) -> None:
    """In CI, a missing Redis or missing real recordings fail the run instead of skipping tests."""
    if in_ci() and (problems := ci_problems()):
        raise pytest.UsageError("CI is set, so nothing may be skipped for lack of a service:\n  "
                                + "\n  ".join(problems))


class FakeClock:
    """A clock that moves only when told; ``sleep`` advances it instead of waiting."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@dataclass
class Step:
    """One scripted stream step: an event to yield, an error to raise, or time to pass first."""

    event: StreamEvent | None = None
    error: BaseException | None = None
    advance: float = 0.0


@dataclass
class FakeProvider:
    """A Provider whose replies are scripted; records requests and whether streams were closed."""

    name: str = "fake"
    clock: FakeClock | None = None
    streams: list[list[Step]] = field(default_factory=list)
    completes: list[Response | BaseException] = field(default_factory=list)
    requests: list[Request] = field(default_factory=list)
    closed_streams: int = 0
    opened_streams: int = 0

    async def complete(self, request: Request) -> Response:
        self.requests.append(request)
        item = self.completes.pop(0)
        if isinstance(item, BaseException):
            raise item
        return item

    async def stream(self, request: Request) -> AsyncIterator[StreamEvent]:
        self.requests.append(request)
        steps = self.streams.pop(0)
        self.opened_streams += 1
        try:
            for step in steps:
                if step.advance and self.clock is not None:
                    self.clock.advance(step.advance)
                if step.error is not None:
                    raise step.error
                if step.event is not None:
                    yield step.event
        finally:
            self.closed_streams += 1

    def classify(self, exc: BaseException) -> ForgeError:
        if isinstance(exc, ForgeError):
            return exc
        return ProviderError(f"fake failure: {exc}", provider=self.name)

    async def aclose(self) -> None:
        pass


def text_steps(*pieces: str, usage: Usage | None = None, finish: str = "stop") -> list[Step]:
    steps = [Step(StreamEvent("text", p)) for p in pieces]
    steps.append(Step(StreamEvent("usage", usage=usage or Usage(3, len(pieces)))))
    steps.append(Step(StreamEvent("finish", finish_reason=finish)))  # type: ignore[arg-type]
    return steps


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def fake(clock: FakeClock) -> FakeProvider:
    return FakeProvider(clock=clock)


@pytest.fixture
def make_llm(fake: FakeProvider, clock: FakeClock) -> Callable[..., LLM]:
    def build(**kwargs: object) -> LLM:
        provider: Provider = fake
        return LLM(
            provider,
            "fake-model",
            clock=clock,
            sleep=clock.sleep,
            rng=lambda: 0.5,
            retry=kwargs.pop("retry", RetryPolicy(max_attempts=3)),  # type: ignore[arg-type]
            **kwargs,  # type: ignore[arg-type]
        )

    return build


class _AsyncioErrors(logging.Handler):
    """Collects what asyncio's default exception handler logs (it logs on the ``asyncio`` logger)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture(autouse=True)
def fail_on_asyncio_errors() -> Iterator[None]:
    """Fail any test during which asyncio reported an error through the loop's exception handler.

    "Task exception was never retrieved", "aclose(): asynchronous generator is
    already running", an exception in a callback: asyncio only logs these, so
    without this fixture they pass silently. Tasks and generators dropped by the
    test are collected before checking, so what their finalizers report counts.
    """
    handler = _AsyncioErrors()
    logger = logging.getLogger("asyncio")
    logger.addHandler(handler)
    try:
        yield
        gc.collect(0)  # the young generation: cheap, and where a test's dropped tasks are
    finally:
        logger.removeHandler(handler)
    if handler.records:
        reports = "\n".join(
            record.getMessage() + (f": {record.exc_info[1]!r}" if record.exc_info else "")
            for record in handler.records
        )
        pytest.fail(f"asyncio reported errors during this test:\n{reports}", pytrace=False)
