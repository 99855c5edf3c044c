"""Live tests: forge against the real providers, for people with keys (never in CI, which has none).

Each provider's tests are marked ``live(<provider>)`` and skipped unless its key is set:
``OPENAI_API_KEY``, ``ANTHROPIC_API_KEY``, ``GEMINI_API_KEY`` (or ``GOOGLE_API_KEY``), and
``FORGE_LIVE_OLLAMA=1`` for a local Ollama (``OLLAMA_HOST``, default 127.0.0.1:11434, with the
model pulled). Each uses the provider's cheapest current model; ``FORGE_LIVE_<PROVIDER>_MODEL``
picks another. A run costs a fraction of a cent: short prompts, ``max_tokens`` capped, and the
batch is cancelled right after it is submitted.

``FORGE_LIVE_RECORD=<dir>`` also writes each test's traffic to ``<dir>/<provider>/<test>.yaml``
(credentials scrubbed, as forge cassettes always are). See docs/testing.md, "Live tests".

    python -m pytest -m live tests/live -v
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

import forge
from forge.errors import ConfigError
from forge.jobs import SQLiteJobStore
from forge.testing.cassettes import Cassette, find_secrets, use_cassette

# The cheapest current model of each provider, from the vendors' model pages (December 2026):
# OpenAI gpt-5-nano ($0.05 / $0.40 per MTok, developers.openai.com/api/docs/models/gpt-5-nano),
# Anthropic Claude Haiku 5.5 ($0.10 / $0.50, platform.claude.com/docs/.../models/haiku-5-5),
# Gemini 2.5 Flash-Lite ($0.10 / $0.40; the 2.0 models were retired in June 2026); Ollama runs
# locally for free, so the smallest model that calls tools (qwen2.5:0.5b).
CHEAPEST = {
    "openai": "gpt-5-nano",
    "anthropic": "claude-haiku-5-5",
    "google": "gemini-2.5-flash-lite",
    "ollama": "qwen2.5:0.5b",
}
# gpt-5-nano reasons before it answers, and reasoning tokens count against max_tokens.
MAX_TOKENS = 1000
PROVIDERS = [pytest.param(p, marks=pytest.mark.live(p), id=p) for p in CHEAPEST]
BATCH_PROVIDERS = [pytest.param(p, marks=pytest.mark.live(p), id=p) for p in CHEAPEST if p != "ollama"]

WEATHER = forge.Tool(
    "get_weather",
    "The current weather in a city.",
    {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
)
SUM_SCHEMA = {
    "type": "object",
    "properties": {"answer": {"type": "integer"}},
    "required": ["answer"],
    "additionalProperties": False,
}


def model(provider: str) -> str:
    return f"{provider}:{os.environ.get(f'FORGE_LIVE_{provider.upper()}_MODEL') or CHEAPEST[provider]}"


@contextlib.contextmanager
def _recording(request: pytest.FixtureRequest, provider: str) -> Iterator[Cassette | None]:
    target = os.environ.get("FORGE_LIVE_RECORD")
    if not target:
        yield None
        return
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.originalname).strip("_")
    path = Path(target) / provider / f"{name}.yaml"
    with use_cassette(path, record_mode="all", block_network=False) as cassette:
        yield cassette
    leaks = find_secrets(path)
    assert not leaks, f"{path} holds something key-like, delete it: {leaks}"


@pytest.fixture
async def registry(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[forge.Registry]:
    """A Registry with the usual config (keys from the environment), recording when asked."""
    provider = request.node.callspec.params["provider"]
    with _recording(request, provider) as cassette:
        async with forge.Registry(config=cassette.config() if cassette else None) as reg:
            reg.job_store = SQLiteJobStore(tmp_path / "jobs.sqlite3")  # a throwaway store, not yours
            try:
                yield reg
            finally:
                await reg.job_store.aclose()


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_invoke(registry: forge.Registry, provider: str) -> None:
    reply = await registry.invoke(model(provider), "Reply with the single word: pong", max_tokens=MAX_TOKENS)
    assert "pong" in reply.text.lower()
    assert reply.finish_reason == "stop"
    assert reply.usage.input_tokens > 0 and reply.usage.output_tokens > 0


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_stream(registry: forge.Registry, provider: str) -> None:
    pieces = []
    async with registry.stream(model(provider), "Count from 1 to 5, comma separated.",
                               max_tokens=MAX_TOKENS) as stream:
        async for text in stream:
            pieces.append(text)
    assert "3" in "".join(pieces)
    assert stream.response.text == "".join(pieces)
    assert stream.response.finish_reason == "stop"
    assert stream.response.usage.output_tokens > 0


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_tools(registry: forge.Registry, provider: str) -> None:
    # Ollama has no tool_choice: the prompt has to ask for the call.
    choice = {} if provider == "ollama" else {"tool_choice": "required"}
    reply = await registry.invoke(model(provider), "What is the weather in Paris? Use the get_weather tool.",
                                  tools=[WEATHER], max_tokens=MAX_TOKENS, **choice)
    assert reply.finish_reason == "tool_calls"
    [call] = reply.tool_calls[:1]
    assert call.name == "get_weather"
    assert "paris" in str(call.arguments.get("city", "")).lower()


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_structured_output(registry: forge.Registry, provider: str) -> None:
    reply = await registry.invoke(model(provider), "What is 2 + 3? Answer in JSON.",
                                  response_format=SUM_SCHEMA, max_tokens=MAX_TOKENS)
    assert json.loads(reply.text) == {"answer": 5}


@pytest.mark.parametrize("provider", BATCH_PROVIDERS)
async def test_batch_submit_then_cancel(registry: forge.Registry, provider: str) -> None:
    job = await registry.batch_submit(model(provider), ["Say hi", "Say bye"], max_tokens=50)
    assert job.batch_id and job.count == 2
    await registry.batch_cancel(job.id)  # the provider cancels asynchronously: wait for the batch to end
    results = await registry.batch_resume(job.id, max_wait=600)
    assert len(results) == 2
    final = await registry.batch_job(job.id)
    assert final.state in ("cancelled", "completed")  # a tiny batch may finish before the cancel lands
    if final.state == "cancelled":
        assert any(isinstance(r, forge.BatchError) and r.code == "cancelled" for r in results)


@pytest.mark.live("ollama")
async def test_ollama_has_no_batch_api_and_says_what_to_use(tmp_path: Path) -> None:
    async with forge.Registry() as reg:
        reg.job_store = SQLiteJobStore(tmp_path / "jobs.sqlite3")
        with pytest.raises(ConfigError, match="no batch API"):
            await reg.batch_submit(model("ollama"), ["Say hi"])
        await reg.job_store.aclose()
