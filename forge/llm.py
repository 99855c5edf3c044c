"""LLM: one provider + model, with the policy that applies to every call (retry, limits, metrics).

Adapters only translate; everything a service wants applied uniformly lives here,
once, for every provider.
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import inspect
import logging
import random
import re
import time
import types
import typing
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from typing_extensions import Unpack

from forge._params import InvokeParams, RequestParams, StreamParams, request_params
from forge._secrets import scrub_exception
from forge.cache import as_cached, cache_scope_of, is_cacheable, replay_events, request_key
from forge.errors import ForgeError, ProviderError, ProviderTimeout
from forge.pricing import cost_usd
from forge.providers._stream import aclose_events
from forge.ratelimit import Reservation
from forge.retry import RetryEvent, RetryPolicy, RetryWrapper
from forge.streaming import ChunkCallback, ProgressCallback, Stream
from forge.tokens import estimate_tokens
from forge.types import (
    Message,
    Request,
    Response,
    ResponseFormat,
    StreamEvent,
    Tool,
    Usage,
    coerce_messages,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from forge.cache import ResponseCache
    from forge.config import ProviderConfig
    from forge.metrics import Metrics
    from forge.optimize import ProviderOptimizer
    from forge.ratelimit import RequestCounter
    from forge.types import Provider

__all__ = ["LLM", "build_request"]

_log = logging.getLogger("forge")
T = typing.TypeVar("T")

Prompt = str | Message | Sequence[Message | Mapping[str, object]]

_REQUEST_PARAMS = (
    "system",
    "max_tokens",
    "temperature",
    "top_p",
    "seed",
    "response_format",
    "stop",
    "tools",
    "tool_choice",
    "extra",
    "reasoning_effort",
    "reasoning_budget",
)
_EFFORTS = ("none", "low", "medium", "high")
_STREAM_PARAMS = (
    "buffer_size",
    "flush_interval",
    "first_token_timeout",
    "idle_timeout",
    "timeout",
    "on_chunk",
    "on_progress",
)


def _check_number(name: str, value: object, lo: float, hi: float | None) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__} {value!r}.")
    if value < lo or (hi is not None and value > hi):
        bound = f"between {lo:g} and {hi:g}" if hi is not None else f">= {lo:g}"
        raise ValueError(f"{name} must be {bound}, got {value!r}.")
    return float(value)


def _response_format(value: object) -> ResponseFormat | None:
    if value is None or isinstance(value, ResponseFormat):
        return value
    if isinstance(value, str):
        if value == "text":
            return ResponseFormat("text")
        if value in ("json", "json_object"):
            return ResponseFormat("json")
    elif isinstance(value, Mapping):
        kind = value.get("type")
        if kind == "json_object":
            return ResponseFormat("json")
        if kind == "json_schema" and isinstance(value.get("json_schema"), Mapping):
            spec = value["json_schema"]
            schema = spec.get("schema")
            if isinstance(schema, Mapping):
                return ResponseFormat(
                    "json_schema",
                    schema=dict(schema),
                    name=str(spec.get("name", "response")),
                    strict=bool(spec.get("strict", True)),
                )
        elif kind is not None or "properties" in value:
            return ResponseFormat("json_schema", schema=dict(value))
    raise ValueError(
        "response_format must be 'text', 'json', a JSON schema dict (e.g. {'type': 'object', "
        f"'properties': {{...}}}}) or a forge.ResponseFormat; got {value!r}."
    )


def _tool(value: object, i: int) -> Tool:
    if isinstance(value, Tool):
        return value
    if isinstance(value, Mapping):
        spec: Mapping[str, Any] = value
        if value.get("type") == "function" and isinstance(value.get("function"), Mapping):
            spec = value["function"]
        name = spec.get("name")
        if not isinstance(name, str) or not name:
            raise ValueError(f"tools[{i}] needs a non-empty 'name'; got {dict(value)!r}.")
        params = spec.get("parameters", spec.get("input_schema", {"type": "object", "properties": {}}))
        if not isinstance(params, Mapping):
            raise ValueError(f"tools[{i}] 'parameters' must be a JSON schema object; got {params!r}.")
        return Tool(name, str(spec.get("description", "")), dict(params))
    if callable(value):
        return tool_from_function(value)
    raise TypeError(
        f"tools[{i}] must be a forge.Tool, a dict with name/description/parameters, or a function; "
        f"got {type(value).__name__}."
    )


_JSON_TYPES: dict[object, str] = {
    str: "string",
    int: "integer",
    float: "number",
    bool: "boolean",
    list: "array",
    tuple: "array",
    set: "array",
    frozenset: "array",
    dict: "object",
}


def _enum_schema(values: list[object]) -> dict[str, object]:
    kinds = {_JSON_TYPES.get(type(v)) for v in values}
    schema: dict[str, object] = {"enum": values}
    if len(kinds) == 1 and None not in kinds:
        schema["type"] = kinds.pop()
    return schema


def _schema_for(hint: object) -> dict[str, object]:
    """The JSON schema of a parameter's type hint (``str`` when nothing better is known)."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is typing.Annotated:
        notes = [a for a in args[1:] if isinstance(a, str)]
        inner = _schema_for(args[0])
        return {**inner, "description": " ".join(notes)} if notes else inner
    if origin in (typing.Union, types.UnionType):
        members = [a for a in args if a is not type(None)]
        if len(members) == 1:  # Optional[X]: optionality is the default value's business
            return _schema_for(members[0])
        return {"anyOf": [_schema_for(m) for m in members]}
    if origin is typing.Literal:
        return _enum_schema(list(args))
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return _enum_schema([m.value for m in hint])
    if hint is None or hint is type(None):
        return {"type": "null"}
    kind = _JSON_TYPES.get(origin if origin is not None else hint)
    if kind is None:
        return {"type": "string"}
    schema: dict[str, object] = {"type": kind}
    if kind == "array" and args and args[-1] is not Ellipsis:
        schema["items"] = _schema_for(args[0])
    elif kind == "object" and len(args) == 2:
        schema["additionalProperties"] = _schema_for(args[1])
    return schema


_ARG_LINE = re.compile(r"^\s*(\*{0,2}\w+)\s*(?:\([^)]*\))?\s*:\s*(.*)$")


def _docstring_args(doc: str) -> dict[str, str]:
    """Parameter descriptions from a Google-style ``Args:`` section."""
    out: dict[str, str] = {}
    lines = doc.splitlines()
    inside = False
    current: str | None = None
    indent = 0
    for line in lines:
        stripped = line.strip()
        if not inside:
            inside = stripped in ("Args:", "Arguments:", "Parameters:")
            continue
        if not stripped:
            current = None
            continue
        level = len(line) - len(line.lstrip())
        if current is not None and level > indent:
            out[current] = f"{out[current]} {stripped}".strip()
            continue
        match = _ARG_LINE.match(line)
        if match is None or (out and level < indent):
            break
        current, indent = match.group(1).lstrip("*"), level
        out[current] = match.group(2).strip()
    return out


def tool_from_function(fn: Callable[..., object]) -> Tool:
    """Build a :class:`Tool` from a typed Python function: its name, docstring and signature.

    The first paragraph of the docstring is the description; a Google-style
    ``Args:`` section describes the parameters. Parameters without a default are
    required. Supported hints: ``str``, ``int``, ``float``, ``bool``,
    ``list[X]``, ``dict[str, X]``, ``X | None``, unions, ``Literal[...]``,
    ``enum.Enum`` subclasses and ``Annotated[X, "description"]``; anything
    else is described as a string.

    Example::

        def get_weather(city: str, unit: Literal["C", "F"] = "C") -> str:
            \"\"\"Current weather for a city.

            Args:
                city: the city name, e.g. "Paris".
            \"\"\"

        tool = tool_from_function(get_weather)
    """
    hints = typing.get_type_hints(fn, include_extras=True)
    doc = inspect.getdoc(fn) or ""
    described = _docstring_args(doc)
    props: dict[str, object] = {}
    required: list[str] = []
    for name, param in inspect.signature(fn).parameters.items():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        schema = _schema_for(hints.get(name, str))
        if name in described and "description" not in schema:
            schema = {**schema, "description": described[name]}
        props[name] = schema
        if param.default is param.empty:
            required.append(name)
    schema_out: dict[str, object] = {"type": "object", "properties": props}
    if required:
        schema_out["required"] = required
    summary = doc.split("\n\n")[0].strip()
    return Tool(fn.__name__, summary, schema_out)


def build_request(model: str, prompt: Prompt, **params: Unpack[RequestParams]) -> Request:
    """Validate ``prompt`` and request parameters into a :class:`Request`.

    Parameters (all optional): ``system``, ``max_tokens``, ``temperature``,
    ``top_p``, ``seed``, ``response_format``, ``stop``; ``tools`` (each a
    :class:`Tool`, a ``{"name", "description", "parameters"}`` dict, OpenAI's
    ``{"type": "function", "function": {...}}`` or a typed function, see
    :func:`tool_from_function`); ``tool_choice`` (``"auto"``, ``"none"``,
    ``"required"`` or a tool name); ``reasoning_effort`` (``"none"``, ``"low"``,
    ``"medium"``, ``"high"``) and ``reasoning_budget`` (thinking tokens, 0 =
    off), mapped per provider as docs/tools.md describes; ``extra`` (vendor
    fields merged into the call).

    Raises:
        TypeError / ValueError: an unknown parameter or a bad value, with what is allowed.
    """
    unknown = [k for k in params if k not in _REQUEST_PARAMS]
    if unknown:
        raise TypeError(
            f"Unknown request parameter(s) {', '.join(map(repr, unknown))}. Allowed: "
            f"{', '.join(_REQUEST_PARAMS)}; pass vendor-specific fields in extra={{...}}."
        )
    messages = coerce_messages(prompt)
    system = params.get("system")
    if system is not None and not isinstance(system, str):
        raise TypeError(f"system must be a str, got {type(system).__name__}.")
    # A system message in the list is folded into `system`, so every adapter sees one shape.
    sys_parts = [m.content for m in messages if m.role == "system"]
    if sys_parts:
        messages = tuple(m for m in messages if m.role != "system")
        system = "\n\n".join([*([system] if system else []), *sys_parts])
        if not messages:
            raise ValueError("prompt has only system messages; add at least one user message.")
    max_tokens = params.get("max_tokens")
    if max_tokens is not None and (
        isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1
    ):
        raise ValueError(f"max_tokens must be a positive int, got {max_tokens!r}.")
    temperature = params.get("temperature")
    top_p = params.get("top_p")
    seed = params.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise TypeError(f"seed must be an int, got {seed!r}.")
    stop = params.get("stop")
    if stop is None:
        stops: tuple[str, ...] = ()
    elif isinstance(stop, str):
        stops = (stop,)
    elif isinstance(stop, Sequence) and all(isinstance(s, str) for s in stop):
        stops = tuple(stop)
    else:
        raise TypeError(f"stop must be a str or a list of str, got {stop!r}.")
    tools_param = params.get("tools") or ()
    if not isinstance(tools_param, Sequence) or isinstance(tools_param, (str, bytes)):
        raise TypeError(f"tools must be a list, got {type(tools_param).__name__}.")
    tools = tuple(_tool(t, i) for i, t in enumerate(tools_param))
    tool_choice = params.get("tool_choice")
    if isinstance(tool_choice, Mapping):  # OpenAI's {"type": "function", "function": {"name": ...}}
        function = tool_choice.get("function")
        named = function.get("name") if isinstance(function, Mapping) else tool_choice.get("name")
        tool_choice = named if isinstance(named, str) else tool_choice
    if tool_choice is not None:
        if not isinstance(tool_choice, str) or not tool_choice:
            raise TypeError(
                f"tool_choice must be 'auto', 'none', 'required' or a tool name; got {tool_choice!r}."
            )
        names = {t.name for t in tools}
        if tool_choice not in ("auto", "none", "required") and tool_choice not in names:
            raise ValueError(
                f"tool_choice {tool_choice!r} is not 'auto', 'none', 'required' or one of the tools "
                f"({', '.join(sorted(names)) or 'none given'})."
            )
    extra = params.get("extra") or {}
    if not isinstance(extra, Mapping):
        raise TypeError(f"extra must be a dict of vendor fields, got {type(extra).__name__}.")
    effort = params.get("reasoning_effort")
    if effort is not None and effort not in _EFFORTS:
        raise ValueError(f"reasoning_effort must be one of {', '.join(map(repr, _EFFORTS))}; got {effort!r}.")
    budget = params.get("reasoning_budget")
    if budget is not None and (isinstance(budget, bool) or not isinstance(budget, int) or budget < 0):
        raise ValueError(
            f"reasoning_budget must be a number of tokens >= 0 (0 turns reasoning off); got {budget!r}."
        )
    return Request(
        model=model,
        messages=messages,
        system=system,
        max_tokens=max_tokens,
        temperature=None if temperature is None else _check_number("temperature", temperature, 0.0, 2.0),
        top_p=None if top_p is None else _check_number("top_p", top_p, 0.0, 1.0),
        seed=seed,
        response_format=_response_format(params.get("response_format")),
        stop=stops,
        tools=tools,
        tool_choice=tool_choice,
        extra=dict(extra),
        reasoning_effort=effort,
        reasoning_budget=budget,
    )


# Output tokens assumed for the limiter when a call sets no max_tokens (settled afterwards).
DEFAULT_OUTPUT_ESTIMATE = 1024


class LLM:
    """One provider and model, with the retry policy and rate limiter every call goes through.

    Get one from :meth:`forge.Registry.get_llm`::

        llm = reg.get_llm("anthropic:claude-sonnet-4-5")
        reply = await llm.invoke("Summarize this", max_tokens=200)
        async for text in llm.stream("Tell me a story"):
            print(text, end="")
    """

    def __init__(
        self,
        provider: Provider,
        model: str,
        *,
        config: ProviderConfig | None = None,
        retry: RetryPolicy | RetryWrapper | None = None,
        retry_overrides: Mapping[str, RetryPolicy] | None = None,
        limiter: RequestCounter | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
        rng: Callable[[], float] = random.random,
        on_retry: Callable[[RetryEvent], object] | None = None,
        metrics: Metrics | None = None,
        optimizer: ProviderOptimizer | None = None,
        response_cache: ResponseCache | None = None,
        cache_ttl: float = 300.0,
    ) -> None:
        self.provider = provider
        self.provider_name = provider.name
        self.model = model
        self.config = config
        self.prices = config.pricing if config is not None else {}
        self.metrics = metrics
        self.optimizer = optimizer
        """Rewrites each request before it is sent (see docs/optimization.md); None: sent as written."""
        self.response_cache = response_cache
        """Serves identical requests without calling the provider (see :mod:`forge.cache`)."""
        self.cache_ttl = cache_ttl
        self.cache_scope = cache_scope_of(config)
        """Who is asked, in every response-cache key (base URL and credential fingerprint)."""
        if isinstance(retry, RetryWrapper):
            self.wrapper = retry
        else:
            self.wrapper = RetryWrapper(
                retry,
                overrides=retry_overrides,
                limiter=limiter,
                sleep=sleep,
                rng=rng,
                on_retry=on_retry,
            )
        if metrics is not None:
            self.wrapper.add_observers(
                on_retry=lambda ev: metrics.record_retry(self.provider_name, self.model, ev.error, ev.wait),
                on_wait=lambda waited: metrics.record_limiter_wait(self.provider_name, self.model, waited),
            )
        self._clock = clock

    @property
    def ref(self) -> str:
        """``provider:model``."""
        return f"{self.provider_name}:{self.model}"

    @property
    def retry(self) -> RetryPolicy:
        """The default retry policy."""
        return self.wrapper.policy

    @property
    def limiter(self) -> RequestCounter | None:
        """The provider's rate limiter, shared by every LLM on that provider."""
        return self.wrapper.limiter

    def __repr__(self) -> str:
        return f"LLM({self.ref!r})"

    def request(self, prompt: Prompt, **params: Unpack[RequestParams]) -> Request:
        """Build and validate the :class:`Request` this LLM would send."""
        return build_request(self.model, prompt, **params)

    def policy(self, operation: str) -> RetryPolicy:
        """The retry policy for ``invoke``, ``stream`` or ``batch``."""
        return self.wrapper.policy_for(operation)

    def classify(self, exc: BaseException) -> ForgeError:
        """Map any exception from this LLM's provider onto the forge error tree."""
        error = exc if isinstance(exc, ForgeError) else self.provider.classify(exc)
        if isinstance(error, ProviderError) and error.model is None:
            error.model = self.model
        if isinstance(error, ProviderTimeout) and self.config is not None:
            error = self._named_timeout(error, error.__cause__ if error is exc else exc)
        scrub_exception(error)  # a server may echo the key it was sent
        return error

    def _named_timeout(self, error: ProviderTimeout, cause: BaseException | None) -> ProviderTimeout:
        """Say which limit a vendor client's timeout (``cause``) was, and the config key that sets it."""
        assert self.config is not None
        chain: list[BaseException] = []
        while cause is not None and len(chain) < 5:
            chain.append(cause)
            cause = cause.__cause__ or cause.__context__
        if error.status is not None or not chain or all(isinstance(e, ForgeError) for e in chain):
            return error  # the server's own 408, forge's own limit (already named), or no vendor cause
        key = f"providers.{self.provider_name}"
        if any("Connect" in type(e).__name__ for e in chain):
            what = f"could not connect within {self.config.connect_timeout:g}s ({key}.connect_timeout)"
        else:
            what = f"the server sent nothing for {self.config.timeout:g}s ({key}.timeout)"
        named = ProviderTimeout(
            f"{self.ref}: {what}; raise it if the model needs longer. ({error.message})",
            provider=error.provider,
            model=error.model,
            status=error.status,
            request_id=error.request_id,
            code=error.code,
            headers=error.headers,
        )
        named.__cause__ = chain[0]
        return named

    def estimate_tokens(self, request: Request) -> int:
        """What the limiter reserves for ``request``: estimated input plus the output allowance."""
        return estimate_tokens(request.prompt_text(), self.model, self.provider_name) + (
            request.max_tokens or DEFAULT_OUTPUT_ESTIMATE
        )

    @staticmethod
    def charged_tokens(request: Request, usage: Usage) -> float | None:
        """Tokens the provider counts against tokens/min for a finished call.

        Providers count ``max_tokens`` at admission, so with ``max_tokens`` set the
        charge is input + max_tokens; otherwise input + output.
        """
        if not usage.input_tokens and not usage.output_tokens:
            return None
        return usage.input_tokens + (request.max_tokens or usage.output_tokens)

    async def invoke(self, prompt: Prompt, **params: Unpack[InvokeParams]) -> Response:
        """Send ``prompt`` and return the whole reply.

        ``params`` are request parameters (see :func:`build_request`) plus two call
        options: ``timeout`` (seconds for the whole call, retries included; default:
        the provider's ``deadline`` config key) and ``max_attempts`` (default: the
        provider's ``retry.max_attempts``).

        Raises:
            ProviderError subclasses: the last attempt's error, its own class whether or not
            retries ran (``error.attempts`` holds the history); ProviderTimeout (no reply
            within the call's time limit); TypeError/ValueError (bad parameters).
        """
        request = self.request(prompt, **request_params(params))
        return await self.complete(
            request, timeout=params.get("timeout"), max_attempts=params.get("max_attempts")
        )

    def _call_limit(self, timeout: float | None) -> tuple[float | None, str]:
        """The time limit of a whole call and where it comes from (for the error message)."""
        if timeout is not None:
            _check_number("timeout", timeout, 0.0, None)
            if timeout <= 0:
                raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}.")
            return float(timeout), "the call's timeout= argument"
        if self.config is None or self.config.deadline is None:
            return None, ""
        return self.config.deadline, f"providers.{self.provider_name}.deadline"

    def _deadline_error(self, limit: float, source: str, attempts: int) -> ProviderTimeout:
        return ProviderTimeout(
            f"{self.ref}: no reply within {limit:g}s ({source}), {attempts} attempt(s) made. "
            f"Raise {source} if the model needs longer, or check that the server answers.",
            provider=self.provider_name,
            model=self.model,
        )

    async def _within(
        self, aw: Awaitable[T], limit: float | None, source: str, tries: Callable[[], int]
    ) -> T:
        """Await ``aw`` under one time limit for the whole call: every attempt and every wait."""
        timer = asyncio.timeout(limit)
        try:
            async with timer:
                return await aw
        except TimeoutError:
            if not timer.expired():
                raise
            raise self._deadline_error(limit or 0.0, source, tries()) from None

    def _policy(self, operation: str, max_attempts: int | None) -> RetryPolicy | None:
        """The retry policy for a call that overrides ``max_attempts`` (None: the configured one)."""
        if max_attempts is None:
            return None
        if isinstance(max_attempts, bool) or not isinstance(max_attempts, int) or max_attempts < 1:
            raise ValueError(f"max_attempts must be a whole number >= 1 (1: no retry), got {max_attempts!r}.")
        return dataclasses.replace(self.policy(operation), max_attempts=max_attempts)

    async def complete(
        self,
        request: Request,
        *,
        operation: str = "invoke",
        timeout: float | None = None,  # noqa: ASYNC109  # the per-call option, not a wait
        max_attempts: int | None = None,
    ) -> Response:
        """Send an already built :class:`Request` through the limiter and the retry policy.

        ``timeout`` and ``max_attempts`` are the call options described on :meth:`invoke`.
        """
        limit, source = self._call_limit(timeout)
        policy = self._policy(operation, max_attempts)
        start = self._clock()
        key = self._cache_key(request)
        if key is not None and (hit := await self._cache_get(key)) is not None:
            return as_cached(hit, self._clock() - start)

        tries = 0

        async def attempt(req: Request) -> Response:
            nonlocal tries
            tries += 1
            try:
                return await self.provider.complete(req)
            except ProviderTimeout as exc:
                raise self.classify(exc) from exc.__cause__

        async def send(req: Request) -> tuple[Response, int]:
            return await self.wrapper.call(
                lambda: attempt(req),
                classify=self.classify,
                operation=operation,
                estimated_tokens=self.estimate_tokens(req),
                settle=lambda r: self.charged_tokens(req, r.usage),
                policy=policy,
            )

        async def run() -> tuple[Response, int]:
            sent = await self._optimize(request)
            try:
                return await send(sent)
            except ForgeError as exc:
                if not self._falls_back(request, sent, exc):
                    raise
                response, attempts = await send(request)
                return response, attempts + _attempts_used(exc)  # the refused optimized request counts too

        try:
            response, attempts = await self._within(run(), limit, source, lambda: tries)
        except Exception as exc:
            scrub_exception(exc)  # a server may echo the key it was sent
            if self.metrics is not None:
                self._record_failure(exc)
            raise
        result: Response = dataclasses.replace(
            response,
            attempts=attempts,
            latency_s=self._clock() - start,
            cost_usd=cost_usd(
                self.provider_name, response.model or self.model, response.usage, overrides=self.prices
            ),
        )
        if self.metrics is not None:
            self.metrics.record_success(result, prices=self.prices)
        if key is not None and is_cacheable(result):
            await self._cache_set(key, result)
        return result

    # ------------------------------------------------------------------ optimizer and response cache

    async def _optimize(self, request: Request) -> Request:
        """The request as the optimizer rewrites it; as written when there is none or it fails."""
        optimizer = self.optimizer
        if optimizer is None:
            return request
        metrics = self.metrics
        report = None
        if metrics is not None:
            def report(name: str, applied: bool, reason: str) -> None:
                metrics.record_optimization(self.provider_name, self.model, name, applied, reason)
        try:
            return await optimizer.aoptimize_request(request, on_step=report)
        except Exception as exc:  # a bug in an optimizer must never fail the call
            optimizer.fail("optimizer", exc)
            return request

    def _falls_back(self, request: Request, sent: Request, error: ForgeError) -> bool:
        """Whether to re-send ``request`` as written after the provider refused the optimized ``sent``."""
        optimizer = self.optimizer
        if optimizer is None or sent is request or not optimizer.should_fall_back(sent, error):
            return False
        optimizer.record_fallback(error)
        if self.metrics is not None:
            self.metrics.record_optimization(self.provider_name, self.model, "fallback", False, str(error))
        return True

    def _cache_key(self, request: Request) -> str | None:
        if self.response_cache is None:
            return None
        return request_key(self.provider_name, request, self.cache_scope)

    async def _cache_get(self, key: str) -> Response | None:
        assert self.response_cache is not None
        try:
            hit = await self.response_cache.get(key)
        except Exception as exc:  # a cache outage costs a provider call, never the call itself
            _log.warning("forge response cache: get failed (%s); calling %s", exc, self.ref)
            return None
        if hit is not None and self.metrics is not None:
            self.metrics.record_cache_hit(
                self.provider_name, self.model,
                cost_usd(self.provider_name, hit.model, hit.usage, overrides=self.prices),
            )
        return hit

    async def _cache_set(self, key: str, response: Response) -> None:
        assert self.response_cache is not None
        try:
            await self.response_cache.set(key, response, self.cache_ttl)
        except Exception as exc:
            _log.warning("forge response cache: set failed (%s); reply not cached", exc)

    def _record_failure(self, exc: BaseException) -> None:
        assert self.metrics is not None
        attempts = _attempts_used(exc) if isinstance(exc, ForgeError) else 1
        self.metrics.record_failure(self.provider_name, self.model, exc, attempts=attempts)
        if getattr(exc, "status", None) == 429:
            self.metrics.record_rate_limited(self.provider_name, self.model)

    def stream(
        self,
        prompt: Prompt,
        *,
        buffer_size: int | None = None,
        flush_interval: float | None = None,
        first_token_timeout: float | None = None,
        idle_timeout: float | None = None,
        timeout: float | None = None,
        on_chunk: ChunkCallback | None = None,
        on_progress: ProgressCallback | None = None,
        **params: Unpack[StreamParams],
    ) -> Stream:
        """Start a streamed call; returns a :class:`~forge.Stream` (nothing is sent until it is iterated).

        Stream options (``buffer_size``, ``flush_interval``, timeouts, callbacks) are
        described on :class:`~forge.Stream`; ``timeout`` is the whole stream's time,
        opening and retries included (without it, opening the stream is bounded by
        the provider's ``deadline`` config key). ``max_attempts`` overrides the retry
        policy's attempts for opening this stream; the rest are request parameters as
        for :meth:`invoke`.
        """
        request = self.request(prompt, **request_params(params))
        return self.stream_request(
            request,
            buffer_size=buffer_size,
            flush_interval=flush_interval,
            first_token_timeout=first_token_timeout,
            idle_timeout=idle_timeout,
            timeout=timeout,
            on_chunk=on_chunk,
            on_progress=on_progress,
            max_attempts=params.get("max_attempts"),
        )

    def stream_request(self, request: Request, *, max_attempts: int | None = None, **options: Any) -> Stream:
        """Stream an already built :class:`Request`.

        Retries cover opening the stream, up to its first event that carries
        something the caller could see (text, reasoning, a tool call): metadata that
        comes first (usage, pings, role-only chunks) is held back and replayed, so a
        fault right after it is retried too. After that a break raises
        :class:`~forge.StreamInterrupted`.
        """
        policy = self._policy("stream", max_attempts)
        # The stream's own `timeout` covers opening it; without one, the config's deadline does.
        limit, source = self._call_limit(None) if options.get("timeout") is None else (None, "")
        tries = 0
        estimate = self.estimate_tokens(request)
        key = self._cache_key(request)

        async def attempt(req: Request) -> tuple[AsyncIterator[StreamEvent], list[StreamEvent]]:
            # Every provider at once: read up to the first content event under the retry
            # wrapper, holding back what comes before it (Anthropic message_start and
            # pings, a Gemini usage-only chunk, Responses API response.created...).
            nonlocal tries
            tries += 1
            events = self.provider.stream(req)
            head: list[StreamEvent] = []
            try:
                while True:
                    try:
                        event = await events.__anext__()
                    except StopAsyncIteration:
                        return events, head
                    head.append(event)
                    if _shows_content(event):
                        return events, head
            except ProviderTimeout as exc:
                await aclose_events(events)
                raise self.classify(exc) from exc.__cause__
            except BaseException:
                await aclose_events(events)
                raise

        async def opener() -> tuple[AsyncIterator[StreamEvent], list[StreamEvent], int]:
            if key is not None and (hit := await self._cache_get(key)) is not None:
                stream.cached = True
                return replay_events(hit), [], 0
            return await self._within(open_stream(), limit, source, lambda: tries)

        async def open_stream() -> tuple[AsyncIterator[StreamEvent], list[StreamEvent], int]:
            sent = await self._optimize(request)
            try:
                (events, head), attempts = await self.wrapper.call(
                    lambda: attempt(sent), classify=self.classify, operation="stream",
                    estimated_tokens=estimate, policy=policy,
                )
            except ForgeError as exc:
                if not self._falls_back(request, sent, exc):
                    raise
                (events, head), attempts = await self.wrapper.call(
                    lambda: attempt(request), classify=self.classify, operation="stream",
                    estimated_tokens=estimate, policy=policy,
                )
                attempts += _attempts_used(exc)
            return events, head, attempts

        async def settle(response: Response) -> None:
            if stream.cached:
                return
            if key is not None and stream.keeps_text and is_cacheable(response):
                await self._cache_set(key, response)
            limiter = self.wrapper.limiter
            actual = self.charged_tokens(request, response.usage)
            if limiter is not None and limiter.tokens is not None and actual is not None:
                await limiter.settle(Reservation(estimate, 0.0), actual)
            if self.metrics is not None:
                self.metrics.record_success(response, stream=True, prices=self.prices)

        def failed(exc: BaseException) -> None:
            scrub_exception(exc)
            if self.metrics is not None and isinstance(exc, Exception):
                self._record_failure(exc)

        stream = Stream(
            opener,
            provider=self.provider_name,
            model=self.model,
            classify=self.classify,
            clock=self._clock,
            on_complete=settle,
            on_error=failed,
            price=lambda usage: cost_usd(self.provider_name, self.model, usage, overrides=self.prices),
            **options,
        )
        return stream

    async def aclose(self) -> None:
        """Close the provider's client (normally done by the Registry)."""
        await self.provider.aclose()


def _shows_content(event: StreamEvent) -> bool:
    """Whether ``event`` carries something the caller could see: text, reasoning or a tool call."""
    kind = event.kind
    if kind == "text" or kind == "reasoning":
        return bool(event.text)
    return kind.startswith("tool_call")


def _attempts_used(error: ForgeError) -> int:
    """How many requests a failed call made (its retries included)."""
    return error.attempt_count or 1
