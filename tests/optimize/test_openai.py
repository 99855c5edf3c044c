"""OpenAI optimizer: the exact requests it produces, when it does nothing, and batch lines."""

from __future__ import annotations

import json

from forge.optimize.openai import JSON_INSTRUCTION, OpenAIOptimizer, strict_schema_problem
from forge.types import CacheHints, Message, Request, ResponseFormat, Tool

LONG = "Reference text. " * 400  # ~1,600 tokens: above OpenAI's 1,024-token caching minimum


def req(*messages: Message, **kw: object) -> Request:
    return Request(model="gpt-4o-mini", messages=messages or (Message("user", "hi"),), **kw)  # type: ignore[arg-type]


def opt(**settings: object) -> OpenAIOptimizer:
    return OpenAIOptimizer(settings)


def test_seed_is_added_when_missing() -> None:
    out = opt(json_mode=False, prompt_cache=False).optimize_request(req())
    assert out == req(seed=42)


def test_seed_value_is_configurable() -> None:
    assert opt(seed=7).optimize_request(req()).seed == 7


def test_seed_set_by_the_caller_is_kept_and_the_skip_is_recorded() -> None:
    o = opt()
    assert o.optimize_request(req(seed=3)).seed == 3
    assert o.stats.skipped["seed"] == 1 and o.stats.last_reason["seed"] == "the caller set a seed"


def test_seed_switch_off_leaves_seed_unset() -> None:
    assert opt(seed=False).optimize_request(req()).seed is None


def test_json_object_gets_the_json_word_in_the_system_prompt() -> None:
    out = opt().optimize_request(req(Message("user", "List three colors"), response_format=ResponseFormat("json")))
    assert out.system == JSON_INSTRUCTION
    assert out.response_format == ResponseFormat("json")


def test_json_instruction_is_appended_after_an_existing_system_prompt() -> None:
    out = opt().optimize_request(req(system="Be terse.", response_format=ResponseFormat("json")))
    assert out.system == "Be terse.\n\n" + JSON_INSTRUCTION


def test_json_word_already_present_means_no_change() -> None:
    o = opt()
    r = req(Message("user", "Give me json with colors"), response_format=ResponseFormat("json"))
    assert o.optimize_request(r).system is None
    assert o.stats.last_reason["json_mode"] == "a message already mentions JSON"


def test_prompt_asking_for_json_turns_json_mode_on() -> None:
    # The recorded crewAI request: OpenAI answered it with json_object.
    r = req(Message("user", "Return a JSON object with a 'status' field set to 'success'"))
    out = opt().optimize_request(r)
    assert out.response_format == ResponseFormat("json")
    assert out.system is None  # the prompt already says JSON


def test_prompt_about_json_without_asking_for_it_is_left_alone() -> None:
    out = opt().optimize_request(req(Message("user", "Explain what JSON is, in two sentences.")))
    assert out.response_format is None


def test_json_detect_can_be_switched_off() -> None:
    out = opt(json_detect=False).optimize_request(req(Message("user", "Respond in JSON only.")))
    assert out.response_format is None


def test_strict_compatible_schema_is_sent_strict() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"],
              "additionalProperties": False}
    fmt = ResponseFormat("json_schema", schema=schema)
    assert opt().optimize_request(req(response_format=fmt)).response_format == fmt


def test_schema_strict_mode_would_reject_is_sent_non_strict() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "string"}}}
    o = opt()
    out = o.optimize_request(req(response_format=ResponseFormat("json_schema", schema=schema)))
    assert out.response_format == ResponseFormat("json_schema", schema=schema, strict=False)
    assert "additionalProperties" in o.stats.last_reason["json_mode"]


def test_strict_schema_problem_finds_nested_optional_properties() -> None:
    schema = {"type": "object", "additionalProperties": False, "required": ["p"],
              "properties": {"p": {"type": "object", "additionalProperties": False,
                                   "properties": {"x": {"type": "number"}}}}}
    assert strict_schema_problem(schema) == "$.p leaves x optional"


def test_tools_are_sorted_and_their_schemas_canonical() -> None:
    b = Tool("b_tool", "B", {"type": "object", "properties": {"z": {"type": "string"}, "a": {"type": "string"}}})
    a = Tool("a_tool", "A", {"properties": {}, "type": "object"})
    out = opt().optimize_request(req(tools=(b, a)))
    assert [t.name for t in out.tools] == ["a_tool", "b_tool"]
    assert list(out.tools[1].parameters["properties"]) == ["a", "z"]  # type: ignore[call-overload]
    assert list(out.tools[0].parameters) == ["properties", "type"]


def test_prompt_cache_key_is_derived_from_the_static_prefix() -> None:
    o = opt()
    one = o.optimize_request(req(Message("user", "question one"), system=LONG))
    two = o.optimize_request(req(Message("user", "another question"), system=LONG))
    other = o.optimize_request(req(Message("user", "question one"), system=LONG + "changed"))
    assert one.cache is not None and one.cache.key is not None and one.cache.key.startswith("forge-")
    assert one.cache == two.cache == CacheHints(key=one.cache.key)
    assert other.cache is not None and other.cache.key != one.cache.key


def test_no_prompt_cache_key_below_1024_tokens() -> None:
    o = opt()
    assert o.optimize_request(req(system="short")).cache is None
    assert "below OpenAI's 1024" in o.stats.last_reason["prompt_cache_key"]


def test_a_fixed_prompt_cache_key_from_config() -> None:
    out = opt(prompt_cache_key="tenant-7").optimize_request(req(system=LONG))
    assert out.cache == CacheHints(key="tenant-7")


def test_explicit_breakpoints_are_opt_in() -> None:
    plain = opt().optimize_request(req(system=LONG))
    assert "prompt_cache_options" not in plain.extra
    out = opt(cache_breakpoints=True, cache_ttl="12h").optimize_request(req(system=LONG))
    assert out.extra["prompt_cache_options"] == {"ttl": "12h"}
    assert out.cache is not None and out.cache.system and out.cache.ttl_seconds == 43200


def test_explicit_breakpoints_render_as_content_parts() -> None:
    from forge.providers.openai import _params

    out = opt(cache_breakpoints=True).optimize_request(req(Message("user", "q"), system=LONG))
    params = _params(out)
    assert params["messages"][0]["content"] == [
        {"type": "text", "text": LONG, "prompt_cache_breakpoint": {"mode": "explicit", "ttl": "30m"}}
    ]
    assert params["prompt_cache_key"] == out.cache.key  # type: ignore[union-attr]


def test_every_switch_off_returns_the_request_unchanged() -> None:
    o = opt(seed=False, json_mode=False, json_detect=False, prompt_cache=False)
    r = req(Message("user", "Return JSON"), system=LONG, tools=(Tool("b"), Tool("a")))
    assert o.optimize_request(r) is r


def test_a_failing_step_leaves_the_request_and_records_why() -> None:
    o = opt()

    def broken(request: Request) -> Request:
        raise RuntimeError("boom")

    o.default_seed = broken  # type: ignore[method-assign]
    r = req()
    assert o.optimize_request(r).seed is None
    assert o.stats.errors["seed"] == 1 and "boom" in o.stats.last_reason["seed"]


def test_batch_lines_carry_the_optimized_body() -> None:
    o = opt()
    lines = o.batch_lines([("a", req(Message("user", "hi"), max_tokens=5))])
    assert lines == [{
        "custom_id": "a", "method": "POST", "url": "/v1/chat/completions",
        "body": {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}],
                 "max_completion_tokens": 5, "seed": 42},
    }]
    jsonl = o.batch_jsonl([("a", req()), ("b", req())])
    assert [json.loads(line)["custom_id"] for line in jsonl.splitlines()] == ["a", "b"]
