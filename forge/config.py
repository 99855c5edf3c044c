"""Configuration: schema, loading (dict / TOML / JSON / env) and validation.

A config is optional. Without one, each provider takes its key from its usual
environment variable (``OPENAI_API_KEY``, ``ANTHROPIC_API_KEY``,
``GEMINI_API_KEY`` / ``GOOGLE_API_KEY``; Ollama needs none and honours
``OLLAMA_HOST``). Where a file is used, it is looked for in this order:
``$FORGE_CONFIG``, ``./forge.toml``, then the user config dir
(``$XDG_CONFIG_HOME/forge/forge.toml``, ``~/.config/forge/forge.toml``).

Example ``forge.toml``::

    [aliases]
    fast = "openai:gpt-4o-mini"

    [providers.openai]
    api_key_env = "OPENAI_API_KEY"
    timeout = 60

    [providers.openai.retry]
    max_attempts = 4

    [providers.openai.rate_limit]
    requests_per_minute = 500
    tokens_per_minute = 200000

Every invalid value raises :class:`~forge.errors.ConfigError` naming the key,
the value and what is allowed.
"""

from __future__ import annotations

import difflib
import json
import math
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from forge.errors import ConfigError
from forge.fallback import FALL_THROUGH_CATEGORIES, Fallback, FallbackChain
from forge.optimize.settings import validate_optimizations

if TYPE_CHECKING:
    from forge.pricing import ModelPrice

__all__ = [
    "PROVIDER_NAMES",
    "BreakerConfig",
    "ProviderRetryConfig",
    "default_retry",
    "ForgeConfig",
    "ProviderConfig",
    "RateLimitConfig",
    "RetryConfig",
    "find_config_file",
    "load_config",
    "normalize_provider",
]

PROVIDER_NAMES = ("openai", "anthropic", "google", "ollama")
_PROVIDER_ALIASES = {"gemini": "google", "google-genai": "google", "claude": "anthropic"}

# Where each provider's key comes from when the config names none.
_DEFAULT_KEY_ENVS: dict[str, tuple[str, ...]] = {
    "openai": ("OPENAI_API_KEY",),
    "anthropic": ("ANTHROPIC_API_KEY",),
    "google": ("GEMINI_API_KEY", "GOOGLE_API_KEY"),
    "ollama": ("OLLAMA_API_KEY",),
}
_DEFAULT_BASE_URL_ENVS: dict[str, tuple[str, ...]] = {
    "openai": ("OPENAI_BASE_URL",),
    "anthropic": ("ANTHROPIC_BASE_URL",),
    "google": ("GOOGLE_GEMINI_BASE_URL",),
    "ollama": ("OLLAMA_HOST",),
}
# Options only one provider understands; anything else in a provider section is an error.
_PROVIDER_OPTIONS: dict[str, dict[str, type | tuple[type, ...]]] = {
    "openai": {"organization": str, "project": str, "api": str, "max_tokens_param": str},
    "anthropic": {},
    "google": {"api_version": str},
    "ollama": {"keep_alive": (str, int, float)},
}


def normalize_provider(name: str) -> str:
    """Return the canonical provider name (``gemini`` -> ``google``) or raise ConfigError."""
    key = name.strip().lower()
    key = _PROVIDER_ALIASES.get(key, key)
    if key not in PROVIDER_NAMES:
        hint = _did_you_mean(key, [*PROVIDER_NAMES, *_PROVIDER_ALIASES])
        raise ConfigError(
            f"Unknown provider {name!r}; use one of {', '.join(PROVIDER_NAMES)} "
            f"(or 'gemini' for google).{hint}",
            key="provider",
        )
    return key


@dataclass(frozen=True, slots=True)
class RetryConfig:
    """How failed calls are retried (see docs/retry.md)."""

    max_attempts: int = 3
    backoff_factor: float = 2.0
    initial_wait: float = 0.5
    max_wait: float = 30.0
    jitter: bool = True
    respect_retry_after: bool = True


# Each provider fails differently, and its default policy says so:
# - OpenAI: 429s carry reset headers and clear within seconds; 5xx are rare.
# - Anthropic: 529 overloaded can last a while; start slower and wait longer.
# - Gemini: RESOURCE_EXHAUSTED carries a RetryInfo delay of often 10-60 s,
#   which max_wait must admit or the call fails fast instead.
# - Ollama: a local server; a failure is rarely transient (a model still
#   loading is the exception), so retry once, briefly.
_DEFAULT_RETRY: dict[str, RetryConfig] = {
    "openai": RetryConfig(max_attempts=3, initial_wait=0.5, max_wait=30.0),
    "anthropic": RetryConfig(max_attempts=4, initial_wait=1.0, max_wait=60.0),
    "google": RetryConfig(max_attempts=4, initial_wait=1.0, max_wait=60.0),
    "ollama": RetryConfig(max_attempts=2, initial_wait=0.25, max_wait=5.0),
}


def default_retry(provider: str) -> RetryConfig:
    """The retry policy a provider gets when its config sets none."""
    return _DEFAULT_RETRY.get(provider, RetryConfig())


@dataclass(frozen=True, slots=True)
class RateLimitConfig:
    """Client-side limits; ``None`` means unlimited."""

    requests_per_minute: float | None = None
    tokens_per_minute: float | None = None
    burst_seconds: float | None = None  # None: every sliding second within the per-minute slice
    backend: str = "memory"
    # repr=False: a redis:// URL may carry a password (see forge._secrets).
    redis_url: str | None = field(default=None, repr=False)
    budget: str | None = None
    """Name of a shared budget (Redis backend): every process and key configured with the
    same name draws from one bucket. None: one budget per provider, base URL and credentials."""


@dataclass(frozen=True, slots=True)
class BreakerConfig:
    """Circuit breakers of fallback chains (see docs/fallback.md); one per provider, base URL and model.

    Open after ``failures`` consecutive failed requests, or when at least
    ``min_calls`` requests in the last ``window`` seconds failed at ``failure_rate``
    or more; stay open ``cooldown`` seconds (times ``backoff_factor`` after each
    failed probe, up to ``max_cooldown``; never less than a server's Retry-After);
    a probe not reported within ``probe_timeout`` lets another through.
    ``backend = "redis"`` shares breaker state through ``redis_url``.

    ``slow_call``: a call not answered within this many seconds (a stream: not
    opened up to its first event) counts as a failure at once, without waiting for
    its timeout, and while it is out the link takes no new calls (they go to the
    next link); None: a call is judged only when it ends.
    """

    failures: int = 5
    failure_rate: float = 0.5
    window: float = 60.0
    min_calls: int = 20
    cooldown: float = 30.0
    max_cooldown: float = 600.0
    backoff_factor: float = 2.0
    probe_timeout: float = 60.0
    backend: str = "memory"
    redis_url: str | None = field(default=None, repr=False)  # may hold a password (see forge._secrets)
    slow_call: float | None = None


@dataclass(frozen=True, slots=True)
class ProviderConfig:
    """Settings for one provider."""

    name: str
    api_key: str | None = field(default=None, repr=False)  # never printed (see forge._secrets)
    api_key_env: str | None = None
    base_url: str | None = None
    timeout: float = 120.0
    """Seconds one HTTP request may wait for its next bytes (the whole reply, when not streamed)."""
    connect_timeout: float = 5.0
    """Seconds allowed to open a connection."""
    deadline: float | None = 300.0
    """Seconds a whole call may take, every retry and wait included (a stream: until its first event)."""
    max_connections: int = 100
    retry: RetryConfig = field(default_factory=RetryConfig)
    retry_overrides: Mapping[str, RetryConfig] = field(default_factory=dict)
    rate_limit: RateLimitConfig = field(default_factory=RateLimitConfig)
    optimizations: Mapping[str, object] = field(default_factory=dict)
    models: Mapping[str, str] = field(default_factory=dict)
    options: Mapping[str, object] = field(default_factory=dict)
    pricing: Mapping[str, ModelPrice] = field(default_factory=dict)
    source: str = "defaults"
    cache_scope: str = "credentials"
    """``credentials``: cached replies are shared only by calls with the same base URL and
    credentials; ``shared``: by every key on the same base URL (see docs/configuration.md)."""

    def __repr__(self) -> str:
        # The dataclass repr, with a base URL's password (a proxy's userinfo) masked.
        from dataclasses import fields

        from forge._secrets import redact_url

        shown = ", ".join(
            f"{f.name}={redact_url(self.base_url) if f.name == 'base_url' else getattr(self, f.name)!r}"
            for f in fields(self) if f.repr
        )
        return f"ProviderConfig({shown})"

    def resolve_api_key(self, environ: Mapping[str, str] | None = None) -> str | None:
        """The key to use: ``api_key``, else ``api_key_env``, else the provider's usual env vars."""
        env = os.environ if environ is None else environ
        if self.api_key:
            return self.api_key
        if self.api_key_env:
            return env.get(self.api_key_env) or None
        for var in _DEFAULT_KEY_ENVS[self.name]:
            if env.get(var):
                return env[var]
        return None

    def require_api_key(self, environ: Mapping[str, str] | None = None) -> str:
        """Like :meth:`resolve_api_key` but raise a ConfigError that says how to set the key."""
        key = self.resolve_api_key(environ)
        if key:
            return key
        if self.api_key_env:
            where = (
                f"the environment variable {self.api_key_env} "
                f"(named by providers.{self.name}.api_key_env)"
            )
        else:
            where = " or ".join(_DEFAULT_KEY_ENVS[self.name])
        raise ConfigError(
            f"No API key for provider {self.name!r}: set {where}, "
            f"or set providers.{self.name}.api_key in the config ({self.source}).",
            key=f"providers.{self.name}.api_key",
            source=self.source,
        )

    @property
    def retry_config(self) -> ProviderRetryConfig:
        """This provider's retry and rate-limit settings as one value."""
        return ProviderRetryConfig(self.name, self.retry, self.retry_overrides, self.rate_limit)

    def resolve_base_url(self, environ: Mapping[str, str] | None = None) -> str | None:
        env = os.environ if environ is None else environ
        if self.base_url:
            return self.base_url
        for var in _DEFAULT_BASE_URL_ENVS[self.name]:
            if env.get(var):
                return env[var]
        return None


    def account(self, environ: Mapping[str, str] | None = None) -> str:
        """Who is asked, without a secret: ``<base URL>#<fingerprint of key, organization, project>``.

        Response-cache keys and Redis rate-limit budgets carry it, so two keys (two
        tenants) never share a reply or a budget unless the config says so.
        """
        from forge._secrets import fingerprint, redact_url, register_secret

        env = os.environ if environ is None else environ
        key = self.resolve_api_key(env)
        register_secret(key)
        org, project = self.options.get("organization"), self.options.get("project")
        if self.name == "openai":  # the OpenAI client falls back to these, so the account does too
            org = org or env.get("OPENAI_ORG_ID")
            project = project or env.get("OPENAI_PROJECT_ID")
        parts = [self.name, key, org if isinstance(org, str) else None,
                 project if isinstance(project, str) else None]
        base_url = self.resolve_base_url(env)
        shown = redact_url(base_url)
        if shown != base_url:  # a proxy's password is a credential too: in the digest, never shown
            password = urlsplit(base_url or "").password
            register_secret(password)
            parts.append(password)
        return f"{shown or 'default'}#{fingerprint(*parts)}"


@dataclass(frozen=True, slots=True)
class ProviderRetryConfig:
    """One provider's retry and rate-limit settings: the default policy, per-operation
    overrides (``invoke`` / ``stream`` / ``batch``) and the limits.

    ``ProviderRetryConfig.parse("anthropic", {"retry": {...}, "rate_limit": {...}})``
    validates a provider section's ``retry`` and ``rate_limit`` tables on their own,
    starting from the provider's defaults (:func:`default_retry`).
    """

    provider: str
    retry: RetryConfig
    overrides: Mapping[str, RetryConfig] = field(default_factory=dict)
    rate_limit: RateLimitConfig = field(default_factory=RateLimitConfig)

    @classmethod
    def parse(
        cls, provider: str, section: Mapping[str, object] | None = None, *, source: str = "config dict"
    ) -> ProviderRetryConfig:
        name = normalize_provider(provider)
        data = dict(section or {})
        unknown = [k for k in data if k not in ("retry", "rate_limit")]
        if unknown:
            raise ConfigError(
                f"{source}: providers.{name}: {unknown[0]!r} is not a retry setting; "
                "expected 'retry' and/or 'rate_limit'.",
                key=f"providers.{name}.{unknown[0]}",
                source=source,
            )
        parsed = _Validator(source).provider(name, data)
        return parsed.retry_config

    def for_operation(self, operation: str) -> RetryConfig:
        """The policy for ``invoke``, ``stream`` or ``batch``."""
        return self.overrides.get(operation, self.retry)


@dataclass(frozen=True, slots=True)
class ForgeConfig:
    """The whole configuration: providers, model aliases, and where it came from."""

    providers: Mapping[str, ProviderConfig] = field(default_factory=dict)
    aliases: Mapping[str, str] = field(default_factory=dict)
    enable_optimizations: bool = False
    source: str = "defaults"
    fallbacks: Mapping[str, FallbackChain] = field(default_factory=dict)
    """Fallback chains by alias or ``provider:model`` (see docs/fallback.md)."""
    breaker: BreakerConfig = field(default_factory=BreakerConfig)

    def provider(self, name: str) -> ProviderConfig:
        canonical = normalize_provider(name)
        cfg = self.providers.get(canonical)
        if cfg is not None:
            return cfg
        return ProviderConfig(name=canonical, retry=default_retry(canonical), source=self.source)


# --------------------------------------------------------------------------- loading


def find_config_file(environ: Mapping[str, str] | None = None, cwd: Path | None = None) -> Path | None:
    """The config file forge would load: ``$FORGE_CONFIG``, ``./forge.toml``, the user config dir."""
    env = os.environ if environ is None else environ
    explicit = env.get("FORGE_CONFIG")
    if explicit:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise ConfigError(
                f"FORGE_CONFIG points to {str(path)!r}, which is not a file; "
                "fix the path or unset FORGE_CONFIG.",
                key="FORGE_CONFIG",
            )
        return path
    local = (cwd or Path.cwd()) / "forge.toml"
    if local.is_file():
        return local
    base = env.get("XDG_CONFIG_HOME") or str(Path("~/.config").expanduser())
    for name in ("forge.toml", "forge.json"):
        user = Path(base) / "forge" / name
        if user.is_file():
            return user
    return None


def load_config(
    source: ForgeConfig | Mapping[str, object] | str | os.PathLike[str] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
) -> ForgeConfig:
    """Load and validate a config from a dict, a TOML/JSON file path, or the default search.

    Raises:
        ConfigError: the file is missing or malformed, or a value is invalid.
    """
    if isinstance(source, ForgeConfig):
        return source
    if source is None:
        path = find_config_file(environ)
        if path is None:
            return ForgeConfig()
        return _parse(_read_file(path), str(path))
    if isinstance(source, Mapping):
        return _parse(source, "config dict")
    if isinstance(source, (str, os.PathLike)):
        path = Path(source).expanduser()
        if not path.is_file():
            raise ConfigError(
                f"Config file {str(path)!r} does not exist; pass an existing TOML or JSON file, "
                "a dict, or None for the defaults.",
                source=str(path),
            )
        return _parse(_read_file(path), str(path))
    raise ConfigError(
        f"config must be None, a dict, or a path to a TOML/JSON file; got {type(source).__name__}."
    )


def _read_file(path: Path) -> Mapping[str, object]:
    text = path.read_text(encoding="utf-8")
    try:
        data = json.loads(text) if path.suffix.lower() == ".json" else tomllib.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"{path} is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}.",
            source=str(path),
        ) from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}.", source=str(path)) from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a table/object at the top level.", source=str(path))
    return data


# --------------------------------------------------------------------------- validation

_TOP_KEYS = ("providers", "aliases", "enable_optimizations", "fallbacks", "breaker")
_PROVIDER_KEYS = (
    "api_key",
    "api_key_env",
    "base_url",
    "timeout",
    "connect_timeout",
    "deadline",
    "max_connections",
    "retry",
    "rate_limit",
    "optimizations",
    "models",
    "pricing",
    "cache_scope",
)
_CACHE_SCOPES = ("credentials", "shared")
_BUDGET_NAME = re.compile(r"[A-Za-z0-9._-]{1,64}")
_PRICE_KEYS = ("input", "output", "cached_input", "cache_write", "cache_write_1h", "batch_discount")
_RETRY_OPERATIONS = ("invoke", "stream", "batch")


def _did_you_mean(word: str, choices: list[str] | tuple[str, ...]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" Did you mean {close[0]!r}?" if close else ""


class _Validator:
    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, key: str, message: str) -> ConfigError:
        return ConfigError(f"{self.source}: {key}: {message}", key=key, source=self.source)

    def table(self, value: object, key: str) -> Mapping[str, object]:
        if not isinstance(value, Mapping):
            raise self.fail(key, f"expected a table/object, got {type(value).__name__} {value!r}.")
        for k in value:
            if not isinstance(k, str):
                raise self.fail(key, f"keys must be strings, got {k!r}.")
        return value

    def known_keys(self, data: Mapping[str, object], key: str, allowed: tuple[str, ...]) -> None:
        for k in data:
            if k not in allowed:
                where = f"{key}.{k}" if key else k
                raise self.fail(
                    where,
                    f"unknown key. Allowed here: {', '.join(allowed)}.{_did_you_mean(k, allowed)}",
                )

    def number(
        self,
        data: Mapping[str, object],
        key: str,
        name: str,
        default: float,
        *,
        minimum: float = 0.0,
        exclusive: bool = False,
        integer: bool = False,
    ) -> float:
        if name not in data:
            return default
        value = data[name]
        full = f"{key}.{name}"
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            kind = "a whole number" if integer else "a number"
            raise self.fail(full, f"expected {kind}, got {type(value).__name__} {value!r}.")
        if integer and not (isinstance(value, int) or float(value).is_integer()):
            raise self.fail(full, f"expected a whole number, got {value!r}.")
        if math.isnan(value) or math.isinf(value):
            raise self.fail(full, f"expected a finite number, got {value!r}.")
        if value < minimum or (exclusive and value == minimum):
            op = ">" if exclusive else ">="
            raise self.fail(full, f"must be {op} {minimum:g}, got {value!r}.")
        return float(value)

    def optional_number(
        self, data: Mapping[str, object], key: str, name: str, *, minimum: float = 0.0
    ) -> float | None:
        if data.get(name) is None:
            return None
        return self.number(data, key, name, 0.0, minimum=minimum, exclusive=True)

    def boolean(self, data: Mapping[str, object], key: str, name: str, default: bool) -> bool:
        if name not in data:
            return default
        value = data[name]
        if not isinstance(value, bool):
            raise self.fail(f"{key}.{name}" if key else name, f"expected true or false, got {value!r}.")
        return value

    def string(self, data: Mapping[str, object], key: str, name: str) -> str | None:
        if data.get(name) is None:
            return None
        value = data[name]
        if not isinstance(value, str) or not value.strip():
            shown = f"a {type(value).__name__}" if name == "api_key" else repr(value)  # never echo a key
            raise self.fail(f"{key}.{name}", f"expected a non-empty string, got {shown}.")
        return value.strip()

    def url(self, data: Mapping[str, object], key: str, name: str) -> str | None:
        value = self.string(data, key, name)
        if value is not None and not value.startswith(("http://", "https://")):
            raise self.fail(
                f"{key}.{name}",
                f"expected an http:// or https:// URL, got {value!r} "
                "(e.g. 'http://127.0.0.1:8000/v1').",
            )
        return value

    def retry(
        self, value: object, key: str, base: RetryConfig | None = None, *, operations: bool = True
    ) -> RetryConfig:
        data = self.table(value, key)
        allowed = (*RetryConfig.__slots__, *(_RETRY_OPERATIONS if operations else ()))
        self.known_keys(data, key, tuple(allowed))
        b = base or RetryConfig()
        cfg = RetryConfig(
            max_attempts=int(
                self.number(data, key, "max_attempts", b.max_attempts, minimum=1, integer=True)
            ),
            backoff_factor=self.number(data, key, "backoff_factor", b.backoff_factor, minimum=1),
            initial_wait=self.number(data, key, "initial_wait", b.initial_wait),
            max_wait=self.number(data, key, "max_wait", b.max_wait),
            jitter=self.boolean(data, key, "jitter", b.jitter),
            respect_retry_after=self.boolean(data, key, "respect_retry_after", b.respect_retry_after),
        )
        if cfg.max_wait < cfg.initial_wait:
            raise self.fail(
                f"{key}.max_wait",
                f"must be >= initial_wait ({cfg.initial_wait:g}), got {cfg.max_wait:g}.",
            )
        return cfg

    def rate_limit(self, value: object, key: str) -> RateLimitConfig:
        data = self.table(value, key)
        self.known_keys(data, key, tuple(RateLimitConfig.__slots__))
        backend = self.string(data, key, "backend") or "memory"
        if backend not in ("memory", "redis"):
            raise self.fail(f"{key}.backend", f"expected 'memory' or 'redis', got {backend!r}.")
        redis_url = self.string(data, key, "redis_url")
        if redis_url is not None and not redis_url.startswith(("redis://", "rediss://", "unix://")):
            from forge._secrets import redact_url

            raise self.fail(
                f"{key}.redis_url",
                f"expected a redis://, rediss:// or unix:// URL, got {redact_url(redis_url)!r}.",
            )
        budget = self.string(data, key, "budget")
        if budget is not None and not _BUDGET_NAME.fullmatch(budget):
            raise self.fail(
                f"{key}.budget",
                f"expected a name of 1-64 letters, digits, '.', '_' or '-' (e.g. 'org-acme'), "
                f"got {budget!r}.",
            )
        if backend == "redis" and redis_url is None:
            raise self.fail(
                f"{key}.redis_url",
                "backend 'redis' needs redis_url (e.g. 'redis://localhost:6379/0').",
            )
        return RateLimitConfig(
            requests_per_minute=self.optional_number(data, key, "requests_per_minute"),
            tokens_per_minute=self.optional_number(data, key, "tokens_per_minute"),
            burst_seconds=(
                self.number(data, key, "burst_seconds", 1.0, exclusive=True)
                if "burst_seconds" in data
                else None
            ),
            backend=backend,
            redis_url=redis_url,
            budget=budget,
        )

    def pricing(self, value: object, key: str) -> dict[str, ModelPrice]:
        """``family = {input, output, ...}`` in USD per million tokens."""
        from forge.pricing import ModelPrice

        out: dict[str, ModelPrice] = {}
        for family, entry in self.table(value, key).items():
            where = f"{key}.{family}"
            data = self.table(entry, where)
            self.known_keys(data, where, _PRICE_KEYS)
            for required in ("input", "output"):
                if required not in data:
                    raise self.fail(
                        where,
                        f"needs '{required}' (USD per million tokens), e.g. {{input = 2.5, output = 10.0}}.",
                    )
            optional = {
                name: self.number(data, where, name, 0.0)
                for name in ("cached_input", "cache_write", "cache_write_1h")
                if name in data
            }
            discount = self.number(data, where, "batch_discount", 0.5)
            if discount > 1:
                raise self.fail(f"{where}.batch_discount", f"must be between 0 and 1, got {discount:g}.")
            out[family] = ModelPrice(
                input=self.number(data, where, "input", 0.0),
                output=self.number(data, where, "output", 0.0),
                cached_input=optional.get("cached_input"),
                cache_write=optional.get("cache_write"),
                cache_write_1h=optional.get("cache_write_1h"),
                batch_discount=discount,
            )
        return out

    def string_map(self, value: object, key: str) -> dict[str, str]:
        data = self.table(value, key)
        out: dict[str, str] = {}
        for k, v in data.items():
            if not isinstance(v, str) or not v.strip():
                raise self.fail(f"{key}.{k}", f"expected a non-empty model name, got {v!r}.")
            out[k] = v.strip()
        return out

    def model_ref(self, value: object, key: str, aliases: Mapping[str, str]) -> str:
        if not isinstance(value, str) or not value.strip():
            raise self.fail(key, f"expected 'provider:model' or an alias, got {value!r}.")
        ref = value.strip()
        if ref in aliases:
            return ref
        prefix, sep, model = ref.partition(":")
        if not sep or not model.strip():
            raise self.fail(
                key,
                f"expected 'provider:model' (e.g. 'anthropic:claude-haiku-4-5') or a configured alias "
                f"({', '.join(sorted(aliases)) or 'none configured'}), got {ref!r}.",
            )
        try:
            provider = normalize_provider(prefix)
        except ConfigError as exc:
            raise self.fail(key, str(exc)) from None
        return f"{provider}:{model.strip()}"

    def fallback_chain(self, value: object, key: str, aliases: Mapping[str, str]) -> FallbackChain:
        data: Mapping[str, object]
        if isinstance(value, list):
            data = {"models": value}
        else:
            data = self.table(value, key)
            self.known_keys(data, key, ("models", "fall_through", "max_limiter_wait", "hedge_after"))
        models = data.get("models")
        if not isinstance(models, list) or not models:
            raise self.fail(
                f"{key}.models",
                "expected a non-empty list of fallbacks, e.g. ['anthropic:claude-haiku-4-5', "
                f"{{model = 'google:gemini-2.5-pro', larger_context = true}}]; got {models!r}.",
            )
        links: list[Fallback] = []
        for i, item in enumerate(models):
            where = f"{key}.models[{i}]"
            if isinstance(item, Mapping):
                entry = self.table(item, where)
                self.known_keys(entry, where, ("model", "larger_context"))
                if "model" not in entry:
                    raise self.fail(where, "needs 'model' (e.g. 'google:gemini-2.5-pro').")
                links.append(Fallback(
                    self.model_ref(entry["model"], f"{where}.model", aliases),
                    larger_context=self.boolean(entry, where, "larger_context", False),
                ))
            else:
                links.append(Fallback(self.model_ref(item, where, aliases)))
        rules = FallbackChain(tuple(links)).fall_through
        if "fall_through" in data:
            listed = data["fall_through"]
            if not isinstance(listed, list) or not all(isinstance(x, str) for x in listed):
                raise self.fail(f"{key}.fall_through", f"expected a list of error kinds, got {listed!r}.")
            for kind in listed:
                if kind not in FALL_THROUGH_CATEGORIES:
                    raise self.fail(
                        f"{key}.fall_through",
                        f"unknown error kind {kind!r}. Allowed: {', '.join(FALL_THROUGH_CATEGORIES)}."
                        f"{_did_you_mean(kind, FALL_THROUGH_CATEGORIES)}",
                    )
            rules = frozenset(listed)
        bound = None
        if data.get("max_limiter_wait") is not None:
            bound = self.number(data, key, "max_limiter_wait", 0.0)
        hedge = self.optional_number(data, key, "hedge_after")
        return FallbackChain(tuple(links), fall_through=rules, max_limiter_wait=bound, hedge_after=hedge)

    def fallbacks(self, value: object, aliases: Mapping[str, str]) -> dict[str, FallbackChain]:
        out: dict[str, FallbackChain] = {}
        for name, entry in self.table(value, "fallbacks").items():
            key = f"fallbacks.{name}"
            primary = self.model_ref(name, key, aliases)
            if primary in out:
                raise self.fail(key, f"{primary!r} has two fallback chains; keep one.")
            out[primary] = self.fallback_chain(entry, key, aliases)
        return out

    def breaker(self, value: object, redis_default: str | None) -> BreakerConfig:
        from forge._secrets import redact_url, register_url_password

        key = "breaker"
        data = self.table(value, key)
        self.known_keys(data, key, tuple(BreakerConfig.__slots__))
        b = BreakerConfig()
        backend = self.string(data, key, "backend") or "memory"
        if backend not in ("memory", "redis"):
            raise self.fail(f"{key}.backend", f"expected 'memory' or 'redis', got {backend!r}.")
        redis_url = self.string(data, key, "redis_url")
        if redis_url is not None and not redis_url.startswith(("redis://", "rediss://", "unix://")):
            raise self.fail(
                f"{key}.redis_url",
                f"expected a redis://, rediss:// or unix:// URL, got {redact_url(redis_url)!r}.",
            )
        register_url_password(redis_url)  # never printed, whatever error quotes it
        if backend == "redis" and redis_url is None:
            redis_url = redis_default
            if redis_url is None:
                raise self.fail(
                    f"{key}.redis_url",
                    "backend 'redis' needs redis_url (e.g. 'redis://localhost:6379/0'), or a provider "
                    "rate_limit.redis_url to share.",
                )
        rate = self.number(data, key, "failure_rate", b.failure_rate, exclusive=True)
        if rate > 1:
            raise self.fail(f"{key}.failure_rate", f"must be a share between 0 and 1, got {rate:g}.")
        cfg = BreakerConfig(
            failures=int(self.number(data, key, "failures", b.failures, minimum=1, integer=True)),
            failure_rate=rate,
            window=self.number(data, key, "window", b.window, exclusive=True),
            min_calls=int(self.number(data, key, "min_calls", b.min_calls, minimum=1, integer=True)),
            cooldown=self.number(data, key, "cooldown", b.cooldown, exclusive=True),
            max_cooldown=self.number(data, key, "max_cooldown", b.max_cooldown, exclusive=True),
            backoff_factor=self.number(data, key, "backoff_factor", b.backoff_factor, minimum=1),
            probe_timeout=self.number(data, key, "probe_timeout", b.probe_timeout, exclusive=True),
            backend=backend,
            redis_url=redis_url,
            slow_call=self.optional_number(data, key, "slow_call"),
        )
        if cfg.max_cooldown < cfg.cooldown:
            raise self.fail(
                f"{key}.max_cooldown", f"must be >= cooldown ({cfg.cooldown:g}), got {cfg.max_cooldown:g}."
            )
        return cfg

    def provider_options(self, canonical: str, data: Mapping[str, object], key: str) -> dict[str, object]:
        """The provider's own options (``_PROVIDER_OPTIONS``), each of its kind."""
        options: dict[str, object] = {}
        for opt, kind in _PROVIDER_OPTIONS[canonical].items():
            if opt in data:
                if isinstance(data[opt], bool) or not isinstance(data[opt], kind):
                    raise self.fail(f"{key}.{opt}", f"expected {_kind_name(kind)}, got {data[opt]!r}.")
                options[opt] = data[opt]
        if canonical == "openai" and options.get("api", "chat") not in ("chat", "responses"):
            raise self.fail(f"{key}.api", f"expected 'chat' or 'responses', got {options['api']!r}.")
        if canonical == "openai" and options.get("max_tokens_param", "max_tokens") not in (
            "max_tokens",
            "max_completion_tokens",
        ):
            raise self.fail(
                f"{key}.max_tokens_param",
                f"expected 'max_tokens' or 'max_completion_tokens', got {options['max_tokens_param']!r}.",
            )
        return options

    def provider(self, name: str, value: object) -> ProviderConfig:
        key = f"providers.{name}"
        canonical = normalize_provider(name)
        data = self.table(value, key)
        self.known_keys(data, key, (*_PROVIDER_KEYS, *_PROVIDER_OPTIONS[canonical]))
        options = self.provider_options(canonical, data, key)
        api_key_env = self.string(data, key, "api_key_env")
        if api_key_env is not None and not api_key_env.replace("_", "").isalnum():
            raise self.fail(
                f"{key}.api_key_env",
                f"expected the NAME of an environment variable (like 'OPENAI_API_KEY'), got {api_key_env!r}.",
            )
        defaults = default_retry(canonical)
        retry = self.retry(data["retry"], f"{key}.retry", defaults) if "retry" in data else defaults
        overrides: dict[str, RetryConfig] = {}
        if "retry" in data:
            retry_table = self.table(data["retry"], f"{key}.retry")
            for op in _RETRY_OPERATIONS:
                if op in retry_table:
                    overrides[op] = self.retry(
                        retry_table[op], f"{key}.retry.{op}", retry, operations=False
                    )
        cache_scope = self.string(data, key, "cache_scope") or "credentials"
        if cache_scope not in _CACHE_SCOPES:
            raise self.fail(
                f"{key}.cache_scope",
                f"expected 'credentials' (one cache per base URL and key) or 'shared' (every key on "
                f"the base URL shares cached replies), got {cache_scope!r}.",
            )
        optimizations = validate_optimizations(
            canonical, data.get("optimizations", {}), key=f"{key}.optimizations", source=self.source
        )
        return ProviderConfig(
            name=canonical,
            api_key=self.string(data, key, "api_key"),
            api_key_env=api_key_env,
            base_url=self.url(data, key, "base_url"),
            timeout=self.number(data, key, "timeout", 120.0, exclusive=True),
            connect_timeout=self.number(data, key, "connect_timeout", 5.0, exclusive=True),
            deadline=self.number(data, key, "deadline", 300.0, exclusive=True),
            max_connections=int(
                self.number(data, key, "max_connections", 100, minimum=1, integer=True)
            ),
            retry=retry,
            retry_overrides=overrides,
            rate_limit=(
                self.rate_limit(data["rate_limit"], f"{key}.rate_limit")
                if "rate_limit" in data
                else RateLimitConfig()
            ),
            optimizations=optimizations,
            models=self.string_map(data.get("models", {}), f"{key}.models"),
            options=options,
            pricing=self.pricing(data.get("pricing", {}), f"{key}.pricing"),
            source=self.source,
            cache_scope=cache_scope,
        )


def _kind_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    names = {"str": "a string", "int": "a whole number", "float": "a number"}
    return " or ".join(names.get(k.__name__, k.__name__) for k in kinds)


def _parse(data: Mapping[str, object], source: str) -> ForgeConfig:
    v = _Validator(source)
    v.table(data, "(top level)")
    v.known_keys(data, "", _TOP_KEYS)
    providers: dict[str, ProviderConfig] = {}
    for name, section in v.table(data.get("providers", {}), "providers").items():
        try:
            cfg = v.provider(name, section)
        except ConfigError as exc:
            if exc.source is None:
                raise v.fail(f"providers.{name}", str(exc)) from None
            raise
        if cfg.name in providers:
            raise v.fail(
                f"providers.{name}",
                f"provider {cfg.name!r} is configured twice (check for both 'gemini' and 'google').",
            )
        providers[cfg.name] = cfg
    aliases = v.string_map(data.get("aliases", {}), "aliases")
    for alias, target in aliases.items():
        prefix, sep, model = target.partition(":")
        if not sep or not model:
            raise v.fail(
                f"aliases.{alias}",
                f"expected 'provider:model' (e.g. 'openai:gpt-4o-mini'), got {target!r}.",
            )
        try:
            normalize_provider(prefix)
        except ConfigError as exc:
            raise v.fail(f"aliases.{alias}", str(exc)) from None
    redis_default = next(
        (p.rate_limit.redis_url for p in providers.values() if p.rate_limit.redis_url), None
    )
    return ForgeConfig(
        providers=providers,
        aliases=aliases,
        enable_optimizations=v.boolean(data, "", "enable_optimizations", False),
        source=source,
        fallbacks=v.fallbacks(data.get("fallbacks", {}), aliases),
        breaker=v.breaker(data.get("breaker", {}), redis_default),
    )
