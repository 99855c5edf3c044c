"""forge: a lean async SDK over the official OpenAI, Anthropic, Gemini and Ollama clients.

::

    import forge

    async with forge.Registry() as reg:
        reply = await reg.invoke("openai:gpt-4o-mini", "Say hi")
        print(reply.text, reply.usage)

Everything public is importable from ``forge`` itself; importing it loads no
vendor client (each is imported the first time its provider is used).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from forge.errors import (
    AuthenticationError,
    BadRequestError,
    BatchError,
    ConfigError,
    ContextLengthError,
    ForgeError,
    NotFoundError,
    OverloadedError,
    ProviderConnectionError,
    ProviderError,
    ProviderTimeout,
    RateLimitError,
    RetryAttempt,
    ServerError,
    StreamError,
    StreamInterrupted,
    StreamTimeout,
    ToolCallError,
)

if TYPE_CHECKING:
    from forge._otel import Telemetry
    from forge.batch import BatchProcessor, BatchProgress, PollSchedule
    from forge.breaker import CircuitOpen
    from forge.cache import MemoryResponseCache, RedisResponseCache, ResponseCache
    from forge.config import (
        BreakerConfig,
        ForgeConfig,
        ProviderConfig,
        ProviderRetryConfig,
        RateLimitConfig,
        RetryConfig,
        load_config,
    )
    from forge.fallback import Fallback, FallbackChain
    from forge.jobs import BatchJob, JobStore, RedisJobStore, SQLiteJobStore
    from forge.llm import LLM, build_request, tool_from_function
    from forge.metrics import MetricEvent, Metrics
    from forge.optimize import ProviderOptimizer
    from forge.ratelimit import RequestCounter, TokenBucket
    from forge.registry import Registry
    from forge.retry import RetryEvent, RetryPolicy, RetryWrapper, backoff_wait
    from forge.streaming import Stream, StreamProgress, stream, stream_to_file, stream_with_callback
    from forge.tokens import estimate_tokens
    from forge.types import (
        BatchProvider,
        BatchStatus,
        CacheHints,
        FallbackAttempt,
        Message,
        Provider,
        ReasoningBlock,
        Request,
        Response,
        ResponseFormat,
        StreamEvent,
        Tool,
        ToolCall,
        Usage,
    )

# The rest of the API (dataclasses, asyncio) loads on first use, so `import forge` stays cheap.
_LAZY = {
    "Message": "forge.types",
    "Provider": "forge.types",
    "ReasoningBlock": "forge.types",
    "Request": "forge.types",
    "Response": "forge.types",
    "ResponseFormat": "forge.types",
    "StreamEvent": "forge.types",
    "Tool": "forge.types",
    "ToolCall": "forge.types",
    "Usage": "forge.types",
    "ForgeConfig": "forge.config",
    "ProviderConfig": "forge.config",
    "RateLimitConfig": "forge.config",
    "RetryConfig": "forge.config",
    "load_config": "forge.config",
    "LLM": "forge.llm",
    "build_request": "forge.llm",
    "tool_from_function": "forge.llm",
    "Registry": "forge.registry",
    "RetryEvent": "forge.retry",
    "RetryPolicy": "forge.retry",
    "backoff_wait": "forge.retry",
    "Stream": "forge.streaming",
    "Telemetry": "forge._otel",
    "StreamProgress": "forge.streaming",
    "stream": "forge.streaming",
    "stream_to_file": "forge.streaming",
    "stream_with_callback": "forge.streaming",
    "estimate_tokens": "forge.tokens",
    "BatchProvider": "forge.types",
    "BatchStatus": "forge.types",
    "BatchProcessor": "forge.batch",
    "BatchProgress": "forge.batch",
    "PollSchedule": "forge.batch",
    "BatchJob": "forge.jobs",
    "JobStore": "forge.jobs",
    "RedisJobStore": "forge.jobs",
    "SQLiteJobStore": "forge.jobs",
    "CacheHints": "forge.types",
    "MemoryResponseCache": "forge.cache",
    "RedisResponseCache": "forge.cache",
    "ResponseCache": "forge.cache",
    "ProviderRetryConfig": "forge.config",
    "Metrics": "forge.metrics",
    "MetricEvent": "forge.metrics",
    "ProviderOptimizer": "forge.optimize",
    "RequestCounter": "forge.ratelimit",
    "TokenBucket": "forge.ratelimit",
    "RetryWrapper": "forge.retry",
    "BreakerConfig": "forge.config",
    "CircuitOpen": "forge.breaker",
    "Fallback": "forge.fallback",
    "FallbackAttempt": "forge.types",
    "FallbackChain": "forge.fallback",
}


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        if name == "RetryExhausted":  # removed in 0.x: forge.errors says what replaced it
            return getattr(importlib.import_module("forge.errors"), name)
        raise AttributeError(f"module 'forge' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


__version__ = "0.1.0"

__all__ = [
    "AuthenticationError",
    "BadRequestError",
    "BatchError",
    "BatchJob",
    "BatchProcessor",
    "BatchProgress",
    "BatchProvider",
    "BatchStatus",
    "BreakerConfig",
    "CacheHints",
    "CircuitOpen",
    "ConfigError",
    "ContextLengthError",
    "Fallback",
    "FallbackAttempt",
    "FallbackChain",
    "ForgeConfig",
    "ForgeError",
    "JobStore",
    "LLM",
    "MemoryResponseCache",
    "Message",
    "MetricEvent",
    "Metrics",
    "NotFoundError",
    "OverloadedError",
    "PollSchedule",
    "Provider",
    "ProviderConfig",
    "ProviderConnectionError",
    "ProviderError",
    "ProviderOptimizer",
    "ProviderRetryConfig",
    "ProviderTimeout",
    "RateLimitConfig",
    "RateLimitError",
    "ReasoningBlock",
    "RedisJobStore",
    "RedisResponseCache",
    "Registry",
    "Request",
    "RequestCounter",
    "Response",
    "ResponseCache",
    "ResponseFormat",
    "RetryAttempt",
    "RetryConfig",
    "RetryEvent",
    "RetryPolicy",
    "RetryWrapper",
    "SQLiteJobStore",
    "ServerError",
    "Stream",
    "StreamError",
    "StreamEvent",
    "StreamInterrupted",
    "StreamProgress",
    "StreamTimeout",
    "Telemetry",
    "TokenBucket",
    "Tool",
    "ToolCall",
    "ToolCallError",
    "Usage",
    "backoff_wait",
    "build_request",
    "estimate_tokens",
    "load_config",
    "stream",
    "stream_to_file",
    "stream_with_callback",
    "tool_from_function",
    "__version__",
]
