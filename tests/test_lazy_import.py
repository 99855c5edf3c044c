"""`import forge` loads no vendor client and stays small."""

from __future__ import annotations

import subprocess
import sys

VENDORS = ("openai", "anthropic", "google.genai", "ollama", "httpx", "httpx2")


def _modules_after(code: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", f"{code}\nimport sys\nprint('\\n'.join(sys.modules))"],
        check=True, capture_output=True, text=True,
    ).stdout
    return set(out.split())


def test_import_forge_loads_no_vendor_client() -> None:
    loaded = _modules_after("import forge")
    assert not [m for m in VENDORS if m in loaded]


def test_public_names_resolve_without_vendor_clients() -> None:
    loaded = _modules_after("import forge\nfor n in forge.__all__: getattr(forge, n)\nforge.Registry()")
    assert not [m for m in VENDORS if m in loaded]
    assert "asyncio" in loaded  # the lazy half did load


def test_every_public_name_is_exported() -> None:
    import forge

    for name in forge.__all__:
        assert getattr(forge, name) is not None
    assert "Registry" in dir(forge)


def test_import_forge_and_a_registry_load_no_opentelemetry() -> None:
    loaded = _modules_after("import forge\nforge.Registry(config={})\nforge.Telemetry()")
    assert not [m for m in loaded if m.startswith("opentelemetry")]


def test_a_call_without_configured_opentelemetry_imports_none_of_it() -> None:
    code = """
import asyncio, forge
from forge.llm import LLM
from forge.types import Response
class P:
    name = "fake"
    async def complete(self, request):
        return Response(text="ok", provider="fake", model=request.model)
    def classify(self, exc):
        raise exc
async def main():
    reg = forge.Registry(config={})
    llm = LLM(P(), "m", metrics=reg.metrics, telemetry=reg.telemetry)
    assert (await llm.invoke("hi")).text == "ok"
asyncio.run(main())
"""
    loaded = _modules_after(code)
    assert not [m for m in loaded if m.startswith("opentelemetry")]
