"""The emulator bills prompt caching the way each vendor does, seen through the official clients."""

from __future__ import annotations

import anthropic
import httpx2
import ollama
import openai
import pytest
from google import genai
from google.genai import errors as genai_errors
from google.genai import types as gt

from forge.testing import Emulator, Reply
from tests.conftest import FakeClock

SYSTEM = "You are a careful assistant. " * 700  # 20,300 chars
T = 5075  # its emulator tokens (4 characters each)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def emu(clock: FakeClock) -> Emulator:
    async with Emulator(clock=clock, chunk_count=2) as e:
        yield e  # type: ignore[misc]


# ---------------------------------------------------------------------- OpenAI


async def _openai(emu: Emulator, system: str, user: str, **kw: object) -> openai.types.CompletionUsage:
    async with openai.AsyncOpenAI(api_key="k", base_url=emu.url + "/v1", max_retries=0) as client:
        r = await client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "system", "content": system},
                                           {"role": "user", "content": user}], **kw)  # type: ignore[call-overload]
    assert r.usage is not None
    return r.usage


async def test_openai_caches_repeated_prefixes_in_128_token_steps(emu: Emulator) -> None:
    first = await _openai(emu, SYSTEM, "question one")
    second = await _openai(emu, SYSTEM, "question two")
    assert first.prompt_tokens_details.cached_tokens == 0  # type: ignore[union-attr]
    cached = second.prompt_tokens_details.cached_tokens  # type: ignore[union-attr]
    # The common prefix is the system prompt (+ "question "): the last full 128-token step under it.
    assert cached == 1024 + 128 * ((T - 1024) // 128) == 4992
    assert second.prompt_tokens == first.prompt_tokens


async def test_openai_does_not_cache_prompts_under_1024_tokens(emu: Emulator) -> None:
    short = "Be terse. " * 300  # 750 tokens
    await _openai(emu, short, "q")
    assert (await _openai(emu, short, "q")).prompt_tokens_details.cached_tokens == 0  # type: ignore[union-attr]


async def test_openai_cache_expires_after_ten_idle_minutes(emu: Emulator, clock: FakeClock) -> None:
    await _openai(emu, SYSTEM, "q")
    clock.advance(599)
    assert (await _openai(emu, SYSTEM, "q")).prompt_tokens_details.cached_tokens > 0  # type: ignore[union-attr]
    clock.advance(601)
    assert (await _openai(emu, SYSTEM, "q")).prompt_tokens_details.cached_tokens == 0  # type: ignore[union-attr]


async def test_openai_prompt_cache_key_separates_caches(emu: Emulator) -> None:
    await _openai(emu, SYSTEM, "q", prompt_cache_key="a")
    other = await _openai(emu, SYSTEM, "q", prompt_cache_key="b")
    same = await _openai(emu, SYSTEM, "q", prompt_cache_key="a")
    assert other.prompt_tokens_details.cached_tokens == 0  # type: ignore[union-attr]
    assert same.prompt_tokens_details.cached_tokens > 0  # type: ignore[union-attr]


async def test_openai_tool_order_is_part_of_the_prefix(emu: Emulator) -> None:
    tools = [{"type": "function", "function": {"name": n, "parameters": {"type": "object"}}} for n in "ab"]
    await _openai(emu, SYSTEM, "q", tools=tools)
    swapped = await _openai(emu, SYSTEM, "q", tools=tools[::-1])
    assert swapped.prompt_tokens_details.cached_tokens == 0  # type: ignore[union-attr]


async def test_scripted_cache_counts_still_win(emu: Emulator) -> None:
    emu.script(Reply(text="x", cached_tokens=7), provider="openai")
    assert (await _openai(emu, "s", "q")).prompt_tokens_details.cached_tokens == 7  # type: ignore[union-attr]


# ---------------------------------------------------------------------- Anthropic


async def _anthropic(emu: Emulator, system: object, user: str = "q", model: str = "claude-sonnet-4-6",
                     **kw: object) -> anthropic.types.Usage:
    async with anthropic.AsyncAnthropic(api_key="k", base_url=emu.url, max_retries=0) as client:
        r = await client.messages.create(model=model, max_tokens=20, system=system,  # type: ignore[arg-type]
                                         messages=[{"role": "user", "content": user}], **kw)  # type: ignore[call-overload]
    return r.usage


def cached_system(ttl: str | None = None) -> list[dict[str, object]]:
    control: dict[str, object] = {"type": "ephemeral", **({"ttl": ttl} if ttl else {})}
    return [{"type": "text", "text": SYSTEM, "cache_control": control}]


async def test_anthropic_writes_then_reads_at_a_breakpoint(emu: Emulator) -> None:
    first = await _anthropic(emu, cached_system(), "question one")
    second = await _anthropic(emu, cached_system(), "question two")
    assert (first.cache_creation_input_tokens, first.cache_read_input_tokens) == (T, 0)
    assert (second.cache_creation_input_tokens, second.cache_read_input_tokens) == (0, T)
    assert second.input_tokens == 3  # the rest: ceil((20,300 + 12) / 4) - T
    assert first.cache_creation is not None and first.cache_creation.ephemeral_5m_input_tokens == T


async def test_anthropic_without_cache_control_caches_nothing(emu: Emulator) -> None:
    await _anthropic(emu, SYSTEM)
    usage = await _anthropic(emu, SYSTEM)
    assert (usage.cache_creation_input_tokens, usage.cache_read_input_tokens) == (0, 0)


async def test_anthropic_five_minute_entries_expire_and_reads_refresh_them(
    emu: Emulator, clock: FakeClock
) -> None:
    await _anthropic(emu, cached_system())
    clock.advance(290)
    assert (await _anthropic(emu, cached_system())).cache_read_input_tokens == T  # refreshed here
    clock.advance(290)
    assert (await _anthropic(emu, cached_system())).cache_read_input_tokens == T
    clock.advance(301)
    usage = await _anthropic(emu, cached_system())
    assert (usage.cache_creation_input_tokens, usage.cache_read_input_tokens) == (T, 0)


async def test_anthropic_one_hour_ttl(emu: Emulator, clock: FakeClock) -> None:
    first = await _anthropic(emu, cached_system("1h"))
    assert first.cache_creation is not None and first.cache_creation.ephemeral_1h_input_tokens == T
    clock.advance(3000)
    assert (await _anthropic(emu, cached_system("1h"))).cache_read_input_tokens == T


async def test_anthropic_prefix_below_the_minimum_is_not_cached(emu: Emulator) -> None:
    small = [{"type": "text", "text": "Be terse. " * 300, "cache_control": {"type": "ephemeral"}}]  # 750
    await _anthropic(emu, small)
    usage = await _anthropic(emu, small)
    assert (usage.cache_creation_input_tokens, usage.cache_read_input_tokens) == (0, 0)


async def test_anthropic_sonnet_4_6_caches_from_the_documented_1024_tokens(emu: Emulator) -> None:
    # Anthropic documents 1,024 for Sonnet 4.6; forge's optimizer assumes 2,048 (vendor_facts.py).
    prefix = [{"type": "text", "text": "Be terse. " * 600, "cache_control": {"type": "ephemeral"}}]  # 1,500
    await _anthropic(emu, prefix)
    assert (await _anthropic(emu, prefix)).cache_read_input_tokens == 1500


async def test_anthropic_minimum_depends_on_the_model(emu: Emulator) -> None:
    medium = [{"type": "text", "text": "word " * 2400, "cache_control": {"type": "ephemeral"}}]  # 3,000
    assert (await _anthropic(emu, medium, model="claude-haiku-4-5")).cache_creation_input_tokens == 0
    assert (await _anthropic(emu, medium, model="claude-sonnet-4-6")).cache_creation_input_tokens == 3000


async def test_anthropic_rejects_more_than_four_breakpoints(emu: Emulator) -> None:
    blocks = [{"type": "text", "text": f"part {i}", "cache_control": {"type": "ephemeral"}} for i in range(5)]
    with pytest.raises(anthropic.BadRequestError, match="A maximum of 4 blocks with cache_control"):
        await _anthropic(emu, blocks)


async def test_anthropic_top_level_cache_control_marks_the_last_block(emu: Emulator) -> None:
    await _anthropic(emu, SYSTEM, extra_body={"cache_control": {"type": "ephemeral"}})
    usage = await _anthropic(emu, SYSTEM, extra_body={"cache_control": {"type": "ephemeral"}})
    assert usage.cache_read_input_tokens == T + 1  # the whole prompt, "q" included


# ---------------------------------------------------------------------- Gemini


def gemini(emu: Emulator) -> tuple[genai.Client, httpx2.AsyncClient]:
    http = httpx2.AsyncClient()
    client = genai.Client(api_key="k", http_options=gt.HttpOptions(
        base_url=emu.url, httpx_async_client=http, retry_options=gt.HttpRetryOptions(attempts=1)))
    return client, http


async def test_gemini_cached_contents_lifecycle_and_usage(emu: Emulator, clock: FakeClock) -> None:
    client, http = gemini(emu)
    try:
        cache = await client.aio.caches.create(model="gemini-2.5-flash", config=gt.CreateCachedContentConfig(
            system_instruction=SYSTEM, ttl="300s", display_name="handbook"))
        assert cache.name and cache.name.startswith("cachedContents/")
        assert cache.usage_metadata is not None and cache.usage_metadata.total_token_count == T
        assert (await client.aio.caches.get(name=cache.name)).display_name == "handbook"
        r = await client.aio.models.generate_content(
            model="gemini-2.5-flash", contents="What is the leave policy?",
            config=gt.GenerateContentConfig(cached_content=cache.name))
        assert r.usage_metadata is not None
        assert r.usage_metadata.cached_content_token_count == T
        assert r.usage_metadata.prompt_token_count == T + 7
        await client.aio.caches.update(name=cache.name, config=gt.UpdateCachedContentConfig(ttl="900s"))
        clock.advance(600)
        await client.aio.caches.get(name=cache.name)  # still alive: the TTL was extended
        await client.aio.caches.delete(name=cache.name)
        with pytest.raises(genai_errors.ClientError) as info:
            await client.aio.models.generate_content(
                model="gemini-2.5-flash", contents="q", config=gt.GenerateContentConfig(cached_content=cache.name))
        assert info.value.code == 403 and "CachedContent not found" in str(info.value)
    finally:
        await http.aclose()


async def test_gemini_expired_cache_is_not_found(emu: Emulator, clock: FakeClock) -> None:
    client, http = gemini(emu)
    try:
        cache = await client.aio.caches.create(model="gemini-2.5-flash", config=gt.CreateCachedContentConfig(
            system_instruction=SYSTEM, ttl="60s"))
        clock.advance(61)
        with pytest.raises(genai_errors.ClientError, match="CachedContent not found"):
            await client.aio.caches.get(name=cache.name or "")
    finally:
        await http.aclose()


async def test_gemini_refuses_small_caches(emu: Emulator) -> None:
    client, http = gemini(emu)
    try:
        with pytest.raises(genai_errors.ClientError, match="Cached content is too small. total_token_count=750, "
                                                           "min_total_token_count=1024"):
            await client.aio.caches.create(model="gemini-2.5-flash", config=gt.CreateCachedContentConfig(
                system_instruction="Be terse. " * 300, ttl="60s"))
    finally:
        await http.aclose()


async def test_gemini_refuses_a_system_instruction_beside_a_cache(emu: Emulator) -> None:
    client, http = gemini(emu)
    try:
        cache = await client.aio.caches.create(model="gemini-2.5-flash", config=gt.CreateCachedContentConfig(
            system_instruction=SYSTEM, ttl="60s"))
        with pytest.raises(genai_errors.ClientError, match="CachedContent can not be used with GenerateContent"):
            await client.aio.models.generate_content(
                model="gemini-2.5-flash", contents="q",
                config=gt.GenerateContentConfig(cached_content=cache.name, system_instruction="other"))
    finally:
        await http.aclose()


# ---------------------------------------------------------------------- Ollama


async def _ollama(emu: Emulator, text: str = "hi", **kw: object) -> ollama.ChatResponse:
    client = ollama.AsyncClient(host=emu.url)
    try:
        return await client.chat(model="llama3", messages=[{"role": "user", "content": text}], **kw)  # type: ignore[call-overload,no-any-return]
    finally:
        await client._client.aclose()


async def test_ollama_loads_the_model_once_while_keep_alive_holds(emu: Emulator, clock: FakeClock) -> None:
    cold = await _ollama(emu)
    warm = await _ollama(emu)
    assert cold.load_duration == 2_500_000_000 and warm.load_duration == 1_000_000
    clock.advance(301)  # Ollama's default keep_alive is 5 minutes
    assert (await _ollama(emu)).load_duration == 2_500_000_000
    await _ollama(emu, keep_alive="1h")
    clock.advance(3000)
    assert (await _ollama(emu)).load_duration == 1_000_000


async def test_ollama_truncates_prompts_longer_than_the_context(emu: Emulator) -> None:
    long = "x" * 4 * 6000  # 6,000 tokens
    assert (await _ollama(emu, long)).prompt_eval_count == 4096
    assert (await _ollama(emu, long, options={"num_ctx": 8192})).prompt_eval_count == 6000
