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
    from forge.errors import ForgeError
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
        )
        self._llms[handle] = llm
        return llm

    def limiter(self, provider: str) -> RequestCounter | None:
        """The provider's rate limiter (None when it has no limits), shared by all its models."""
        name = normalize_provider(provider)
        if name not in self._limiters:
            pcfg = self.provider_config(name)
            self._limiters[name] = counter_from_config(
                name, pcfg.rate_limit, clock=self._clock, sleep=self._sleep, account=pcfg.account()
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
        **params: object,
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
        long. ``params`` are request parameters for every prompt (``max_tokens``...).

        ::

            results = await reg.batch_invoke("openai:gpt-4o-mini", ["Hi", "Hello"], max_tokens=50)
            for r in results:
                print(r.text if isinstance(r, forge.Response) else f"failed: {r}")

        Raises:
            TypeError / ValueError: a bad prompt or parameter (nothing was sent).
            ConfigError: ``mode="batch_api"`` for a provider without a batch API.
        """
        processor = self.batch_processor(model, poll=poll)
        requests = processor.requests(prompts, params)
        return await processor.run(
            requests, mode=mode, max_concurrent=max_concurrent, on_progress=on_progress, max_wait=max_wait
        )

    async def batch_submit(
        self, model: str, prompts: Sequence[Prompt | Request], **params: object
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
