"""Config loading and validation: every bad value names the key, the value and what is allowed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from forge.config import ForgeConfig, find_config_file, load_config
from forge.errors import ConfigError


def test_no_file_gives_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("FORGE_CONFIG", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    cfg = load_config()
    assert cfg == ForgeConfig()
    assert cfg.provider("openai").retry.max_attempts == 3


def test_dict_config_round_trip() -> None:
    cfg = load_config(
        {
            "aliases": {"fast": "openai:gpt-4o-mini"},
            "providers": {
                "openai": {"base_url": "http://127.0.0.1:8000/v1", "api_key": "k", "timeout": 30},
                "gemini": {"api_key_env": "MY_GEMINI_KEY", "models": {"pro": "gemini-2.5-pro"}},
            },
        }
    )
    assert cfg.provider("openai").base_url == "http://127.0.0.1:8000/v1"
    assert cfg.provider("openai").timeout == 30.0
    assert cfg.provider("gemini").name == "google"
    assert cfg.provider("google").models["pro"] == "gemini-2.5-pro"


def test_toml_file(tmp_path: Path) -> None:
    path = tmp_path / "forge.toml"
    path.write_text('[providers.anthropic]\napi_key = "x"\n[providers.anthropic.retry]\nmax_attempts = 5\n')
    cfg = load_config(path)
    assert cfg.provider("anthropic").retry.max_attempts == 5
    assert cfg.source == str(path)


def test_json_file(tmp_path: Path) -> None:
    path = tmp_path / "forge.json"
    path.write_text(json.dumps({"providers": {"ollama": {"base_url": "http://localhost:11434"}}}))
    assert load_config(path).provider("ollama").base_url == "http://localhost:11434"


def test_search_order_env_then_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "forge.toml").write_text("")
    explicit = tmp_path / "other.toml"
    explicit.write_text("")
    monkeypatch.setenv("FORGE_CONFIG", str(explicit))
    assert find_config_file(cwd=tmp_path) == explicit
    monkeypatch.delenv("FORGE_CONFIG")
    assert find_config_file(cwd=tmp_path) == tmp_path / "forge.toml"


def test_user_config_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FORGE_CONFIG", raising=False)
    (tmp_path / "xdg" / "forge").mkdir(parents=True)
    (tmp_path / "xdg" / "forge" / "forge.toml").write_text("")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    assert find_config_file(cwd=tmp_path / "nowhere") == tmp_path / "xdg" / "forge" / "forge.toml"


def test_forge_config_pointing_nowhere(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FORGE_CONFIG", "/no/such/forge.toml")
    with pytest.raises(ConfigError, match="FORGE_CONFIG points to '/no/such/forge.toml'"):
        load_config()


def test_malformed_toml_names_file(tmp_path: Path) -> None:
    path = tmp_path / "forge.toml"
    path.write_text("[providers.openai\napi_key = 1\n")
    with pytest.raises(ConfigError, match=r"forge\.toml is not valid TOML"):
        load_config(path)


def test_malformed_json_names_line(tmp_path: Path) -> None:
    path = tmp_path / "forge.json"
    path.write_text('{"providers": {,}}')
    with pytest.raises(ConfigError, match="not valid JSON.*line 1"):
        load_config(path)


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"providers": {"opnai": {}}}, r"Unknown provider 'opnai'.*Did you mean 'openai'"),
        ({"providers": {"openai": {"timeout": -1}}}, r"providers\.openai\.timeout: must be > 0, got -1"),
        ({"providers": {"openai": {"timeout": "fast"}}}, r"providers\.openai\.timeout: expected a number"),
        ({"providers": {"openai": {"base_url": "localhost:8000"}}}, r"base_url: expected an http:// or https:// URL"),
        ({"providers": {"openai": {"retry": {"max_attempts": 0}}}}, r"retry\.max_attempts: must be >= 1, got 0"),
        ({"providers": {"openai": {"retry": {"max_atempts": 2}}}}, r"unknown key.*Did you mean 'max_attempts'"),
        (
            {"providers": {"openai": {"retry": {"initial_wait": 5, "max_wait": 1}}}},
            r"max_wait: must be >= initial_wait",
        ),
        ({"providers": {"openai": {"rate_limit": {"backend": "etcd"}}}}, r"backend: expected 'memory' or 'redis'"),
        ({"providers": {"openai": {"rate_limit": {"backend": "redis"}}}}, r"needs redis_url"),
        ({"providers": {"openai": {"rate_limit": {"requests_per_minute": 0}}}}, r"requests_per_minute: must be > 0"),
        ({"providers": {"openai": {"api": "assistants"}}}, r"api: expected 'chat' or 'responses'"),
        ({"providers": {"anthropic": {"organization": "x"}}}, r"providers\.anthropic\.organization: unknown key"),
        ({"providers": {"openai": {"api_key_env": "sk-abc def"}}}, r"api_key_env: expected the NAME"),
        ({"aliases": {"fast": "gpt-4o"}}, r"aliases\.fast: expected 'provider:model'"),
        ({"aliases": {"fast": "nope:gpt-4o"}}, r"aliases\.fast: Unknown provider 'nope'"),
        ({"provider": {}}, r"provider: unknown key.*Did you mean 'providers'"),
        ({"providers": {"openai": {"retry": {"jitter": "yes"}}}}, r"jitter: expected true or false"),
        ({"providers": {"google": {}, "gemini": {}}}, r"configured twice"),
    ],
)
def test_invalid_values_are_named(config: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(config)


def test_missing_key_says_which_env_var(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    cfg = load_config({}).provider("anthropic")
    with pytest.raises(ConfigError, match="No API key for provider 'anthropic': set ANTHROPIC_API_KEY"):
        cfg.require_api_key()


def test_key_from_named_env_var(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MY_KEY", "secret")
    cfg = load_config({"providers": {"openai": {"api_key_env": "MY_KEY"}}}).provider("openai")
    assert cfg.require_api_key() == "secret"


def test_gemini_key_from_either_env_var() -> None:
    cfg = load_config({}).provider("google")
    assert cfg.resolve_api_key({"GOOGLE_API_KEY": "g"}) == "g"
    assert cfg.resolve_api_key({"GEMINI_API_KEY": "m"}) == "m"


def test_ollama_host_env() -> None:
    cfg = load_config({}).provider("ollama")
    assert cfg.resolve_base_url({"OLLAMA_HOST": "http://h:1"}) == "http://h:1"


def test_per_operation_retry_overrides() -> None:
    cfg = load_config({"providers": {"openai": {"retry": {"max_attempts": 4, "stream": {"max_attempts": 2}}}}})
    p = cfg.provider("openai")
    assert p.retry.max_attempts == 4
    assert p.retry_overrides["stream"].max_attempts == 2


def test_per_provider_retry_defaults_differ() -> None:
    cfg = load_config({})
    assert cfg.provider("anthropic").retry.max_wait == 60.0  # 529 overloaded can last
    assert cfg.provider("google").retry.max_wait == 60.0  # RetryInfo delays of tens of seconds
    assert cfg.provider("ollama").retry.max_attempts == 2  # a local server
    assert cfg.provider("openai").retry.max_attempts == 3


def test_configured_retry_starts_from_the_provider_defaults() -> None:
    cfg = load_config({"providers": {"anthropic": {"retry": {"max_attempts": 6}}}})
    retry = cfg.provider("anthropic").retry
    assert (retry.max_attempts, retry.initial_wait, retry.max_wait) == (6, 1.0, 60.0)


def test_provider_retry_config_parses_a_section() -> None:
    from forge.config import ProviderRetryConfig

    prc = ProviderRetryConfig.parse(
        "gemini", {"retry": {"batch": {"max_attempts": 8}}, "rate_limit": {"requests_per_minute": 60}}
    )
    assert prc.provider == "google"
    assert prc.for_operation("batch").max_attempts == 8
    assert prc.for_operation("invoke").max_attempts == 4
    assert prc.rate_limit.requests_per_minute == 60
    with pytest.raises(ConfigError, match="'timeout' is not a retry setting"):
        ProviderRetryConfig.parse("openai", {"timeout": 3})
    with pytest.raises(ConfigError, match=r"retry\.stream\.invoke: unknown key"):
        ProviderRetryConfig.parse("openai", {"retry": {"stream": {"invoke": {}}}})


def test_pricing_overrides_from_config() -> None:
    from forge.pricing import cost_usd
    from forge.types import Usage

    cfg = load_config({"providers": {"openai": {"pricing": {
        "ft:gpt-4o-mini": {"input": 0.3, "output": 1.2, "cached_input": 0.15},
        "gpt-4o": {"input": 2.0, "output": 8.0},
    }}}}).provider("openai")
    usage = Usage(input_tokens=1_000_000, output_tokens=1_000_000)
    assert cost_usd("openai", "ft:gpt-4o-mini:acme:1", usage, overrides=cfg.pricing) == pytest.approx(1.5)
    assert cost_usd("openai", "gpt-4o-2024-08-06", usage, overrides=cfg.pricing) == pytest.approx(10.0)
    assert cost_usd("openai", "gpt-4o-mini", usage, overrides=cfg.pricing) == pytest.approx(0.75)  # built-in
    assert cost_usd("openai", "my-own-model", usage, overrides=cfg.pricing) is None


@pytest.mark.parametrize(
    ("pricing", "message"),
    [
        ({"m": {"input": 1}}, r"pricing\.m: needs 'output'"),
        ({"m": {"input": 1, "output": 2, "outptu": 3}}, r"unknown key.*Did you mean 'output'"),
        ({"m": {"input": -1, "output": 2}}, r"pricing\.m\.input: must be >= 0"),
        ({"m": {"input": 1, "output": 2, "batch_discount": 2}}, r"batch_discount: must be between 0 and 1"),
    ],
)
def test_bad_pricing_is_named(pricing: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config({"providers": {"openai": {"pricing": pricing}}})
