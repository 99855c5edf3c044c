"""One canary key (and a Redis password) through every path forge has; it must appear nowhere."""

from __future__ import annotations

import base64
import json
import logging
import os
import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

import forge
from forge.batch import PollSchedule
from forge.config import load_config
from forge.jobs import SQLiteJobStore
from forge.testing import Emulator
from forge.testing.cassettes import CassetteMiss, use_cassette
from tests.hostile import HostileServer, Reply

REDIS_URL = os.environ.get("FORGE_TEST_REDIS_URL")
needs_redis = pytest.mark.skipif(not REDIS_URL, reason="no Redis: run with `bash scripts/test`")

CANARY = "sk-canary-" + uuid.uuid4().hex
PASSWORD = "pw-canary-" + uuid.uuid4().hex
LOGGERS = ("", "forge", "httpx", "httpx2", "httpcore", "openai", "redis", "asyncio")


class Everything(logging.Handler):
    """Every record at every level, formatted with its arguments and exception."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@pytest.fixture
def all_logs() -> Iterator[Everything]:
    handler = Everything()
    saved = {name: logging.getLogger(name).level for name in LOGGERS}
    root = logging.getLogger()
    root.addHandler(handler)
    for name in LOGGERS:
        logging.getLogger(name).setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        for name, level in saved.items():
            logging.getLogger(name).setLevel(level)


@pytest.fixture
async def redis_user() -> Iterator[str]:
    """A Redis URL with a user and the canary password (an ACL user made for this test)."""
    import redis.asyncio as redis_asyncio

    assert REDIS_URL is not None
    admin = redis_asyncio.Redis.from_url(REDIS_URL)
    user = f"forge-canary-{uuid.uuid4().hex[:8]}"
    await admin.execute_command("ACL", "SETUSER", user, "on", f">{PASSWORD}", "~*", "&*", "+@all")
    parts = urlsplit(REDIS_URL)
    try:
        yield f"redis://{user}:{PASSWORD}@{parts.hostname}:{parts.port}{parts.path}"
    finally:
        await admin.execute_command("ACL", "DELUSER", user)
        await admin.aclose()


def leaks(text: str) -> list[str]:
    return [s for s in (CANARY, PASSWORD) if s in text]


def echoing_401() -> Reply:
    """What a proxy (or an older API) answers to a bad key: the key itself, in the message."""
    return Reply.http(401, {"error": {"message": f"Incorrect API key provided: {CANARY}.",
                                      "type": "invalid_request_error", "code": "invalid_api_key"}})


@needs_redis
async def test_the_canary_key_and_redis_password_appear_nowhere(
    all_logs: Everything, redis_user: str, tmp_path: Path
) -> None:
    produced: list[str] = []
    async with HostileServer() as srv, Emulator() as emu:
        cfg = {
            "providers": {
                "openai": {
                    "api_key": CANARY, "base_url": srv.url("/v1"), "retry": {"max_attempts": 2, "initial_wait": 0.01},
                    "rate_limit": {"requests_per_minute": 6000, "backend": "redis", "redis_url": redis_user},
                },
                "anthropic": {"api_key": CANARY, "base_url": emu.base_urls["anthropic"]},
            }
        }
        reg = forge.Registry(cfg, response_cache=forge.cache.MemoryResponseCache())
        reg.job_store = store = SQLiteJobStore(tmp_path / "jobs.sqlite3")
        try:
            produced += [repr(reg.config), str(reg.config), repr(reg.provider_config("openai")),
                         repr(reg.provider_config("openai").rate_limit), repr(reg)]
            llm = reg.get_llm("openai:gpt-4o-mini", enable_cache=True)
            produced += [repr(llm), repr(llm.limiter), repr(llm.provider), repr(vars(llm.provider))]
            # an error whose body echoes the key: invoke and stream
            srv.push(echoing_401(), echoing_401())
            for call in (llm.invoke("hi"), llm.stream("hi").collect()):
                with pytest.raises(forge.AuthenticationError) as info:
                    await call
                err = info.value
                produced += [str(err), repr(err), str(err.__cause__), repr(err.args)]
            # a retried error (RetryExhausted history)
            srv.push(Reply.http(500, {"error": {"message": f"upstream saw {CANARY}"}}),
                     Reply.http(500, {"error": {"message": f"upstream saw {CANARY}"}}))
            with pytest.raises(forge.ForgeError) as info:
                await llm.invoke("hello again")
            produced += [str(info.value), repr(info.value), repr(getattr(info.value, "attempts", ""))]
            # a bad config that quotes the Redis URL
            with pytest.raises(forge.ConfigError) as bad:
                load_config({"providers": {"openai": {"rate_limit": {
                    "backend": "redis", "redis_url": redis_user.replace("redis://", "http://")}}}})
            produced.append(str(bad.value))
            # a batch (job rows) on the emulator, with the canary key
            results = await reg.batch_invoke("anthropic:claude-haiku-4-5", ["one", "two"], mode="batch_api",
                                             poll=PollSchedule(initial=0.01, max=0.01))
            produced += [repr(r) for r in results]
            produced.append(json.dumps(reg.metrics.snapshot(), default=str))
            produced.append(reg.metrics.format_table())
        finally:
            await reg.aclose()
        conn = sqlite3.connect(tmp_path / "jobs.sqlite3")
        produced += [repr(row) for table in ("forge_jobs", "forge_job_items")
                     for row in conn.execute(f"SELECT * FROM {table}")]
        conn.close()
        assert store is not None
    # cassettes: a recording with the key in the prompt, then a miss that quotes the prompt
    cassette = tmp_path / "canary.yaml"
    async with Emulator() as emu:
        cfg = {"providers": {"openai": {"api_key": CANARY, "base_url": emu.base_urls["openai"]}}}
        with use_cassette(cassette, record_mode="once", secrets=[CANARY]):
            async with forge.Registry(cfg) as reg:
                await reg.invoke("openai:gpt-4o-mini", f"my key is {CANARY}")
        with use_cassette(cassette, record_mode="none", secrets=[CANARY]):
            async with forge.Registry(cfg) as reg:
                with pytest.raises(CassetteMiss) as miss:
                    await reg.invoke("openai:gpt-4o-mini", f"my other key is {CANARY}")
        produced += [str(miss.value), miss.value.body, miss.value.uri]
    produced.append(cassette.read_text())
    produced += all_logs.lines
    found = {i: leaks(text) for i, text in enumerate(produced) if leaks(text)}
    assert not found, "\n".join(f"{produced[i][:300]!r}" for i in found)
    assert any("DEBUG" in line for line in all_logs.lines)  # the logs were really captured


@pytest.mark.parametrize("provider", ["openai", "anthropic", "google", "ollama"])
async def test_a_base_url_password_is_in_no_log_line(all_logs: Everything, provider: str) -> None:
    # A proxy with basic auth in the base URL: the vendor client and httpx log every request's
    # URL (httpx at INFO), so forge must not hand them a URL that carries the password.
    models = {"openai": "openai:gpt-4o-mini", "anthropic": "anthropic:claude-haiku-4-5",
              "google": "google:gemini-2.5-flash", "ollama": "ollama:llama3.2"}
    async with Emulator() as emu:
        cfg = emu.config()
        section = cfg["providers"][provider]
        section["base_url"] = str(section["base_url"]).replace("http://", f"http://proxy-user:{PASSWORD}@")
        async with forge.Registry(cfg) as reg:
            reply = await reg.invoke(models[provider], "hi")
            streamed = await reg.stream(models[provider], "hi").collect()
        sent = emu.requests
    assert reply.text and streamed.text
    assert any("HTTP Request" in line for line in all_logs.lines)  # httpx's request line was captured
    leaked = [line[:300] for line in all_logs.lines if PASSWORD in line]
    assert not leaked, leaked
    # ...and the proxy still gets its credentials, as basic auth (what httpx made of the userinfo).
    basic = "Basic " + base64.b64encode(f"proxy-user:{PASSWORD}".encode()).decode()
    assert sent and all(r.headers.get("authorization") == basic for r in sent)


async def test_a_base_url_password_goes_as_basic_auth_to_that_host_only() -> None:
    async with HostileServer() as srv:
        base = srv.url("/v1").replace("http://", f"http://proxy%2Duser:{PASSWORD}@")
        cfg = load_config({"providers": {"openai": {"api_key": "sk-test", "base_url": base}}})
        from forge.providers._common import base_url_auth, make_httpx2_client

        auth = base_url_auth(cfg.provider("openai"))
        assert auth is not None and base_url_auth(load_config({}).provider("openai")) is None
        srv.push(Reply.http(204), Reply.http(204))
        client = make_httpx2_client(cfg.provider("openai"))
        try:
            await client.get(srv.url("/v1/models"))  # the URL without userinfo: same origin
            await client.get(srv.url("/v1/models").replace("127.0.0.1", "localhost"))  # another host
        finally:
            await client.aclose()
    basic = "Basic " + base64.b64encode(f"proxy-user:{PASSWORD}".encode()).decode()
    assert srv.requests[0].headers.get("authorization") == basic
    assert "authorization" not in srv.requests[1].headers
