"""Several tenants (keys, base URLs) in one process or one Redis: nothing is shared unless configured."""

from __future__ import annotations

import os
import uuid

import pytest

import forge
from forge.cache import MemoryResponseCache, request_key
from forge.config import load_config
from forge.types import Request
from tests.hostile import HostileServer, Reply

REDIS_URL = os.environ.get("FORGE_TEST_REDIS_URL")
needs_redis = pytest.mark.skipif(not REDIS_URL, reason="no Redis: run with `bash scripts/test`")


def chat_reply(text: str) -> Reply:
    return Reply.http(200, {
        "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "gpt-4o-mini",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
    })


def tenant(base_url: str, key: str, **section: object) -> dict[str, object]:
    return {"providers": {"openai": {"api_key": key, "base_url": base_url, "retry": {"max_attempts": 1},
                                     **section}}}


async def ask(cfg: dict[str, object], cache: MemoryResponseCache, prompt: str = "Who am I?") -> forge.Response:
    async with forge.Registry(cfg, response_cache=cache) as reg:
        return await reg.get_llm("openai:gpt-4o-mini", enable_cache=True).invoke(prompt)


async def test_tenants_on_different_servers_do_not_share_cached_replies() -> None:
    cache = MemoryResponseCache()
    async with HostileServer() as a, HostileServer() as b:
        a.push(chat_reply("answer for A"))
        b.push(chat_reply("answer for B"))
        first = await ask(tenant(a.url("/v1"), "sk-tenant-a-0001"), cache)
        second = await ask(tenant(b.url("/v1"), "sk-tenant-b-0002"), cache)
    assert first.text == "answer for A"
    assert second.text == "answer for B" and not second.cached
    assert len(b.requests) == 1


async def test_two_keys_on_one_server_do_not_share_cached_replies() -> None:
    cache = MemoryResponseCache()
    async with HostileServer() as srv:
        srv.push(chat_reply("for key A"), chat_reply("for key B"))
        await ask(tenant(srv.url("/v1"), "sk-tenant-a-0001"), cache)
        second = await ask(tenant(srv.url("/v1"), "sk-tenant-b-0002"), cache)
        again = await ask(tenant(srv.url("/v1"), "sk-tenant-b-0002"), cache)
    assert second.text == "for key B" and not second.cached
    assert again.cached and again.text == "for key B"
    assert [r.headers["authorization"] for r in srv.requests] == [
        "Bearer sk-tenant-a-0001", "Bearer sk-tenant-b-0002"
    ]


async def test_organization_and_project_are_part_of_the_account() -> None:
    cache = MemoryResponseCache()
    async with HostileServer() as srv:
        srv.push(chat_reply("org one"), chat_reply("org two"))
        await ask(tenant(srv.url("/v1"), "sk-shared-key-0001", organization="org-one"), cache)
        second = await ask(tenant(srv.url("/v1"), "sk-shared-key-0001", organization="org-two"), cache)
    assert second.text == "org two" and len(srv.requests) == 2


async def test_shared_cache_scope_is_an_explicit_opt_in() -> None:
    cache = MemoryResponseCache()
    async with HostileServer() as srv, HostileServer() as other:
        srv.push(chat_reply("shared answer"))
        other.push(chat_reply("other server"))
        await ask(tenant(srv.url("/v1"), "sk-tenant-a-0001", cache_scope="shared"), cache)
        second = await ask(tenant(srv.url("/v1"), "sk-tenant-b-0002", cache_scope="shared"), cache)
        third = await ask(tenant(other.url("/v1"), "sk-tenant-b-0002", cache_scope="shared"), cache)
    assert second.cached and second.text == "shared answer"
    assert len(srv.requests) == 1
    assert third.text == "other server"  # shared across keys, never across base URLs


async def test_tenants_on_the_emulator_do_not_share_cached_replies() -> None:
    cache = MemoryResponseCache()
    async with forge.testing.Emulator() as emu:
        base = emu.base_urls["openai"]
        await ask(tenant(base, "sk-tenant-a-0001"), cache)
        await ask(tenant(base, "sk-tenant-b-0002"), cache)
    assert len(emu.requests) == 2


def test_cache_key_holds_no_credential() -> None:
    cfg = load_config(tenant("http://127.0.0.1:1/v1", "sk-secret-never-in-a-key"))
    scope = forge.cache.cache_scope_of(cfg.provider("openai"))
    assert "sk-secret" not in scope and scope.startswith("http://127.0.0.1:1/v1#")
    key = request_key("openai", Request(model="m", messages=()), scope)
    assert "sk-secret" not in key


def test_bad_cache_scope_names_key_value_and_choices() -> None:
    with pytest.raises(forge.ConfigError) as info:
        load_config(tenant("http://127.0.0.1:1/v1", "sk-x", cache_scope="everyone"))
    message = str(info.value)
    assert "providers.openai.cache_scope" in message and "'everyone'" in message
    assert "'credentials'" in message and "'shared'" in message


# --------------------------------------------------------------------------- rate-limit budgets


def redis_limits(**extra: object) -> dict[str, object]:
    return {"requests_per_minute": 120, "backend": "redis", "redis_url": REDIS_URL, **extra}


@needs_redis
async def test_each_key_gets_its_own_redis_budget_by_default() -> None:
    base = f"http://{uuid.uuid4().hex}.invalid/v1"
    a = forge.Registry(tenant(base, "sk-tenant-a-0001", rate_limit=redis_limits()))
    b = forge.Registry(tenant(base, "sk-tenant-b-0002", rate_limit=redis_limits()))
    try:
        la, lb = a.limiter("openai"), b.limiter("openai")
        assert la is not None and lb is not None
        await la.acquire()  # 2 a second, starting half full: one request, then A waits
        assert await la.wait_time() > 0
        assert await lb.wait_time() == 0.0  # B's budget is untouched
        key = la.requests.key  # type: ignore[union-attr]
        assert key.startswith("forge:ratelimit:openai:account:") and "sk-" not in key
    finally:
        await a.aclose()
        await b.aclose()


@needs_redis
async def test_a_named_budget_is_shared_by_every_key_that_names_it() -> None:
    base = f"http://{uuid.uuid4().hex}.invalid/v1"
    name = f"org-{uuid.uuid4().hex[:12]}"
    a = forge.Registry(tenant(base, "sk-tenant-a-0001", rate_limit=redis_limits(budget=name)))
    b = forge.Registry(tenant(base, "sk-tenant-b-0002", rate_limit=redis_limits(budget=name)))
    try:
        la, lb = a.limiter("openai"), b.limiter("openai")
        assert la is not None and lb is not None
        await la.acquire()
        assert await lb.wait_time() > 0  # one organization, one budget
        assert la.requests.key == f"forge:ratelimit:openai:budget:{name}:requests"  # type: ignore[union-attr]
    finally:
        await a.aclose()
        await b.aclose()


@needs_redis
async def test_the_tighter_configuration_of_a_shared_budget_wins(caplog: pytest.LogCaptureFixture) -> None:
    import redis.asyncio as redis_asyncio

    from forge.ratelimit import RedisBucket

    client = redis_asyncio.Redis.from_url(REDIS_URL)
    key = f"forge:test:{uuid.uuid4()}"
    try:
        loose = RedisBucket(client, key, capacity=10, rate=1.0)
        tight = RedisBucket(client, key, capacity=2, rate=0.001)
        assert await loose.wait_time(1) == 0.0  # loose came first: the bucket holds 10
        assert await tight.wait_time(1) == 0.0  # tight announces itself
        loose._agreed = None  # the loose process re-reads the agreement (every announce_ttl/3 s)
        with caplog.at_level("WARNING", logger="forge.ratelimit"):
            await loose.acquire(1)
            await loose.acquire(1)
            wait = await loose.wait_time(1)
        assert wait > 100  # capacity 2 and 0.001/s, not the loose process's 10 and 1/s
        assert await loose.effective() == (2.0, 0.001)
        assert "tighter" in caplog.text and key in caplog.text
    finally:
        await client.aclose()


@needs_redis
async def test_a_looser_configuration_takes_over_once_the_tighter_stops_announcing() -> None:
    import redis.asyncio as redis_asyncio

    from forge.ratelimit import RedisBucket

    client = redis_asyncio.Redis.from_url(REDIS_URL)
    key = f"forge:test:{uuid.uuid4()}"
    try:
        await client.hset(key + ":config", "2.0/0.001", "1")  # announced long ago: expired
        loose = RedisBucket(client, key, capacity=10, rate=1.0)
        assert await loose.effective() == (10.0, 1.0)
        assert await client.hkeys(key + ":config") == [b"10.0/1.0"]
    finally:
        await client.aclose()


def test_bad_budget_name_names_key_value_and_what_is_allowed() -> None:
    with pytest.raises(forge.ConfigError) as info:
        load_config(tenant("http://127.0.0.1:1/v1", "sk-x", rate_limit={"budget": "org acme!"}))
    assert "providers.openai.rate_limit.budget" in str(info.value) and "'org acme!'" in str(info.value)


@needs_redis
async def test_the_tighter_configuration_of_a_shared_window_wins(caplog: pytest.LogCaptureFixture) -> None:
    # Two processes (two Redis connections, counters built from their own configs) name one
    # budget: the default strict window must follow the same rule as the token bucket.
    import redis.asyncio as redis_asyncio

    from forge.config import RateLimitConfig
    from forge.ratelimit import RedisWindow, counter_from_config

    budget = f"test-{uuid.uuid4().hex[:12]}"
    clients = [redis_asyncio.Redis.from_url(REDIS_URL) for _ in range(2)]
    try:
        loose_cfg = RateLimitConfig(requests_per_minute=6000, backend="redis", budget=budget)
        tight_cfg = RateLimitConfig(requests_per_minute=120, backend="redis", budget=budget)
        loose = counter_from_config("openai", loose_cfg, redis_client=clients[0])
        tight = counter_from_config("openai", tight_cfg, redis_client=clients[1])
        assert loose is not None and tight is not None
        assert isinstance(loose.requests, RedisWindow) and isinstance(tight.requests, RedisWindow)
        assert await tight.wait_time() == 0.0  # the tight process announces 2 a second
        with caplog.at_level("WARNING", logger="forge.ratelimit"):
            for _ in range(2):
                await loose.acquire()  # 2 of the loose process's 100 a second: the agreed limit is 2
            wait = await loose.wait_time()
            await loose.wait_time()
        assert wait > 0.5  # the window holds 2, not 100
        assert await loose.requests.effective() == (2.0, 2.0)
        warnings = [r for r in caplog.records if "tighter" in r.getMessage()]
        assert len(warnings) == 1 and budget in warnings[0].getMessage()
        assert await tight.requests.effective() == (2.0, 2.0)  # the tight one is not loosened
    finally:
        for c in clients:
            await c.aclose()
