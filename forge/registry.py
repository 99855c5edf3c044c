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
import contextlib
import importlib
import os
import random
import sys
import time
from collections.abc import Awaitable, Callable, Mapping
from types import TracebackType
from typing import TYPE_CHECKING

from typing_extensions import Unpack

from forge import _otel
from forge._otel import Telemetry
from forge._params import (
    InvokeParams,
    RequestParams,
    StreamCallbackParams,
    StreamRequestParams,
    request_params,
)
from forge.cache import MemoryResponseCache, ResponseCache
from forge.config import PROVIDER_NAMES, ForgeConfig, ProviderConfig, load_config, normalize_provider
from forge.errors import BatchError, ConfigError
from forge.llm import LLM, Prompt
from forge.metrics import Metrics
from forge.ratelimit import RequestCounter, counter_from_config
from forge.retry import RetryEvent, RetryPolicy, RetryWrapper

if TYPE_CHECKING:
    from collections.abc import Sequence

    from forge.batch import BatchMode, BatchProcessor, PollSchedule, ProgressHandler
    from forge.breaker import CircuitBreakers
    from forge.errors import ForgeError
    from forge.fallback import Fallback, FallbackChain, FallbackLLM
    from forge.jobs import BatchJob, JobStore
    from forge.optimize import ProviderOptimizer
    from forge.streaming import Stream
    from forge.types import BatchStatus, Provider, Request, Response

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
        enable_optimizations: override the config's ``enable_optimizations``: True turns
            every provider's optimizations on (unless its ``optimizations`` section says
            ``enabled = false``), False turns them all off. See docs/optimization.md.
        response_cache: where ``get_llm(..., enable_cache=True)`` handles keep replies
            (default: one in-process :class:`~forge.cache.MemoryResponseCache`; pass a
            :class:`~forge.cache.RedisResponseCache` to share it between processes).
        clock, sleep, rng: injected into every LLM (tests use fakes).
        on_retry: called with a :class:`~forge.retry.RetryEvent` before each retry wait.
        telemetry: OpenTelemetry spans and metrics in the GenAI conventions
            (docs/observability.md): ``None`` (default) uses the global providers once the
            application configures them, ``False`` turns them off, a
            :class:`~forge.Telemetry` names the providers to use.

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
        response_cache: ResponseCache | None = None,
        telemetry: Telemetry | bool | None = None,
    ) -> None:
        self.config = load_config(config)
        self.enable_optimizations = (
            self.config.enable_optimizations if enable_optimizations is None else enable_optimizations
        )
        self._optimizations_forced_off = enable_optimizations is False
        self._optimizers: dict[str, ProviderOptimizer | None] = {}
        self._response_cache = response_cache
        self._owns_response_cache = False
        self._clock = clock
        self._sleep = sleep
        self._rng = rng
        self._on_retry = on_retry
        self._providers: dict[str, Provider] = {}
        self._limiters: dict[str, RequestCounter | None] = {}
        self.metrics = Metrics(clock)
        self.telemetry = _otel.resolve(telemetry)
        if self.telemetry is not None and _otel.opentelemetry_installed():
            self.telemetry.subscribe(self.metrics, self._server)
        self._llms: dict[str, LLM] = {}
        self._chains: dict[tuple[str, FallbackChain], FallbackLLM] = {}
        self._breakers: CircuitBreakers | None = None
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
        pcfg = self.provider_config(name)
        optimizer = self.optimizer(name)
        if optimizer is not None:
            pcfg = optimizer.optimize_config(pcfg)
        provider: Provider = cls(pcfg)
        if optimizer is not None:
            optimizer.bind(provider)
        self._providers[name] = provider
        return provider

    def optimizer(self, provider: str) -> ProviderOptimizer | None:
        """The provider's optimizer (None when its optimizations are off), shared by all its models."""
        name = normalize_provider(provider)
        if name not in self._optimizers:
            from forge.optimize import optimizations_enabled, optimizer_for

            section = self.provider_config(name).optimizations
            on = not self._optimizations_forced_off and optimizations_enabled(
                section, self.enable_optimizations
            )
            self._optimizers[name] = optimizer_for(name, section, clock=self._clock) if on else None
        return self._optimizers[name]

    @property
    def response_cache(self) -> ResponseCache:
        """The cache behind ``get_llm(..., enable_cache=True)`` handles."""
        if self._response_cache is None:
            self._response_cache = MemoryResponseCache(clock=self._clock)
            self._owns_response_cache = True
        return self._response_cache

    def get_llm(self, model: str, *, enable_cache: bool = False, cache_ttl: float = 300.0) -> LLM:
        """An :class:`~forge.LLM` for ``provider:model`` or a configured alias (cached per name and options).

        Args:
            enable_cache: serve identical requests from :attr:`response_cache` for
                ``cache_ttl`` seconds instead of calling the provider again (see
                :mod:`forge.cache`); replies from it have ``cached=True`` and cost 0.

        Raises:
            ConfigError: unknown provider or alias, missing package or API key.
        """
        if cache_ttl <= 0:
            raise ValueError(f"cache_ttl must be a positive number of seconds, got {cache_ttl!r}.")
        handle = f"{model}\x00cache={cache_ttl:g}" if enable_cache else model
        cached = self._llms.get(handle)
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
            optimizer=self.optimizer(name),
            response_cache=self.response_cache if enable_cache else None,
            cache_ttl=cache_ttl,
            telemetry=self.telemetry or False,
        )
        self._llms[handle] = llm
        return llm

    def _server(self, provider: str) -> tuple[str, int] | None:
        """``(host, port)`` a provider's calls go to, for telemetry (None before it is used)."""
        existing = self._providers.get(provider)
        return _otel.server_of(getattr(existing, "base_url", None)) if existing is not None else None

    def limiter(self, provider: str) -> RequestCounter | None:
        """The provider's rate limiter (None when it has no limits), shared by all its models."""
        name = normalize_provider(provider)
        if name not in self._limiters:
            pcfg = self.provider_config(name)
            self._limiters[name] = counter_from_config(
                name, pcfg.rate_limit, clock=self._clock, sleep=self._sleep, account=pcfg.account()
            )
        return self._limiters[name]

    # ------------------------------------------------------------------ fallback chains

    @property
    def breakers(self) -> CircuitBreakers:
        """The circuit breakers of fallback links (config ``[breaker]``; see docs/fallback.md)."""
        if self._breakers is None:
            from forge.breaker import CircuitBreakers

            def changed(change: object) -> None:
                from forge.breaker import BreakerChange

                assert isinstance(change, BreakerChange)
                self.metrics.record_breaker(
                    change.key, change.old_state, change.new_state, change.cooldown_s, change.error,
                    shared=change.shared,
                )

            self._breakers = CircuitBreakers.from_config(
                self.config.breaker, clock=self._clock, on_change=changed
            )
        return self._breakers

    def breaker_key(self, llm: LLM) -> str:
        """What one endpoint breaker guards: ``provider|base_url|model`` (the base URL as configured,
        its password masked: the key is printed in events and snapshots and names a Redis key).

        Outages (5xx, overloaded, timeouts, connection errors) are the endpoint's, whoever's key
        asked: every tenant's calls share this breaker.
        """
        from forge._secrets import redact_url

        base_url = redact_url(self.provider_config(llm.provider_name).resolve_base_url()) or "default"
        return f"{llm.provider_name}|{base_url}|{llm.model}"

    def account_breaker_key(self, llm: LLM) -> str:
        """What one account breaker guards: ``provider|base_url#fingerprint|model``.

        Rate limits (and, where a chain lets them fall through, refused keys) belong to one
        key or organization: another tenant's key on the same endpoint has its own breaker.
        The fingerprint is one-way (see ``ProviderConfig.account``); no secret is in the key.
        """
        return f"{llm.provider_name}|{self.provider_config(llm.provider_name).account()}|{llm.model}"

    def fallback_llm(
        self, model: str, fallbacks: FallbackChain | Sequence[str | Fallback] | None = None
    ) -> FallbackLLM | None:
        """``model`` with its fallbacks: ``fallbacks`` if given, else the config's chain for it.

        Returns None when there is no chain (``fallbacks=[]`` turns a configured one off).

        Raises:
            ConfigError: a link names an unknown provider or alias.
            TypeError: ``fallbacks`` is not a list of model references.
        """
        from forge.fallback import FallbackChain, FallbackLLM

        if fallbacks is None:
            chain = self._configured_chain(model)
            if chain is None:
                return None
        else:
            chain = FallbackChain.of(fallbacks)
            if not chain.links:
                return None
        cached = self._chains.get((model, chain))
        if cached is not None:
            return cached
        links = []
        for ref, spec in ((model, None), *((link.model, link) for link in chain.links)):
            llm = self.get_llm(ref)
            from forge.fallback import Fallback

            links.append((
                llm, spec or Fallback(ref), self.breakers.get(self.breaker_key(llm)),
                self.breakers.get(self.account_breaker_key(llm)),
            ))
        handle = FallbackLLM(links, chain, clock=self._clock, sleep=self._sleep, metrics=self.metrics)
        self._chains[(model, chain)] = handle
        return handle

    def _configured_chain(self, model: str) -> FallbackChain | None:
        chains = self.config.fallbacks
        if not chains:
            return None
        if model in chains:
            return chains[model]
        name, vendor_model = parse_model_ref(model, self.config)
        return chains.get(f"{name}:{vendor_model}") or chains.get(f"{name}:{model.partition(':')[2]}")

    # ------------------------------------------------------------------ one-call helpers

    async def invoke(
        self,
        model: str,
        prompt: Prompt,
        *,
        fallbacks: FallbackChain | Sequence[str | Fallback] | None = None,
        **params: Unpack[InvokeParams],
    ) -> Response:
        """``get_llm(model).invoke(prompt, **params)``, down ``model``'s fallback chain if it has one.

        ``fallbacks``: ``provider:model`` references (or :class:`~forge.Fallback` /
        :class:`~forge.FallbackChain` values) tried in order when ``model`` fails
        the way an outage fails; default: the config's ``[fallbacks]`` chain for
        ``model``; ``[]``: none. See docs/fallback.md.

        The first call on a provider imports its vendor client in a worker thread,
        so the event loop keeps running meanwhile (see :meth:`warm`).
        """
        await self._import_provider(model)
        chain = self.fallback_llm(model, fallbacks)
        if chain is not None:
            return await chain.invoke(prompt, **params)
        return await self.get_llm(model).invoke(prompt, **params)

    def stream(
        self,
        model: str,
        prompt: Prompt,
        *,
        fallbacks: FallbackChain | Sequence[str | Fallback] | None = None,
        **params: Unpack[StreamRequestParams],
    ) -> Stream:
        """``get_llm(model).stream(prompt, **params)``: a :class:`~forge.Stream` of text deltas.

        ``fallbacks`` as for :meth:`invoke`; a stream falls back only before its
        first text, reasoning or tool event reached the caller.

        This call is synchronous: the first one on a provider imports its vendor
        client on the event loop; ``await reg.warm(...)`` at startup avoids that.
        """
        chain = self.fallback_llm(model, fallbacks)
        if chain is not None:
            return chain.stream(prompt, **params)
        return self.get_llm(model).stream(prompt, **params)

    async def warm(self, *models: str) -> None:
        """Import and build the vendor clients of ``models`` (or of every configured provider)
        without blocking the event loop.

        Importing a vendor client takes 0.3-1 s of CPU; done on the loop (as the first
        ``reg.stream`` or ``get_llm`` on a provider does), every other task of the
        service waits for it. Call this once at startup::

            async with forge.Registry() as reg:
                await reg.warm("openai:gpt-4o-mini", "anthropic:claude-haiku-4-5")

        Raises:
            ConfigError: unknown provider or alias, missing package or API key.
        """
        names = [parse_model_ref(m, self.config)[0] for m in models] if models else [
            n for n in PROVIDER_NAMES if n in self.config.providers
        ]
        for name in dict.fromkeys(names):
            await self._import_provider(f"{name}:_")
            if name not in self._providers:
                # Building the client (TLS context, connection pool) also takes CPU: off the loop too.
                await asyncio.to_thread(self._provider, name)

    async def _import_provider(self, model: str) -> None:
        """Import the provider module of ``model`` in a worker thread, the first time only."""
        if self._closed:
            return
        try:
            name = parse_model_ref(model, self.config)[0]
        except ConfigError:
            return  # get_llm raises it with the same message
        if name in self._providers:
            return
        module_name = _PROVIDER_MODULES[name][0]
        if module_name in sys.modules:
            return
        with contextlib.suppress(ImportError):  # _provider() turns it into a ConfigError
            await asyncio.to_thread(importlib.import_module, module_name)

    async def stream_to_file(
        self, model: str, prompt: Prompt, path: str | os.PathLike[str], **params: Unpack[StreamRequestParams]
    ) -> Response:
        """Stream the reply into ``path`` at constant memory; see :meth:`forge.Stream.to_file`."""
        return await self.stream(model, prompt, **params).to_file(path)

    async def stream_with_callback(
        self,
        model: str,
        prompt: Prompt,
        callback: Callable[[str], object],
        **params: Unpack[StreamCallbackParams],
    ) -> Response:
        """Stream, calling ``callback(text)`` (sync or async) per piece; return the Response."""
        s = self.stream(model, prompt, on_chunk=callback, **params)
        async with s:
            return await s.collect()

    # ------------------------------------------------------------------ batches

    @property
    def job_store(self) -> JobStore:
        """Where batch jobs are recorded (see :mod:`forge.jobs`).

        Default: ``$FORGE_JOB_STORE`` (a path, ``sqlite:///path`` or ``redis://...``),
        else the SQLite file ``$XDG_DATA_HOME/forge/jobs.sqlite3``. Assign a
        store (e.g. a :class:`~forge.jobs.RedisJobStore` shared by several hosts)
        before the first batch; the registry closes only a store it opened.
        """
        store: JobStore | None = getattr(self, "_job_store", None)
        if store is None:
            from forge.jobs import open_job_store

            store = open_job_store()
            self._job_store = store
            self._owns_job_store = True
        return store

    @job_store.setter
    def job_store(self, store: JobStore) -> None:
        self._job_store = store
        self._owns_job_store = False

    def batch_processor(self, model: str, *, poll: PollSchedule | None = None) -> BatchProcessor:
        """A :class:`~forge.batch.BatchProcessor` for ``model``, on this registry's job store."""
        from forge.batch import BatchProcessor, batch_provider_for

        llm = self.get_llm(model)
        return BatchProcessor(
            llm,
            batch_provider=batch_provider_for(llm.provider),
            store=self.job_store,
            clock=self._clock,
            sleep=self._sleep,
            poll=poll,
        )

    async def batch_invoke(
        self,
        model: str,
        prompts: Sequence[Prompt | Request],
        *,
        mode: BatchMode = "auto",
        max_concurrent: int = 16,
        on_progress: ProgressHandler | None = None,
        max_wait: float | None = None,
        poll: PollSchedule | None = None,
        **params: Unpack[InvokeParams],
    ) -> list[Response | ForgeError]:
        """Run every prompt; return one result per prompt, in order: the Response or that item's error.

        ``mode``: ``"batch_api"`` (the provider's batch API, half price, results
        within 24 h; the job is recorded in :attr:`job_store` first, so
        :meth:`batch_resume` can finish it after a restart), ``"concurrent"``
        (ordinary calls, at most ``max_concurrent`` in flight, paced by the
        provider's rate limiter, retried per item) or ``"auto"`` (the batch API
        when the provider has one and ``max_wait`` is None or at least 24 h).
        ``on_progress`` (sync or async) receives a :class:`~forge.batch.BatchProgress`.
        ``max_wait`` (seconds) cancels a provider batch still running after that
        long. ``params`` are request parameters for every prompt (``max_tokens``...),
        plus ``timeout`` and ``max_attempts`` for each call in concurrent mode (as
        for :meth:`invoke`; a provider batch is bounded by ``max_wait`` instead).

        ::

            results = await reg.batch_invoke("openai:gpt-4o-mini", ["Hi", "Hello"], max_tokens=50)
            for r in results:
                print(r.text if isinstance(r, forge.Response) else f"failed: {r}")

        Raises:
            TypeError / ValueError: a bad prompt or parameter (nothing was sent).
            ConfigError: ``mode="batch_api"`` for a provider without a batch API.
        """
        await self._import_provider(model)
        processor = self.batch_processor(model, poll=poll)
        requests = processor.requests(prompts, request_params(params))
        return await processor.run(
            requests, mode=mode, max_concurrent=max_concurrent, on_progress=on_progress, max_wait=max_wait,
            timeout=params.get("timeout"), max_attempts=params.get("max_attempts"),
        )

    async def batch_submit(
        self, model: str, prompts: Sequence[Prompt | Request], **params: Unpack[RequestParams]
    ) -> BatchJob:
        """Record and submit a provider batch, and return its job at once (``job.id`` resumes it).

        Raises:
            ConfigError: the provider has no batch API (use :meth:`batch_invoke`).
        """
        processor = self.batch_processor(model)
        return await processor.submit(processor.requests(prompts, params))

    async def batch_job(self, job_id: str) -> BatchJob:
        """The job as recorded in :attr:`job_store`.

        Raises:
            BatchError: code ``unknown_job``.
        """
        job = await self.job_store.get(job_id)
        if job is None:
            raise BatchError(
                f"No batch job {job_id!r} in {self.job_store!r}; is FORGE_JOB_STORE the store it was "
                "submitted with?",
                code="unknown_job", job_id=job_id,
            )
        return job

    async def batch_resume(
        self,
        job_id: str,
        *,
        on_progress: ProgressHandler | None = None,
        max_wait: float | None = None,
        poll: PollSchedule | None = None,
    ) -> list[Response | ForgeError]:
        """Finish a recorded job (in this or any other process) and return its results, in input order.

        Never submits a job twice: a job whose submission was interrupted is
        looked up at the provider first. A finished job's results come from the store.
        """
        job = await self.batch_job(job_id)
        processor = self.batch_processor(f"{job.provider}:{job.model}", poll=poll)
        return await processor.resume(job, on_progress=on_progress, max_wait=max_wait)

    async def batch_status(self, job_id: str) -> BatchStatus | None:
        """The provider's view of a job's batch (None before submission or once the job is done)."""
        job = await self.batch_job(job_id)
        return await self.batch_processor(f"{job.provider}:{job.model}").status(job)

    async def batch_cancel(self, job_id: str) -> BatchJob:
        """Cancel a job's provider batch; :meth:`batch_resume` then returns what finished before it."""
        job = await self.batch_job(job_id)
        return await self.batch_processor(f"{job.provider}:{job.model}").cancel(job)

    # ------------------------------------------------------------------ lifecycle

    async def aclose(self) -> None:
        """Close everything this registry opened: optimizers (their Gemini caches), the job store,
        the rate limiters (their Redis connections), the default response cache and every vendor client.

        Every close runs even when one fails; the failure is raised afterwards (several: an
        ``ExceptionGroup`` of them). A response cache or job store passed in is the caller's to close.
        """
        self._closed = True
        closers: list[tuple[str, Callable[[], Awaitable[object]]]] = []
        optimizers, self._optimizers = self._optimizers, {}
        # Optimizers first: Gemini context caches are deleted through the vendor clients.
        closers += [(f"{n} optimizer", o.aclose) for n, o in optimizers.items() if o is not None]
        if getattr(self, "_owns_job_store", False):
            closers.append(("job store", self._job_store.aclose))
            self._owns_job_store = False
        limiters, self._limiters = self._limiters, {}
        closers += [(f"{n} rate limiter", lim.aclose) for n, lim in limiters.items() if lim is not None]
        if self._response_cache is not None and self._owns_response_cache:
            closers.append(("response cache", self._response_cache.aclose))
        providers, self._providers = self._providers, {}
        closers += [(f"{n} client", p.aclose) for n, p in providers.items()]
        self._llms.clear()
        self._chains.clear()
        breakers, self._breakers = self._breakers, None
        if breakers is not None:
            closers.append(("circuit breakers", breakers.aclose))
        errors: list[Exception] = []
        for what, close in closers:
            try:
                await close()
            except Exception as exc:
                exc.add_note(f"while closing the registry's {what}")
                errors.append(exc)
        if len(errors) == 1:
            raise errors[0]
        if errors:
            raise ExceptionGroup(f"Registry.aclose: {len(errors)} closes failed", errors)

    async def __aenter__(self) -> Registry:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
