"""Generate docs/api.md from forge's public API: every name in ``forge.__all__``.

    python scripts/apidoc.py            # rewrite docs/api.md
    python scripts/apidoc.py --check    # exit 1 if docs/api.md is out of date (the test suite runs this)

Signatures and docstrings come from the code; each name also gets a short
example from EXAMPLES below (doctest sessions: the test suite runs them with
``forge``, ``reg`` (a Registry on the emulator) and ``run`` (runs a coroutine)
predefined). A public name without an example is an error.
"""

from __future__ import annotations

import argparse
import inspect
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import forge  # noqa: E402

SECTIONS: list[tuple[str, list[str]]] = [
    ("Entry points", ["Registry", "LLM", "Stream", "StreamProgress", "stream", "stream_to_file",
                      "stream_with_callback", "build_request", "tool_from_function", "estimate_tokens"]),
    ("Values", ["Message", "Request", "Response", "Usage", "ResponseFormat", "Tool", "ToolCall",
                "ReasoningBlock", "StreamEvent"]),
    ("Configuration", ["load_config", "ForgeConfig", "ProviderConfig", "ProviderRetryConfig", "RetryConfig",
                       "RateLimitConfig"]),
    ("Retry and rate limits", ["RetryPolicy", "RetryWrapper", "RetryEvent", "backoff_wait", "RequestCounter",
                               "TokenBucket"]),
    ("Fallbacks and circuit breakers", ["Fallback", "FallbackChain", "FallbackAttempt", "BreakerConfig"]),
    ("Metrics and telemetry", ["Metrics", "MetricEvent", "Telemetry"]),
    ("Optimization and caching", ["ProviderOptimizer", "CacheHints", "ResponseCache", "MemoryResponseCache",
                                  "RedisResponseCache"]),
    ("Batch", ["BatchProcessor", "BatchProgress", "BatchJob", "BatchStatus", "PollSchedule", "JobStore",
               "SQLiteJobStore", "RedisJobStore"]),
    ("Provider protocols", ["Provider", "BatchProvider"]),
    ("Errors", ["ForgeError", "ConfigError", "ProviderError", "RateLimitError", "OverloadedError", "ServerError",
                "ProviderTimeout", "ProviderConnectionError", "AuthenticationError", "BadRequestError",
                "ContextLengthError", "NotFoundError", "ToolCallError", "BatchError", "StreamError",
                "StreamInterrupted", "StreamTimeout", "RetryAttempt", "CircuitOpen"]),
]

_ERROR_EXAMPLE = """>>> issubclass(forge.{name}, forge.ForgeError)
True"""

EXAMPLES: dict[str, str] = {
    "Registry": """>>> reply = run(reg.invoke("openai:gpt-4o-mini", "Say hi", max_tokens=20))
>>> reply.provider, reply.finish_reason
('openai', 'stop')""",
    "LLM": """>>> llm = reg.get_llm("anthropic:claude-haiku-4-5")
>>> llm.ref
'anthropic:claude-haiku-4-5'
>>> run(llm.invoke("hi")).usage.output_tokens > 0
True""",
    "Stream": """>>> stream = reg.stream("google:gemini-2.5-flash", "hi")
>>> text = run(stream.collect()).text
>>> text == stream.response.text
True""",
    "StreamProgress": """>>> seen = []
>>> _ = run(reg.stream("ollama:llama3.2", "hi", on_progress=seen.append).collect())
>>> seen[-1].chars > 0
True""",
    "stream": """>>> llm = reg.get_llm("openai:gpt-4o-mini")
>>> isinstance(forge.stream(llm, "hi"), forge.Stream)
True""",
    "stream_to_file": """>>> import tempfile, pathlib
>>> path = pathlib.Path(tempfile.mkdtemp()) / "out.txt"
>>> _ = run(forge.stream_to_file(reg.get_llm("openai:gpt-4o-mini"), "hi", path))
>>> path.read_text().startswith("Hello from the emulator")
True""",
    "stream_with_callback": """>>> pieces = []
>>> r = run(forge.stream_with_callback(reg.get_llm("openai:gpt-4o-mini"), "hi", pieces.append))
>>> "".join(pieces) == r.text
True""",
    "build_request": """>>> req = forge.build_request("gpt-4o-mini", "hi", max_tokens=10, stop="END")
>>> req.max_tokens, req.stop
(10, ('END',))""",
    "tool_from_function": """>>> def get_weather(city: str, days: int = 1) -> str:
...     '''Weather forecast for a city.'''
...     return "sunny"
>>> tool = forge.tool_from_function(get_weather)
>>> tool.name, tool.parameters["required"]
('get_weather', ['city'])""",
    "estimate_tokens": """>>> forge.estimate_tokens("The quick brown fox jumps over the lazy dog.") > 5
True""",
    "Message": """>>> forge.Message("user", "hi")
Message(role='user', content='hi', ...)""",
    "Request": """>>> forge.build_request("m", [forge.Message("user", "hi")], system="be brief").system
'be brief'""",
    "Response": """>>> r = run(reg.invoke("openai:gpt-4o-mini", "hi"))
>>> r.usage.total_tokens == r.usage.input_tokens + r.usage.output_tokens
True""",
    "Usage": """>>> forge.Usage(10, 5) + forge.Usage(1, 1)
Usage(input_tokens=11, output_tokens=6, cached_input_tokens=0, cache_write_tokens=0, reasoning_tokens=0)""",
    "ResponseFormat": """>>> forge.build_request("m", "hi", response_format={"type": "object"}).response_format.type
'json_schema'""",
    "Tool": """>>> forge.Tool("lookup", "Find a record", {"type": "object", "properties": {"id": {"type": "string"}}}).name
'lookup'""",
    "ReasoningBlock": """>>> block = forge.ReasoningBlock("anthropic", "redacted", data="EmwKAhgBEgy...", position=0)
>>> forge.Message("assistant", "Hi.", reasoning_blocks=(block,)).reasoning_blocks[0].kind
'redacted'""",
    "ToolCall": """>>> forge.ToolCall("call_1", "lookup", {"id": "42"}, '{"id": "42"}').arguments["id"]
'42'""",
    "StreamEvent": """>>> kinds = []
>>> async def collect_kinds():
...     async for event in reg.stream("openai:gpt-4o-mini", "hi").events():
...         kinds.append(event.kind)
>>> run(collect_kinds())
>>> kinds[-2:]
['usage', 'finish']""",
    "load_config": """>>> forge.load_config({"providers": {"openai": {"timeout": 30}}}).provider("openai").timeout
30.0""",
    "ForgeConfig": """>>> cfg = forge.load_config({"aliases": {"fast": "openai:gpt-4o-mini"}})
>>> cfg.aliases["fast"]
'openai:gpt-4o-mini'""",
    "ProviderConfig": """>>> forge.load_config({}).provider("gemini").name
'google'""",
    "ProviderRetryConfig": """>>> prc = forge.ProviderRetryConfig.parse("anthropic", {"retry": {"stream": {"max_attempts": 2}}})
>>> prc.for_operation("stream").max_attempts, prc.for_operation("invoke").max_attempts
(2, 4)""",
    "RetryConfig": """>>> forge.load_config({}).provider("ollama").retry.max_attempts
2""",
    "RateLimitConfig": """>>> cfg = forge.load_config({"providers": {"openai": {"rate_limit": {"requests_per_minute": 500}}}})
>>> cfg.provider("openai").rate_limit.requests_per_minute
500.0""",
    "RetryPolicy": """>>> policy = forge.RetryPolicy(initial_wait=0.5, max_wait=4, jitter=False)
>>> [forge.backoff_wait(policy, n, None, 0.0) for n in (1, 2, 3, 4, 5)]
[0.5, 1.0, 2.0, 4.0, 4.0]""",
    "RetryWrapper": """>>> wrapper = forge.RetryWrapper(forge.RetryPolicy(max_attempts=2))
>>> async def ok():
...     return "done"
>>> run(wrapper.call(ok, classify=lambda e: forge.ServerError(str(e))))
('done', 1)""",
    "RetryEvent": """>>> events = []
>>> outcomes = iter([forge.ServerError("boom"), "ok"])
>>> async def flaky():
...     outcome = next(outcomes)
...     if isinstance(outcome, Exception):
...         raise outcome
...     return outcome
>>> wrapper = forge.RetryWrapper(forge.RetryPolicy(initial_wait=0.0), on_retry=events.append)
>>> run(wrapper.call(flaky, classify=lambda e: e))
('ok', 2)
>>> [(e.attempt, type(e.error).__name__) for e in events]
[(1, 'ServerError')]""",
    "backoff_wait": """>>> forge.backoff_wait(forge.RetryPolicy(), 1, forge.RateLimitError("slow", retry_after=7.0), 0.5)
7.0""",
    "RequestCounter": """>>> counter = forge.RequestCounter(requests_per_minute=600, tokens_per_minute=60_000)
>>> reservation = run(counter.acquire(500))
>>> run(counter.settle(reservation, 120))""",
    "TokenBucket": """>>> bucket = forge.TokenBucket(capacity=10, rate=5)
>>> bucket.try_acquire(10), bucket.try_acquire(1)
(True, False)""",
    "Metrics": """>>> _ = run(reg.invoke("openai:gpt-4o-mini", "hi"))
>>> reg.metrics.snapshot()["models"]["openai:gpt-4o-mini"]["successes"] >= 1
True""",
    "MetricEvent": """>>> seen = []
>>> unsubscribe = reg.metrics.subscribe(seen.append)
>>> _ = run(reg.invoke("openai:gpt-4o-mini", "hi"))
>>> seen[-1].kind
'request'
>>> unsubscribe()""",
    "Telemetry": """>>> forge.Registry(config={}, telemetry=False).telemetry is None
True
>>> forge.Telemetry(capture_content=False).captures_content()
False""",
    "Provider": """>>> isinstance(reg.get_llm("openai:gpt-4o-mini").provider, forge.Provider)
True""",
    "BatchProvider": """>>> from forge.batch import batch_provider_for
>>> isinstance(batch_provider_for(reg.get_llm("anthropic:claude-haiku-4-5").provider), forge.BatchProvider)
True""",
    "BatchProcessor": """>>> results = run(reg.batch_invoke("openai:gpt-4o-mini", ["one", "two"], mode="concurrent"))
>>> [r.text.startswith("Hello from the emulator") for r in results]
[True, True]
>>> isinstance(reg.batch_processor("openai:gpt-4o-mini"), forge.BatchProcessor)
True""",
    "BatchProgress": """>>> forge.BatchProgress(total=10, done=4, failed=1, in_flight=2).pending
3""",
    "PollSchedule": """>>> forge.PollSchedule(initial=5, factor=2, max=60).wait(3)
20.0""",
    "BatchJob": """>>> job = run(reg.batch_submit("openai:gpt-4o-mini", ["one", "two"]))
>>> job.provider, job.count, job.batch_id is not None
('openai', 2, True)""",
    "BatchStatus": """>>> forge.BatchStatus("batch_1", "completed", total=2, succeeded=2).done
True""",
    "JobStore": """>>> isinstance(reg.job_store, forge.JobStore)
True""",
    "SQLiteJobStore": """>>> import tempfile, os
>>> store = forge.SQLiteJobStore(os.path.join(tempfile.mkdtemp(), "jobs.sqlite3"))
>>> run(store.list())
[]
>>> run(store.aclose())""",
    "RedisJobStore": """>>> forge.RedisJobStore  # doctest: +ELLIPSIS
<class 'forge.jobs.RedisJobStore'>""",
    "ProviderOptimizer": """>>> from forge.optimize import optimizer_for
>>> opt = optimizer_for("openai", {"seed": 7})
>>> isinstance(opt, forge.ProviderOptimizer)
True
>>> opt.optimize_request(forge.build_request("gpt-4o-mini", "hi")).seed
7""",
    "CacheHints": """>>> forge.CacheHints(system=True, ttl_seconds=3600).ttl_seconds
3600""",
    "ResponseCache": """>>> isinstance(forge.MemoryResponseCache(), forge.ResponseCache)
True""",
    "MemoryResponseCache": """>>> llm = reg.get_llm("openai:gpt-4o-mini", enable_cache=True, cache_ttl=300)
>>> first, second = run(llm.invoke("same question")), run(llm.invoke("same question"))
>>> first.text == second.text
True""",
    "RedisResponseCache": """>>> forge.RedisResponseCache  # doctest: +ELLIPSIS
<class 'forge.cache.RedisResponseCache'>""",
}
for _name in ("ForgeError", "ConfigError", "ProviderError", "RateLimitError", "OverloadedError", "ServerError",
              "ProviderTimeout", "ProviderConnectionError", "AuthenticationError", "BadRequestError",
              "ContextLengthError", "NotFoundError", "ToolCallError", "BatchError", "StreamError",
              "StreamInterrupted", "StreamTimeout"):
    EXAMPLES.setdefault(_name, _ERROR_EXAMPLE.format(name=_name))
EXAMPLES.setdefault("CircuitOpen", _ERROR_EXAMPLE.format(name="CircuitOpen"))
EXAMPLES.setdefault("Fallback", """>>> reply = run(reg.invoke("openai:gpt-4o-mini", "hi", fallbacks=[forge.Fallback("anthropic:claude-haiku-4-5")]))
>>> reply.provider, reply.fallback_attempts
('openai', ())""")
EXAMPLES.setdefault("FallbackChain", """>>> chain = forge.FallbackChain((forge.Fallback("anthropic:claude-haiku-4-5"),), max_limiter_wait=2.0)
>>> sorted(chain.fall_through)[:3]
['connection', 'context_length', 'invalid_reply']""")
EXAMPLES.setdefault("FallbackAttempt", """>>> forge.FallbackAttempt("openai:gpt-4o-mini", "OverloadedError", 0.12, attempts=3).attempts
3""")
EXAMPLES.setdefault("BreakerConfig", """>>> forge.load_config({"breaker": {"failures": 3, "cooldown": 10}}).breaker.cooldown
10.0""")
EXAMPLES.setdefault("RetryAttempt", """>>> forge.RetryAttempt(1, forge.ServerError("boom"), 0.5).wait
0.5""")


def _signature(obj: object) -> str:
    try:
        text = str(inspect.signature(obj))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return ""
    return re.sub(r" at 0x[0-9a-f]+", "", text)  # default values' reprs must not vary between runs


def _doc(obj: object) -> str:
    return inspect.getdoc(obj) or ""


def _methods(cls: type) -> list[str]:
    lines = []
    for name, member in inspect.getmembers(cls):
        if name.startswith("_") and name not in ("__aiter__", "__aenter__"):
            continue
        if name in getattr(cls, "__dataclass_fields__", {}):
            continue
        if isinstance(inspect.getattr_static(cls, name), property):
            doc = _doc(member).split("\n")[0] if _doc(member) else ""
            lines.append(f"- `{name}` (property){': ' + doc if doc else ''}")
            continue
        if not callable(member) or member.__qualname__.split(".")[0] != cls.__name__:
            continue
        doc = _doc(member).split("\n")[0]
        prefix = "async " if inspect.iscoroutinefunction(member) else ""
        lines.append(f"- `{prefix}{name}{_signature(member)}`{': ' + doc if doc else ''}")
    return lines


def render() -> str:
    names = set(forge.__all__) - {"__version__"}
    listed = {n for _, group in SECTIONS for n in group}
    missing = sorted(names - listed)
    if missing:
        raise SystemExit(f"apidoc: public names not placed in a section: {', '.join(missing)}")
    out = [
        "# API reference",
        "",
        "Everything public is importable from `forge` itself. This page is generated from the code by",
        "`python scripts/apidoc.py`; the test suite fails when it is out of date, and runs every example",
        "below against the emulator (`reg` is a `forge.Registry` on it; `run` runs a coroutine).",
        "",
    ]
    for title, group in SECTIONS:
        present = [n for n in group if n in names]
        if not present:
            continue
        out += [f"## {title}", ""]
        for name in present:
            obj = getattr(forge, name)
            kind = "class" if inspect.isclass(obj) else "function"
            sig = _signature(obj) if kind == "function" or not issubclass(obj, BaseException) else ""
            out += [f"### `{name}`", "", f"```text\n{kind} forge.{name}{sig}\n```", ""]
            doc = _doc(obj)
            if doc:
                out += [doc.replace("```", "'''"), ""]
            if inspect.isclass(obj) and not issubclass(obj, BaseException):
                methods = _methods(obj)
                if methods:
                    out += ["Methods and properties:", "", *methods, ""]
            example = EXAMPLES.get(name)
            if example is None:
                raise SystemExit(f"apidoc: no example for forge.{name}; add one to EXAMPLES in scripts/apidoc.py")
            out += ["```pycon", example, "", "```", ""]
    return "\n".join(out).rstrip() + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args()
    text = render()
    target = ROOT / "docs" / "api.md"
    if args.check:
        if not target.exists() or target.read_text(encoding="utf-8") != text:
            print("docs/api.md is out of date: run `python scripts/apidoc.py`", file=sys.stderr)
            raise SystemExit(1)
        return
    target.write_text(text, encoding="utf-8")
    print(f"wrote {target}")


if __name__ == "__main__":
    main()
