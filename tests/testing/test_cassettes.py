"""forge.testing.cassettes: matching, scrubbing, miss messages, the network block, tolerant loading."""

from __future__ import annotations

import gzip
import json
import socket
import time
from pathlib import Path

import httpx2
import pytest
import yaml

import forge
from forge.errors import RateLimitError
from forge.testing import Emulator, Fault, Reply
from forge.testing.cassettes import (
    PLACEHOLDER_ORIGIN,
    REPLAY_API_KEY,
    CassetteMiss,
    NetworkBlocked,
    block_network,
    find_secrets,
    normalize_body,
    replay_config,
    use_cassette,
)

MODELS = ("openai:gpt-4o-mini", "anthropic:claude-haiku-4-5", "google:gemini-2.5-flash", "ollama:llama3.2")


async def _record(path: Path, prompt: str = "hello", *, models: tuple[str, ...] = MODELS) -> list[str]:
    async with Emulator() as emu:
        with use_cassette(path, record_mode="once") as cassette:
            async with forge.Registry(config=cassette.config(emu.config())) as reg:
                return [(await reg.invoke(m, prompt)).text for m in models]


def _load(path: Path) -> dict[str, object]:
    data: dict[str, object] = yaml.safe_load(path.read_text())
    return data


# --------------------------------------------------------------------------- matching


def test_normalize_body_ignores_json_key_order_and_whitespace() -> None:
    assert normalize_body(b'{"b": 1, "a": [1, 2]}') == normalize_body('{"a":[1,2],"b":1}')
    assert normalize_body(b'{"a": 1}') != normalize_body(b'{"a": 2}')


def test_normalize_body_takes_the_multipart_boundary_out() -> None:
    def upload(boundary: str) -> bytes:
        return (
            f'--{boundary}\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nbatch\r\n'
            f"--{boundary}--\r\n"
        ).encode()

    first = normalize_body(upload("a1b2c3"), "multipart/form-data; boundary=a1b2c3")
    assert first == normalize_body(upload("ffee99"), "multipart/form-data; boundary=ffee99")
    assert first == normalize_body(upload("zz11"))  # found from the body when the header is gone
    assert b"a1b2c3" not in first


def test_normalize_body_ignores_forge_batch_job_ids() -> None:
    first = b'{"custom_id": "fj_0123456789abcdef-0", "metadata": {"forge_job": "fj_0123456789abcdef"}}'
    second = b'{"custom_id": "fj_fedcba9876543210-0", "metadata": {"forge_job": "fj_fedcba9876543210"}}'
    assert normalize_body(first) == normalize_body(second)
    assert normalize_body(first) != normalize_body(first.replace(b"-0", b"-1"))


def test_normalize_body_compares_other_bodies_byte_for_byte() -> None:
    assert normalize_body(b"plain text") == b"plain text"
    assert normalize_body(None) == b"" == normalize_body(b"")


async def test_replay_matches_a_json_body_with_other_key_order(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    texts = await _record(path, models=("openai:gpt-4o-mini",))
    data = _load(path)
    request = data["interactions"][0]["request"]  # type: ignore[index]
    body = json.loads(request["body"])
    request["body"] = json.dumps(dict(reversed(list(body.items()))), indent=1)
    path.write_text(yaml.safe_dump(data))
    with use_cassette(path) as cassette:
        async with forge.Registry(config=cassette.config()) as reg:
            assert (await reg.invoke("openai:gpt-4o-mini", "hello")).text == texts[0]


async def test_host_and_port_are_not_matched(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    await _record(path, models=("anthropic:claude-haiku-4-5",))
    assert f"uri: {PLACEHOLDER_ORIGIN}/v1/messages" in path.read_text()
    config = {"providers": {"anthropic": {"base_url": "https://api.anthropic.com", "api_key": "k"}}}
    with use_cassette(path):
        async with forge.Registry(config=config) as reg:  # the real API's URL, not the placeholder
            assert (await reg.invoke("anthropic:claude-haiku-4-5", "hello")).text


# --------------------------------------------------------------------------- misses


async def test_a_miss_names_the_request_the_cassette_and_how_to_re_record(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    await _record(path, models=("openai:gpt-4o-mini",))
    with use_cassette(path, rerecord_hint="python -m pytest --forge-record-mode=all 'x::y'") as cassette:
        async with forge.Registry(config=cassette.config()) as reg:
            with pytest.raises(CassetteMiss) as info:
                await reg.invoke("openai:gpt-4o-mini", "a different prompt")
    message = str(info.value)
    assert f"POST {PLACEHOLDER_ORIGIN}/v1/chat/completions" in message
    assert "a different prompt" in message  # the body excerpt
    assert str(path) in message
    assert "body differs" in message and '"content":"hello"' in message  # the closest recording
    assert "python -m pytest --forge-record-mode=all 'x::y'" in message
    assert info.value.uri == f"{PLACEHOLDER_ORIGIN}/v1/chat/completions"
    assert info.value.cassette == path


@pytest.mark.parametrize("model", MODELS)
async def test_a_miss_reaches_the_caller_unwrapped_after_one_attempt(tmp_path: Path, model: str) -> None:
    """Not a ProviderError, not retried (Anthropic's client wraps transport errors as retryable)."""
    path = tmp_path / "c.yaml"
    await _record(path, models=(model,))
    with use_cassette(path) as cassette:
        async with forge.Registry(config=cassette.config()) as reg:
            start = time.monotonic()
            with pytest.raises(CassetteMiss):
                await reg.invoke(model, "not recorded")
            with pytest.raises(CassetteMiss):
                async with reg.stream(model, "not recorded either") as s:
                    await s.collect()
    assert len(cassette.misses) == 2  # one attempt each
    assert time.monotonic() - start < 1.0


async def test_a_request_sent_more_often_than_recorded_says_so(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    await _record(path, models=("ollama:llama3.2",))
    with use_cassette(path) as cassette:
        async with forge.Registry(config=cassette.config()) as reg:
            await reg.invoke("ollama:llama3.2", "hello")
            with pytest.raises(CassetteMiss, match="already played"):
                await reg.invoke("ollama:llama3.2", "hello")


async def test_record_once_replays_what_exists_and_records_what_is_new(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    await _record(path, models=("openai:gpt-4o-mini",))
    async with Emulator() as emu:
        with use_cassette(path, record_mode="new_episodes") as cassette:
            async with forge.Registry(config=cassette.config(emu.config())) as reg:
                await reg.invoke("openai:gpt-4o-mini", "hello")
                await reg.invoke("openai:gpt-4o-mini", "second")
        assert len(emu.requests) == 1  # "hello" came from the cassette
    assert len(_load(path)["interactions"]) == 2  # type: ignore[arg-type]


async def test_record_all_keeps_only_what_was_recorded_now(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    await _record(path, "old prompt", models=("openai:gpt-4o-mini",))
    async with Emulator() as emu:
        with use_cassette(path, record_mode="all") as cassette:
            async with forge.Registry(config=cassette.config(emu.config())) as reg:
                await reg.invoke("openai:gpt-4o-mini", "new prompt")
    text = path.read_text()
    assert "new prompt" in text and "old prompt" not in text


async def test_a_batch_replays_with_its_recorded_job_id_and_results(tmp_path: Path) -> None:
    """Job ids are random and echoed in every result: the replay must reuse the recorded one."""
    from forge.jobs import SQLiteJobStore

    async def run(config: object) -> tuple[list[object], list[str]]:
        async with forge.Registry(config=config) as reg:  # type: ignore[arg-type]
            reg.job_store = SQLiteJobStore(tmp_path / f"jobs-{len(list(tmp_path.iterdir()))}.sqlite3")
            try:
                results = await reg.batch_invoke("anthropic:claude-haiku-4-5", ["one", "two"], mode="batch_api")
                jobs = [job.id for job in await reg.job_store.list()]
            finally:
                await reg.job_store.aclose()
        return [r.text if isinstance(r, forge.Response) else r for r in results], jobs

    path = tmp_path / "batch.yaml"
    async with Emulator() as emu:
        with use_cassette(path, record_mode="once") as cassette:
            live, live_jobs = await run(cassette.config(emu.config()))
    text = path.read_text()
    assert "127.0.0.1" not in text  # results_url in the body points at the placeholder too
    with use_cassette(path) as cassette:
        replayed, replayed_jobs = await run(cassette.config())
        assert cassette.all_played
    assert replayed == live and all(isinstance(t, str) for t in live)
    assert replayed_jobs == live_jobs


# --------------------------------------------------------------------------- what is recorded


async def test_every_credential_is_kept_out_of_the_cassette(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secrets = {
        "OPENAI_API_KEY": "sk-proj-abcdefghijklmnopqrstuvwx1234",
        "ANTHROPIC_API_KEY": "sk-ant-api03-abcdefghijklmnopqrstuvwx1234",
        "GEMINI_API_KEY": "AIzaSyA1234567890abcdefghijklmnopqrstu",
        "OLLAMA_API_KEY": "ollama-secret-token-1234567890",
    }
    for name, value in secrets.items():
        monkeypatch.setenv(name, value)
    path = tmp_path / "c.yaml"
    async with Emulator() as emu:
        emu.script(Reply(headers={"set-cookie": "session=s3cr3t-cookie", "openai-organization": "org-9x"}))
        base = emu.config()
        config = {
            "providers": {
                "openai": {
                    "base_url": base["providers"]["openai"]["base_url"],
                    "organization": "org-abc123",
                    "project": "proj_abc123",
                },
                **{p: {"base_url": base["providers"][p]["base_url"]} for p in ("anthropic", "google", "ollama")},
            }
        }
        with use_cassette(path, record_mode="once"):
            async with forge.Registry(config=config) as reg:
                for model in MODELS:
                    await reg.invoke(model, f"my key is {secrets['OPENAI_API_KEY']}")
            async with httpx2.AsyncClient() as client:  # a key in the URL, as old Gemini clients sent it
                await client.post(
                    emu.url + f"/v1beta/models/gemini-2.5-flash:generateContent?key={secrets['GEMINI_API_KEY']}",
                    json={"contents": [{"parts": [{"text": "hi"}]}]},
                )
    text = path.read_text()
    for value in (*secrets.values(), "org-abc123", "proj_abc123", "s3cr3t-cookie", "org-9x"):
        assert value not in text
    for header in ("authorization", "x-api-key", "x-goog-api-key", "openai-organization", "set-cookie"):
        assert f"{header}:" not in text.lower()
    assert "key=" not in text and "REDACTED" in text  # the key in the prompt was replaced
    assert find_secrets(path) == []


async def test_gzip_bodies_are_stored_decoded_and_replay(tmp_path: Path) -> None:
    body = json.dumps({"ok": True, "text": "compressed"}).encode()

    def handler(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, headers={"content-encoding": "gzip"}, content=gzip.compress(body))

    path = tmp_path / "c.yaml"
    with use_cassette(path, record_mode="once"):
        async with httpx2.AsyncClient(transport=httpx2.MockTransport(handler)) as client:
            assert (await client.get("https://api.example.test/v1/x")).json()["text"] == "compressed"
    text = path.read_text()
    assert "compressed" in text and "content-encoding" not in text.lower() and "!!binary" not in text
    with use_cassette(path):
        async with httpx2.AsyncClient(transport=httpx2.MockTransport(handler)) as client:
            assert (await client.get("https://api.example.test/v1/x")).json()["text"] == "compressed"


async def test_streams_are_stored_readable_and_replay_to_the_same_events(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    async with Emulator(chunk_count=4) as emu:
        with use_cassette(path, record_mode="once") as cassette:
            async with (
                forge.Registry(config=cassette.config(emu.config())) as reg,
                reg.stream("anthropic:claude-haiku-4-5", "tell me") as s,
            ):
                live = [e async for e in s.events()]
    assert "string: |" in path.read_text()  # SSE text as a block, one event per line
    with use_cassette(path) as cassette:
        async with (
            forge.Registry(config=cassette.config()) as reg,
            reg.stream("anthropic:claude-haiku-4-5", "tell me") as s,
        ):
            replayed = [e async for e in s.events()]
    assert replayed == live and sum(e.kind == "text" for e in live) == 4


async def test_metadata_is_stored_while_recording_and_read_back(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    await _record(path, models=("openai:gpt-4o-mini",))
    with use_cassette(path, record_mode="new_episodes") as cassette:
        assert cassette.metadata("note", {"why": "a test"}) == {"why": "a test"}
    with use_cassette(path) as cassette:
        assert cassette.metadata("note") == {"why": "a test"}


async def test_a_recorded_error_replays_as_the_same_error(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    config = {"providers": {"google": {"retry": {"max_attempts": 1}}}}
    async with Emulator() as emu:
        with use_cassette(path, record_mode="once") as cassette:
            cassette.emulator = emu
            cassette.script(Fault.rate_limit(retry_after=5), provider="google")
            async with forge.Registry(config=cassette.config(config)) as reg:
                with pytest.raises(RateLimitError) as live:
                    await reg.invoke("google:gemini-2.5-flash", "hi")
    with use_cassette(path) as cassette:
        assert cassette.script(Fault.rate_limit()) is None  # replaying: the 429 is in the cassette
        async with forge.Registry(config=cassette.config(config)) as reg:
            with pytest.raises(RateLimitError) as replayed:
                await reg.invoke("google:gemini-2.5-flash", "hi")
    assert (replayed.value.status, replayed.value.retry_after) == (live.value.status, live.value.retry_after)
    assert (replayed.value.status, replayed.value.retry_after) == (429, 5.0)


# --------------------------------------------------------------------------- loading other recorders' files


async def test_loads_parsed_body_scalar_headers_and_gzip_without_its_header(tmp_path: Path) -> None:
    gz = gzip.compress(b'{"n": 2}')
    data = {
        "version": 1,
        "interactions": [
            {  # pydantic-ai: parsed_body instead of body, scalar header values, no status message
                "request": {"method": "POST", "uri": "https://x.test/a", "parsed_body": {"q": 1}, "headers": {}},
                "response": {
                    "status": {"code": 200},
                    "headers": {"X-Trace": "t-1", "content-encoding": ["gzip"]},
                    "parsed_body": {"n": 1},
                },
            },
            {  # gzip bytes with no content-encoding header, no headers at all
                "request": {"method": "GET", "uri": "https://x.test/b", "body": None},
                "response": {"status": {"code": 200, "message": "OK"}, "body": {"string": gz}},
            },
        ],
    }
    path = tmp_path / "other.yaml"
    path.write_text(yaml.safe_dump(data))
    with use_cassette(path):
        async with httpx2.AsyncClient() as client:
            first = await client.post("https://x.test/a", json={"q": 1})
            second = await client.get("https://x.test/b")
    assert first.json() == {"n": 1} and first.headers["x-trace"] == "t-1"
    assert second.json() == {"n": 2}


# --------------------------------------------------------------------------- network block


def test_network_block_refuses_inet_connects_and_lookups_and_lists_them() -> None:
    attempts: list[str] = []
    with block_network("test", attempts):
        with pytest.raises(NetworkBlocked):
            socket.create_connection(("127.0.0.1", 9))
        with pytest.raises(OSError):  # an OSError, like being offline
            socket.getaddrinfo("api.openai.com", 443)
        a, b = socket.socketpair()  # unix sockets still work (the event loop needs them)
        a.close()
        b.close()
    assert attempts == ["127.0.0.1:9", "api.openai.com:443"]
    socket.getaddrinfo("127.0.0.1", 80)


async def test_replay_blocks_the_network_and_recording_does_not(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    await _record(path, models=("openai:gpt-4o-mini",))
    with use_cassette(path) as cassette, pytest.raises(NetworkBlocked):
        socket.getaddrinfo("localhost", 80)
    assert cassette.blocked == ["localhost:80"]
    with use_cassette(path, record_mode="new_episodes"):
        socket.getaddrinfo("localhost", 80)


# --------------------------------------------------------------------------- config


def test_replay_config_points_every_provider_at_the_placeholder_and_keeps_the_rest() -> None:
    base = {
        "aliases": {"fast": "openai:gpt-4o-mini"},
        "providers": {"gemini": {"timeout": 5, "api_key_env": "MY_KEY"}, "openai": {"retry": {"max_attempts": 2}}},
    }
    config = replay_config(base)
    assert isinstance(config, dict)
    providers = config["providers"]
    assert isinstance(providers, dict)
    assert set(providers) == {"gemini", "openai", "anthropic", "ollama"}  # the alias is kept, not doubled
    assert providers["gemini"] == {
        "timeout": 5,
        "api_key_env": "MY_KEY",
        "base_url": PLACEHOLDER_ORIGIN,
        "api_key": REPLAY_API_KEY,
    }
    assert providers["openai"]["base_url"] == PLACEHOLDER_ORIGIN + "/v1"
    assert providers["openai"]["retry"] == {"max_attempts": 2}
    assert config["aliases"] == base["aliases"] and "base_url" not in base["providers"]["openai"]
    loaded = forge.load_config(config)
    assert loaded.provider("google").resolve_api_key({}) == REPLAY_API_KEY


def test_replay_config_accepts_a_loaded_config() -> None:
    loaded = forge.load_config({"providers": {"anthropic": {"timeout": 7}}})
    config = replay_config(loaded)
    assert isinstance(config, forge.ForgeConfig)
    assert config.provider("anthropic").timeout == 7
    assert config.provider("anthropic").base_url == PLACEHOLDER_ORIGIN
    assert config.provider("ollama").base_url == PLACEHOLDER_ORIGIN


# --------------------------------------------------------------------------- leak check


@pytest.mark.parametrize(
    ("where", "value"),
    [
        ("body", "here is sk-proj-abcdefghijklmnop12345678"),
        ("body", "sk-ant-api03-abcdefghijklmnop12345678"),
        ("body", "AIzaSyA1234567890abcdefghijklmnopqrstu"),
        ("body", "Authorization: Bearer abc123def456ghi789"),
        ("uri", "https://x.test/v1?alt=sse&key=abc123secret"),
        ("header", "Bearer whatever"),
        ("gzip", "sk-abcdefghijklmnopqrstuvwx123456"),
    ],
)
def test_find_secrets_spots_keys_tokens_and_credential_headers(tmp_path: Path, where: str, value: str) -> None:
    request: dict[str, object] = {"method": "POST", "uri": "https://x.test/v1", "body": "{}", "headers": {}}
    response: dict[str, object] = {"status": {"code": 200, "message": "OK"}, "headers": {}, "body": {"string": "ok"}}
    if where == "uri":
        request["uri"] = value
    elif where == "header":
        request["headers"] = {"Authorization": [value]}
    elif where == "gzip":
        response["body"] = {"string": gzip.compress(value.encode())}
    else:
        response["body"] = {"string": value}
    path = tmp_path / "leak.yaml"
    path.write_text(yaml.safe_dump({"version": 1, "interactions": [{"request": request, "response": response}]}))
    assert find_secrets(path)
    assert find_secrets(tmp_path)  # a directory is scanned recursively


def test_find_secrets_accepts_redacted_values(tmp_path: Path) -> None:
    request = {
        "method": "GET",
        "uri": "https://x.test/v1?key=REDACTED",
        "body": None,
        "headers": {"authorization": ["REDACTED"], "x-api-key": "REDACTED"},
    }
    response = {"status": {"code": 401}, "headers": {"Set-Cookie": "REDACTED"}, "body": {"string": "Bearer REDACTED"}}
    path = tmp_path / "ok.yaml"
    path.write_text(yaml.safe_dump({"version": 1, "interactions": [{"request": request, "response": response}]}))
    assert find_secrets(path) == []
