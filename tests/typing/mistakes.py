"""Deliberate mistakes that ``mypy --strict`` must flag (checked by tests/test_typing.py; never run)."""

from __future__ import annotations

import forge
from forge.testing import Emulator


async def mistakes(reg: forge.Registry, llm: forge.LLM) -> None:
    await reg.invoke("openai:gpt-4o-mini", "hi", temprature=0.2)  # line 10
    await reg.invoke("openai:gpt-4o-mini", "hi", max_tokens="lots")  # line 11
    reg.stream("openai:gpt-4o-mini", "hi", first_token_timout=1)  # line 12
    await llm.invoke("hi", reasoning_effort="extreme")  # line 13
    llm.stream("hi", max_attempts="3")  # line 14
    llm.request("hi", timeout=5)  # line 15
    await reg.batch_invoke("openai:gpt-4o-mini", ["a"], stop=3)  # line 16


async def fine(reg: forge.Registry, llm: forge.LLM, emu: Emulator) -> None:
    await reg.invoke("openai:gpt-4o-mini", "hi", temperature=0.2, max_tokens=5, timeout=3, max_attempts=1)
    reg.stream("openai:gpt-4o-mini", "hi", first_token_timeout=1, timeout=30, max_attempts=2)
    llm.request("hi", tools=[{"name": "f"}], tool_choice="auto", response_format="json")
    config = emu.config()
    config["providers"]["openai"]["retry"] = {"max_attempts": 1}
