"""The emulator's batch endpoints (OpenAI files + batches, Anthropic message batches, Gemini batch
mode), driven by the official clients: shapes they parse, the processing delay on the injected clock,
per-item failures and cancellation."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import anthropic
import httpx2
import openai
import pytest
import pytest_asyncio
from google import genai
from google.genai import types as gt

from forge.testing import Emulator, Fault, Reply


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest_asyncio.fixture
async def emu(clock: FakeClock) -> AsyncIterator[Emulator]:
    async with Emulator(clock=clock) as e:
        e.set_batch_delay(60.0)
        yield e


@pytest_asyncio.fixture
async def oai(emu: Emulator) -> AsyncIterator[openai.AsyncOpenAI]:
    client = openai.AsyncOpenAI(api_key="k", base_url=emu.url + "/v1", max_retries=0)
    yield client
    await client.close()


@pytest_asyncio.fixture
async def ant(emu: Emulator) -> AsyncIterator[anthropic.AsyncAnthropic]:
    client = anthropic.AsyncAnthropic(api_key="k", base_url=emu.url, max_retries=0)
    yield client
    await client.close()


@pytest_asyncio.fixture
async def gem(emu: Emulator) -> AsyncIterator[Any]:
    http = httpx2.AsyncClient()
    client = genai.Client(api_key="k", http_options=gt.HttpOptions(
        base_url=emu.url, httpx_async_client=http, retry_options=gt.HttpRetryOptions(attempts=1)))
    yield client.aio
    await http.aclose()


def _jsonl(*prompts: str, model: str = "gpt-4o-mini") -> bytes:
    lines = [{"custom_id": f"req-{i}", "method": "POST", "url": "/v1/chat/completions",
              "body": {"model": model, "messages": [{"role": "user", "content": p}]}}
             for i, p in enumerate(prompts)]
    return "\n".join(json.dumps(line) for line in lines).encode()


async def _openai_batch(oai: openai.AsyncOpenAI, *prompts: str) -> Any:
    uploaded = await oai.files.create(file=("in.jsonl", _jsonl(*prompts), "application/jsonl"), purpose="batch")
    return await oai.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions",
                                    completion_window="24h", metadata={"team": "a"})


# ---------------------------------------------------------------------- OpenAI


async def test_openai_upload_round_trips_the_file(oai: openai.AsyncOpenAI) -> None:
    uploaded = await oai.files.create(file=("in.jsonl", _jsonl("a", "b"), "application/jsonl"), purpose="batch")
    assert (uploaded.purpose, uploaded.filename, uploaded.status) == ("batch", "in.jsonl", "processed")
    assert (await oai.files.retrieve(uploaded.id)).bytes == len(_jsonl("a", "b"))
    assert (await oai.files.content(uploaded.id)).content == _jsonl("a", "b")


async def test_openai_batch_runs_after_the_delay_and_writes_output_and_error_files(
    emu: Emulator, oai: openai.AsyncOpenAI, clock: FakeClock
) -> None:
    emu.script(Fault.status(400, "no good"), path="batch:req-1")
    batch = await _openai_batch(oai, "first", "second", "third")
    assert (batch.status, batch.metadata) == ("validating", {"team": "a"})
    clock.now += 59
    assert (await oai.batches.retrieve(batch.id)).status == "in_progress"
    clock.now += 1
    done = await oai.batches.retrieve(batch.id)
    assert done.status == "completed" and done.request_counts is not None
    assert (done.request_counts.total, done.request_counts.completed, done.request_counts.failed) == (3, 2, 1)
    output = [json.loads(x) for x in (await oai.files.content(done.output_file_id or "")).text.splitlines()]
    errors = [json.loads(x) for x in (await oai.files.content(done.error_file_id or "")).text.splitlines()]
    assert [o["custom_id"] for o in output] == ["req-0", "req-2"]
    assert output[0]["response"]["status_code"] == 200
    assert "You said: first" in output[0]["response"]["body"]["choices"][0]["message"]["content"]
    assert errors[0]["custom_id"] == "req-1" and errors[0]["response"]["status_code"] == 400
    assert errors[0]["response"]["body"]["error"]["message"] == "no good"


async def test_openai_reply_rules_shape_batch_answers(emu: Emulator, oai: openai.AsyncOpenAI, clock: FakeClock) -> None:
    emu.script(Reply(text="scripted", output_tokens=7), path="batch:*", times=None)
    batch = await _openai_batch(oai, "x")
    clock.now += 60
    done = await oai.batches.retrieve(batch.id)
    [line] = (await oai.files.content(done.output_file_id or "")).text.splitlines()
    body = json.loads(line)["response"]["body"]
    assert body["choices"][0]["message"]["content"] == "scripted" and body["usage"]["completion_tokens"] == 7


async def test_openai_cancel_ends_the_batch_with_unrun_items_in_the_error_file(
    oai: openai.AsyncOpenAI,
) -> None:
    batch = await _openai_batch(oai, "a", "b")
    cancelling = await oai.batches.cancel(batch.id)
    assert cancelling.status == "cancelling"
    cancelled = await oai.batches.retrieve(batch.id)
    assert cancelled.status == "cancelled" and cancelled.output_file_id is None
    lines = (await oai.files.content(cancelled.error_file_id or "")).text.splitlines()
    assert [json.loads(x)["error"]["code"] for x in lines] == ["batch_cancelled", "batch_cancelled"]


async def test_openai_lists_batches_newest_first_page_by_page(oai: openai.AsyncOpenAI) -> None:
    ids = [(await _openai_batch(oai, "a")).id for _ in range(3)]
    page = await oai.batches.list(limit=2)
    assert [b.id for b in page.data] == ids[::-1][:2] and page.has_more
    assert [b.id async for b in oai.batches.list(limit=2)] == ids[::-1]


async def test_openai_refuses_a_file_with_duplicate_custom_ids(oai: openai.AsyncOpenAI) -> None:
    data = _jsonl("a") + b"\n" + _jsonl("b")
    uploaded = await oai.files.create(file=("in.jsonl", data, "application/jsonl"), purpose="batch")
    with pytest.raises(openai.BadRequestError, match="custom_id"):
        await oai.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions",
                                 completion_window="24h")


async def test_an_unknown_batch_is_a_404(oai: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.NotFoundError):
        await oai.batches.retrieve("batch_nope")


# ---------------------------------------------------------------------- Anthropic


def _requests(*prompts: str) -> list[Any]:
    return [{"custom_id": f"req-{i}", "params": {"model": "claude-haiku-4-5", "max_tokens": 100,
                                                 "messages": [{"role": "user", "content": p}]}}
            for i, p in enumerate(prompts)]


async def test_anthropic_batch_ends_after_the_delay_with_typed_results(
    emu: Emulator, ant: anthropic.AsyncAnthropic, clock: FakeClock
) -> None:
    emu.script(Fault.overloaded(), path="batch:req-0")
    batch = await ant.messages.batches.create(requests=_requests("one", "two"))
    assert batch.processing_status == "in_progress" and batch.request_counts.processing == 2
    with pytest.raises(anthropic.BadRequestError):
        await ant.get(f"/v1/messages/batches/{batch.id}/results", cast_to=object)
    clock.now += 60
    ended = await ant.messages.batches.retrieve(batch.id)
    assert ended.processing_status == "ended" and ended.results_url is not None
    assert (ended.request_counts.succeeded, ended.request_counts.errored) == (1, 1)
    results = {r.custom_id: r.result async for r in await ant.messages.batches.results(batch.id)}
    assert results["req-0"].type == "errored" and results["req-0"].error.error.type == "overloaded_error"
    assert results["req-1"].type == "succeeded"
    assert "You said: two" in results["req-1"].message.content[0].text  # type: ignore[union-attr]


async def test_anthropic_cancel_ends_the_batch_with_canceled_results(ant: anthropic.AsyncAnthropic) -> None:
    batch = await ant.messages.batches.create(requests=_requests("one"))
    canceling = await ant.messages.batches.cancel(batch.id)
    assert canceling.processing_status == "canceling" and canceling.cancel_initiated_at is not None
    ended = await ant.messages.batches.retrieve(batch.id)
    assert ended.processing_status == "ended" and ended.request_counts.canceled == 1
    [result] = [r async for r in await ant.messages.batches.results(batch.id)]
    assert result.result.type == "canceled"


async def test_anthropic_lists_batches_newest_first(ant: anthropic.AsyncAnthropic) -> None:
    ids = [(await ant.messages.batches.create(requests=_requests("x"))).id for _ in range(3)]
    assert [b.id async for b in ant.messages.batches.list(limit=2)] == ids[::-1]


async def test_anthropic_refuses_bad_custom_ids(ant: anthropic.AsyncAnthropic) -> None:
    requests = _requests("a")
    requests[0]["custom_id"] = "has spaces"
    with pytest.raises(anthropic.BadRequestError, match="custom_id"):
        await ant.messages.batches.create(requests=requests)


# ---------------------------------------------------------------------- Gemini


def _inlined(*prompts: str) -> list[gt.InlinedRequest]:
    return [gt.InlinedRequest(contents=p, metadata={"key": f"req-{i}"}) for i, p in enumerate(prompts)]


async def test_gemini_batch_succeeds_after_the_delay_with_inlined_responses(
    emu: Emulator, gem: Any, clock: FakeClock
) -> None:
    emu.script(Fault.status(400), path="batch:req-1")
    job = await gem.batches.create(model="gemini-2.5-flash", src=_inlined("one", "two"),
                                   config={"display_name": "nightly"})
    assert job.name.startswith("batches/") and job.state.value == "JOB_STATE_PENDING"
    assert job.display_name == "nightly"
    assert (await gem.batches.get(name=job.name)).state.value == "JOB_STATE_RUNNING"
    clock.now += 60
    done = await gem.batches.get(name=job.name)
    assert done.state.value == "JOB_STATE_SUCCEEDED"
    first, second = done.dest.inlined_responses
    assert first.metadata == {"key": "req-0"} and "You said: one" in first.response.text
    assert second.error is not None and second.error.code == 3  # google.rpc.Code INVALID_ARGUMENT


async def test_gemini_cancel_and_list(gem: Any) -> None:
    job = await gem.batches.create(model="gemini-2.5-flash", src=_inlined("one"), config={"display_name": "d"})
    await gem.batches.cancel(name=job.name)
    assert (await gem.batches.get(name=job.name)).state.value == "JOB_STATE_CANCELLED"
    assert [j.display_name async for j in await gem.batches.list(config={"page_size": 10})] == ["d"]


async def test_openai_and_gemini_share_the_batches_path_without_mixing(
    oai: openai.AsyncOpenAI, gem: Any
) -> None:
    batch = await _openai_batch(oai, "a")
    job = await gem.batches.create(model="gemini-2.5-flash", src=_inlined("b"))
    assert [b.id async for b in oai.batches.list()] == [batch.id]
    assert [j.name async for j in await gem.batches.list()] == [job.name]


async def test_reset_forgets_batches_and_the_delay(emu: Emulator, oai: openai.AsyncOpenAI) -> None:
    batch = await _openai_batch(oai, "a")
    emu.reset()
    with pytest.raises(openai.NotFoundError):
        await oai.batches.retrieve(batch.id)
    fresh = await _openai_batch(oai, "b")
    assert (await oai.batches.retrieve(fresh.id)).status == "completed"  # no delay after reset


def test_the_batch_delay_must_not_be_negative() -> None:
    with pytest.raises(ValueError):
        Emulator().set_batch_delay(-1)
