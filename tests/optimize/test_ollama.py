"""Ollama optimizer: keep_alive on the provider config, num_ctx sized to the prompt."""

from __future__ import annotations

from forge.config import ProviderConfig
from forge.optimize.ollama import OllamaOptimizer
from forge.types import Message, Request

LONG = "Log line with some details. " * 2000  # ~14,000 tokens


def req(text: str = "hi", **kw: object) -> Request:
    return Request(model="llama3", messages=(Message("user", text),), **kw)  # type: ignore[arg-type]


def test_keep_alive_goes_into_the_provider_options() -> None:
    cfg = OllamaOptimizer().optimize_config(ProviderConfig(name="ollama"))
    assert cfg.options == {"keep_alive": "30m"}


def test_keep_alive_configured_by_the_user_wins() -> None:
    mine = ProviderConfig(name="ollama", options={"keep_alive": "2h"})
    assert OllamaOptimizer().optimize_config(mine) is mine
    assert OllamaOptimizer({"keep_alive": -1}).optimize_config(ProviderConfig(name="ollama")).options == {
        "keep_alive": -1}


def test_short_prompt_keeps_the_default_context() -> None:
    o = OllamaOptimizer()
    r = req()
    assert o.optimize_request(r) is r
    assert "fit the default context of 4096" in o.stats.last_reason["num_ctx"]


def test_long_prompt_gets_a_context_that_fits_rounded_to_a_power_of_two() -> None:
    out = OllamaOptimizer().optimize_request(req(LONG, max_tokens=500))
    assert out == req(LONG, max_tokens=500, extra={"options": {"num_ctx": 16384}})


def test_existing_options_are_kept() -> None:
    out = OllamaOptimizer().optimize_request(req(LONG, max_tokens=500, extra={"options": {"top_k": 5}}))
    assert out.extra == {"options": {"top_k": 5, "num_ctx": 16384}}


def test_caller_num_ctx_is_respected() -> None:
    r = req(LONG, extra={"options": {"num_ctx": 8192}})
    assert OllamaOptimizer().optimize_request(r) is r


def test_the_ceiling_caps_the_context() -> None:
    o = OllamaOptimizer({"max_num_ctx": 8192})
    assert o.optimize_request(req(LONG)).extra == {"options": {"num_ctx": 8192}}
    assert "Ollama will truncate" in o.stats.last_reason["num_ctx"]


def test_a_fixed_num_ctx() -> None:
    assert OllamaOptimizer({"num_ctx": 32768}).optimize_request(req()).extra == {"options": {"num_ctx": 32768}}


def test_num_ctx_switch_off() -> None:
    r = req(LONG)
    assert OllamaOptimizer({"num_ctx": False}).optimize_request(r) is r


def test_the_adapter_sends_num_ctx_and_num_predict() -> None:
    from forge.providers.ollama import ollama_chat_args

    out = OllamaOptimizer().optimize_request(req(LONG, max_tokens=500))
    _, kwargs = ollama_chat_args(out)
    assert kwargs["options"] == {"num_predict": 500, "num_ctx": 16384}
