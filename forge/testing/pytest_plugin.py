"""pytest plugin for services that test their forge code (registered through an entry point).

Fixtures:

- ``forge_emulator``: a started :class:`~forge.testing.Emulator` on an ephemeral port.
- ``forge_registry``: a :class:`~forge.Registry` wired to that emulator for all four providers.

Marker ``live``: tests that need a real provider key; skipped unless the
provider's key variable is set (``@pytest.mark.live("openai")``).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

import pytest

_KEY_VARS = {
    "openai": ("OPENAI_API_KEY",),
    "anthropic": ("ANTHROPIC_API_KEY",),
    "google": ("GEMINI_API_KEY", "GOOGLE_API_KEY"),
    "gemini": ("GEMINI_API_KEY", "GOOGLE_API_KEY"),
    "ollama": ("FORGE_LIVE_OLLAMA",),
}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "live(provider): needs a real provider key (e.g. OPENAI_API_KEY); skipped without one",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        marker = item.get_closest_marker("live")
        if marker is None:
            continue
        providers = marker.args or tuple(k for k in _KEY_VARS if k != "gemini")
        missing = [p for p in providers if not any(os.environ.get(v) for v in _KEY_VARS.get(p, ()))]
        if missing:
            needed = ", ".join(" or ".join(_KEY_VARS.get(p, (p,))) for p in missing)
            item.add_marker(pytest.mark.skip(reason=f"live test: set {needed} to run it"))


try:
    import pytest_asyncio

    _HAVE_ASYNCIO = True
except ImportError:  # pragma: no cover - fixtures need pytest-asyncio
    _HAVE_ASYNCIO = False

if _HAVE_ASYNCIO:
    from forge.registry import Registry
    from forge.testing import Emulator

    @pytest_asyncio.fixture
    async def forge_emulator() -> AsyncIterator[Emulator]:
        """A provider emulator on 127.0.0.1 (ephemeral port), stopped after the test."""
        async with Emulator() as emu:
            yield emu

    @pytest_asyncio.fixture
    async def forge_registry(forge_emulator: Emulator) -> AsyncIterator[Registry]:
        """A Registry whose four providers all point at ``forge_emulator``."""
        async with Registry(config=forge_emulator.config()) as reg:
            yield reg
