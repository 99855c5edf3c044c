"""Registry: configuration in, :class:`~forge.LLM` handles out, plus one-call helpers.

::

    async with forge.Registry() as reg:
        reply = await reg.invoke("openai:gpt-4o-mini", "Say hi")
        async with reg.stream("anthropic:claude-haiku-4-5", "Tell me a story") as s:
            async for text in s:
                print(text, end="")
"""

from __future__ import annotations

import asyncio
import importlib
import os
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from types import TracebackType
from typing import TYPE_CHECKING

from forge.config import PROVIDER_NAMES, ForgeConfig, ProviderConfig, load_config, normalize_provider
from forge.errors import ConfigError
from forge.llm import LLM, Prompt
from forge.metrics import Metrics
from forge.ratelimit import RequestCounter, counter_from_config
from forge.retry import RetryEvent, RetryPolicy, RetryWrapper

if TYPE_CHECKING:
    from forge.streaming import Stream
    from forge.types import Provider, Response

__all__ = ["Registry", "parse_model_ref"]

_PROVIDER_MODULES = {
    "openai": ("forge.providers.openai", "OpenAIProvider", "openai"),
    "anthropic": ("forge.providers.anthropic", "AnthropicProvider", "anthropic"),
    "google": ("forge.providers.google", "GoogleProvider", "google"),
    "ollama": ("forge.providers.ollama", "OllamaProvider", "ollama"),
}
# Bare model names forge can attribute to a provider without being told.
_MODEL_PREFIXES = (
    ("gpt-", "openai"),
    ("o1", "openai"),
    ("o3", "openai"),
    ("o4", "openai"),
    ("chatgpt-", "openai"),
    ("claude-", "anthropic"),
    ("gemini-", "google"),
)


def parse_model_ref(ref: str, config: ForgeConfig) -> tuple[str, str]:
    """Resolve ``provider:model``, a configured alias, or a well-known bare model name.

    Returns ``(provider, vendor_model)``. Raises ConfigError saying how to write it.
    """
    if not isinstance(ref, str) or not ref.strip():
        raise ConfigError(
            f"Model reference must be a non-empty string like 'openai:gpt-4o-mini', got {ref!r}."
        )
    ref = ref.strip()
    seen: set[str] = set()
    while ref in config.aliases and ref not in seen:
        seen.add(ref)
        ref = config.aliases[ref]
    provider, sep, model = ref.partition(":")
    if sep:
        if provider.strip().lower() not in (*PROVIDER_NAMES, "gemini", "google-genai", "claude"):
            # An Ollama tag like 'llama3:8b' has a colon but no provider prefix.
            raise ConfigError(
                f"Model reference {ref!r} does not start with a provider; write 'ollama:{ref}' for an "
                f"Ollama model, or use one of {', '.join(PROVIDER_NAMES)} as the prefix.",
                key="model",
            )
        name = normalize_provider(provider)
        model = model.strip()
        if not model:
            raise ConfigError(f"Model reference {ref!r} names no model after the colon.", key="model")
        aliases = config.provider(name).models
        return name, aliases.get(model, model)
    for prefix, name in _MODEL_PREFIXES:
        if ref.startswith(prefix):
            return name, ref
    known = ", ".join(sorted(config.aliases)) or "none configured"
    raise ConfigError(
        f"Cannot tell which provider serves model {ref!r}: write it as 'provider:model' "
        f"(e.g. 'ollama:{ref}' or 'openai:{ref}'), or use a configured alias ({known}).",
        key="model",
    )


class Registry:
    """Turns configuration into :class:`~forge.LLM` handles; owns and closes the vendor clients.

    Args:
        config: ``None`` (search ``$FORGE_CONFIG``, ``./forge.toml``, the user config
            dir, else defaults), a dict, a path to a TOML/JSON file, or a ForgeConfig.
        enable_optimizations: override the config's ``enable_optimizations``.
        clock, sleep, rng: injected into every LLM (tests use fakes).
        on_retry: called with a :class:`~forge.retry.RetryEvent` before each retry wait.

    Raises:
        ConfigError: the config is missing, malformed or invalid.
    """

    def __init__(
        self,
        config: ForgeConfig | Mapping[str, object] | str | os.PathLike[str] | None = None,
        *,
        enable_optimizations: bool | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
        rng: Callable[[], float] = random.random,
        on_retry: Callable[[RetryEvent], object] | None = None,
    ) -> None:
        self.config = load_config(config)
        self.enable_optimizations = (
            self.config.enable_optimizations if enable_optimizations is None else enable_optimizations
        )
        self._clock = clock
        self._sleep = sleep
        self._rng = rng
        self._on_retry = on_retry
        self._providers: dict[str, Provider] = {}
        self._limiters: dict[str, RequestCounter | None] = {}
        self.metrics = Metrics(clock)
        self._llms: dict[str, LLM] = {}
        self._closed = False

    # ------------------------------------------------------------------ handles

    def provider_config(self, name: str) -> ProviderConfig:
        """The effective config of one provider (defaults when not configured)."""
        return self.config.provider(name)

    def _provider(self, name: str) -> Provider:
        if self._closed:
            raise RuntimeError("This Registry is closed; create a new one.")
        existing = self._providers.get(name)
        if existing is not None:
            return existing
        module_name, class_name, extra = _PROVIDER_MODULES[name]
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            missing = exc.name or str(exc)
            raise ConfigError(
                f"Provider {name!r} needs the {missing!r} package, which is not installed: "
                f"pip install 'forge-llm[{extra}]'.",
                key=f"providers.{name}",
            ) from exc
        cls = getattr(module, class_name)
        provider: Provider = cls(self.provider_config(name))
        self._providers[name] = provider
        return provider

    def get_llm(self, model: str) -> LLM:
        """An :class:`~forge.LLM` for ``provider:model`` or a configured alias (cached per name).

        Raises:
            ConfigError: unknown provider or alias, missing package or API key.
        """
        cached = self._llms.get(model)
        if cached is not None:
            return cached
        name, vendor_model = parse_model_ref(model, self.config)
        provider = self._provider(name)
        pcfg = self.provider_config(name)
        llm = LLM(
            provider,
            vendor_model,
            config=pcfg,
            retry=RetryWrapper(
                RetryPolicy.from_config(pcfg.retry),
                overrides={op: RetryPolicy.from_config(c) for op, c in pcfg.retry_overrides.items()},
                limiter=self.limiter(name),
                sleep=self._sleep,
                rng=self._rng,
                on_retry=self._on_retry,
            ),
            clock=self._clock,
            metrics=self.metrics,
        )
        self._llms[model] = llm
        return llm

    def limiter(self, provider: str) -> RequestCounter | None:
        """The provider's rate limiter (None when it has no limits), shared by all its models."""
        name = normalize_provider(provider)
        if name not in self._limiters:
            self._limiters[name] = counter_from_config(
                name, self.provider_config(name).rate_limit, clock=self._clock, sleep=self._sleep
            )
        return self._limiters[name]

    # ------------------------------------------------------------------ one-call helpers

    async def invoke(self, model: str, prompt: Prompt, **params: object) -> Response:
        """``get_llm(model).invoke(prompt, **params)``."""
        return await self.get_llm(model).invoke(prompt, **params)

    def stream(self, model: str, prompt: Prompt, **params: object) -> Stream:
        """``get_llm(model).stream(prompt, **params)``: a :class:`~forge.Stream` of text deltas."""
        return self.get_llm(model).stream(prompt, **params)  # type: ignore[arg-type]

    async def stream_to_file(
        self, model: str, prompt: Prompt, path: str | os.PathLike[str], **params: object
    ) -> Response:
        """Stream the reply into ``path`` at constant memory; see :meth:`forge.Stream.to_file`."""
        return await self.stream(model, prompt, **params).to_file(path)

    async def stream_with_callback(
        self, model: str, prompt: Prompt, callback: Callable[[str], object], **params: object
    ) -> Response:
        """Stream, calling ``callback(text)`` (sync or async) per piece; return the Response."""
        s = self.get_llm(model).stream(prompt, on_chunk=callback, **params)  # type: ignore[arg-type]
        async with s:
            return await s.collect()

    # ------------------------------------------------------------------ lifecycle

    async def aclose(self) -> None:
        """Close every vendor client this registry created."""
        self._closed = True
        providers, self._providers = list(self._providers.values()), {}
        self._llms.clear()
        for provider in providers:
            await provider.aclose()

    async def __aenter__(self) -> Registry:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
