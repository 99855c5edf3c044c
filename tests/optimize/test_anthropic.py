"""Anthropic optimizer: where the cache_control breakpoints go, and when there are none."""

from __future__ import annotations

from forge.optimize.anthropic import AnthropicOptimizer, min_cacheable_tokens
from forge.providers.anthropic import _params
from forge.types import CacheHints, Message, Request, Tool

SYSTEM = "You review contracts. " * 1000  # ~5,000 tokens
DOC = "Clause text. " * 1000  # ~3,000 tokens


def req(*messages: Message, model: str = "claude-sonnet-4-6", **kw: object) -> Request:
    return Request(model=model, messages=messages or (Message("user", "hi"),), **kw)  # type: ignore[arg-type]


def test_minimums_per_model_family() -> None:
    assert min_cacheable_tokens("claude-sonnet-4-5-20250929") == 1024
    assert min_cacheable_tokens("claude-opus-4-1") == 1024
    assert min_cacheable_tokens("claude-3-5-haiku-latest") == 2048
    assert min_cacheable_tokens("claude-haiku-4-5") == 4096
    assert min_cacheable_tokens("claude-opus-4-5") == 4096
    assert min_cacheable_tokens("claude-sonnet-4-6") == 2048
    assert min_cacheable_tokens("claude-opus-5") == 512


def test_long_system_prompt_gets_one_breakpoint() -> None:
    out = AnthropicOptimizer().optimize_request(req(Message("user", "Is clause 4 fair?"), system=SYSTEM))
    assert out == req(Message("user", "Is clause 4 fair?"), system=SYSTEM,
                      cache=CacheHints(system=True, ttl_seconds=300))


def test_the_adapter_renders_it_as_a_system_block_with_cache_control() -> None:
    out = AnthropicOptimizer().optimize_request(req(Message("user", "q"), system=SYSTEM))
    params = _params(out)
    assert params["system"] == [{"type": "text", "text": SYSTEM, "cache_control": {"type": "ephemeral"}}]
    assert params["messages"] == [{"role": "user", "content": "q"}]


def test_one_hour_ttl_from_config() -> None:
    out = AnthropicOptimizer({"cache_ttl": 3600}).optimize_request(req(system=SYSTEM))
    assert _params(out)["system"][0]["cache_control"] == {"type": "ephemeral", "ttl": "1h"}


def test_short_system_prompt_gets_no_breakpoint() -> None:
    o = AnthropicOptimizer()
    r = req(system="Be terse.")
    assert o.optimize_request(r) is r
    assert "below claude-sonnet-4-6's minimum of 2048" in o.stats.last_reason["prompt_cache"]


def test_haiku_needs_a_longer_prefix() -> None:
    medium = "word " * 3000  # ~3,000 tokens: enough for Sonnet 4.6, not for Haiku 4.5
    assert AnthropicOptimizer().optimize_request(req(system=medium)).cache is not None
    assert AnthropicOptimizer().optimize_request(req(system=medium, model="claude-haiku-4-5")).cache is None


def test_min_cache_tokens_override() -> None:
    out = AnthropicOptimizer({"min_cache_tokens": 2}).optimize_request(req(system="Be terse, please."))
    assert out.cache == CacheHints(system=True, ttl_seconds=300)


def test_marked_document_and_tools_get_breakpoints_in_prefix_order() -> None:
    tools = tuple(Tool(f"tool_{i}", "x" * 5000) for i in range(3))  # ~3,750 tokens of definitions
    r = req(Message("user", DOC, cache_breakpoint=True), Message("user", "Summarize it"), system=SYSTEM,
            tools=tools)
    out = AnthropicOptimizer().optimize_request(r)
    assert out.cache == CacheHints(system=True, tools=True, ttl_seconds=300)
    assert [m.cache_breakpoint for m in out.messages] == [True, False]
    params = _params(out)
    assert params["tools"][-1]["cache_control"] == {"type": "ephemeral"}
    assert "cache_control" not in params["tools"][0]
    assert params["messages"][0]["content"] == [
        {"type": "text", "text": DOC, "cache_control": {"type": "ephemeral"}}]


def test_tool_breakpoint_can_be_switched_off() -> None:
    r = req(system=SYSTEM, tools=(Tool("t", "x" * 8000),))
    assert AnthropicOptimizer({"cache_tools": False}).optimize_request(r).cache == CacheHints(
        system=True, ttl_seconds=300)


def test_never_more_than_four_breakpoints() -> None:
    docs = [Message("user", DOC, cache_breakpoint=True) for _ in range(6)]
    out = AnthropicOptimizer().optimize_request(req(*docs, Message("user", "q"), system=SYSTEM))
    marks = sum(m.cache_breakpoint for m in out.messages) + (out.cache is not None and out.cache.system)
    assert marks == 4
    # the first (system) and the last three documents
    assert [m.cache_breakpoint for m in out.messages] == [False, False, False, True, True, True, False]


def test_marks_below_the_minimum_are_dropped() -> None:
    r = req(Message("user", "tiny", cache_breakpoint=True), Message("user", DOC, cache_breakpoint=True),
            Message("user", "q"))
    out = AnthropicOptimizer().optimize_request(r)
    assert [m.cache_breakpoint for m in out.messages] == [False, True, False]


def test_a_lone_mark_below_the_minimum_is_cleared_not_sent() -> None:
    o = AnthropicOptimizer()
    out = o.optimize_request(req(Message("user", "tiny", cache_breakpoint=True), Message("user", "q")))
    assert [m.cache_breakpoint for m in out.messages] == [False, False]
    assert out.cache is None
    assert "below claude-sonnet-4-6's minimum" in o.stats.last_reason["prompt_cache"]


def test_conversation_history_is_cached_before_the_last_user_turn() -> None:
    history = (Message("user", DOC), Message("assistant", "Read it."), Message("user", "Clause 3?"))
    out = AnthropicOptimizer().optimize_request(req(*history))
    assert [m.cache_breakpoint for m in out.messages] == [False, True, False]


def test_caller_cache_hints_are_respected() -> None:
    hints = CacheHints(system=True, ttl_seconds=3600)
    r = req(system=SYSTEM, cache=hints)
    o = AnthropicOptimizer()
    assert o.optimize_request(r) is r
    assert o.stats.last_reason["prompt_cache"] == "the caller set cache hints"


def test_switch_off() -> None:
    r = req(system=SYSTEM)
    assert AnthropicOptimizer({"prompt_cache": False}).optimize_request(r) is r
