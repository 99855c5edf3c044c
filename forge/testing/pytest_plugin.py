"""pytest plugin for services that test their forge code (registered through an entry point).

Installing ``forge-llm[testing]`` is enough; nothing to add to ``conftest.py``. The
emulator fixtures are async (pytest-asyncio, in the extra): set ``asyncio_mode = "auto"``
in the pytest ini options, or mark each async test ``@pytest.mark.asyncio``.

Fixtures:

- ``forge_emulator``: a started :class:`~forge.testing.Emulator` on an ephemeral port.
- ``forge_registry``: a :class:`~forge.Registry` wired to that emulator for all four providers.
- ``forge_cassette``: a :class:`~forge.testing.cassettes.Cassette` for the test:
  replayed with the network blocked, or recorded with ``--forge-record``.

Markers:

- ``live``: tests that need a real provider key; skipped unless the
  provider's key variable is set (``@pytest.mark.live("openai")``).
- ``forge_cassette(name=None, *, target="live")``: the cassette a test
  uses (``cassettes/<name>.yaml`` next to the test file; default name
  ``<test module>/<test name>``). ``target="emulator"`` records against
  a fresh :class:`~forge.testing.EmulatorThread` instead of real providers.
  A marked test gets the fixture even if it does not ask for it.

Recording::

    python -m pytest --forge-record tests/test_chat.py          # record missing cassettes ("once")
    FORGE_RECORD=1 python -m pytest tests/test_chat.py          # the same, from the environment
    python -m pytest --forge-record-mode=all 'tests/test_chat.py::test_hello'   # re-record one

Options: ``--forge-record``, ``--forge-record-mode=once|new_episodes|all``,
``FORGE_RECORD=1|once|new_episodes|all``; ini ``forge_cassette_dir`` puts
every cassette under one directory (relative to the rootdir) instead.
"""

from __future__ import annotations

import inspect
import os
import re
from collections.abc import AsyncIterator, Generator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, cast

import pytest

from forge.testing.cassettes import RECORD_MODES, Cassette, RecordMode, use_cassette

if TYPE_CHECKING:
    from forge.testing.emulator import EmulatorThread

_KEY_VARS = {
    "openai": ("OPENAI_API_KEY",),
    "anthropic": ("ANTHROPIC_API_KEY",),
    "google": ("GEMINI_API_KEY", "GOOGLE_API_KEY"),
    "gemini": ("GEMINI_API_KEY", "GOOGLE_API_KEY"),
    "ollama": ("FORGE_LIVE_OLLAMA",),
}
_RECORD_ENV = "FORGE_RECORD"
_TARGETS = ("live", "emulator")
_CALL_FAILED = pytest.StashKey[bool]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("forge", "forge cassettes")
    group.addoption(
        "--forge-record",
        action="store_true",
        default=False,
        help="record forge cassettes that do not exist yet (record mode 'once'); "
        f"also set by {_RECORD_ENV}=1",
    )
    group.addoption(
        "--forge-record-mode",
        choices=[m for m in RECORD_MODES if m != "none"],
        default=None,
        help="record with this vcrpy mode: once (missing cassettes), new_episodes (add missing "
        "requests), all (re-record from scratch); implies --forge-record",
    )
    parser.addini(
        "forge_cassette_dir",
        "directory holding forge cassettes, relative to the rootdir "
        "(default: cassettes/ next to each test file)",
        default="",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "live(provider): needs a real provider key (e.g. OPENAI_API_KEY); skipped without one",
    )
    config.addinivalue_line(
        "markers",
        "forge_cassette(name=None, *, target='live'): replay this test's HTTP traffic from "
        "cassettes/<name>.yaml (record it with --forge-record; target='emulator' records "
        "against the forge emulator)",
    )
    record_mode(config)  # a bad FORGE_RECORD value fails the run at start, not in the first test


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


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, object, object]:
    report = yield
    if call.when == "call" and getattr(report, "failed", False):
        item.stash[_CALL_FAILED] = True
    return report


# --------------------------------------------------------------------------- cassettes


def record_mode(config: pytest.Config) -> RecordMode:
    """The record mode this run uses: from the options, else ``FORGE_RECORD``, else ``"none"``."""
    mode = config.getoption("--forge-record-mode", None)
    if mode:
        return cast(RecordMode, mode)
    if config.getoption("--forge-record", False):
        return "once"
    value = os.environ.get(_RECORD_ENV, "").strip().lower()
    if value in ("", "0", "false", "no", "off", "none"):
        return "none"
    if value in ("1", "true", "yes", "on", "once"):
        return "once"
    if value in ("new_episodes", "all"):
        return cast(RecordMode, value)
    raise pytest.UsageError(
        f"{_RECORD_ENV}={os.environ[_RECORD_ENV]!r} is not a record mode; use 1 (record missing "
        "cassettes), new_episodes (add missing requests), all (re-record), or 0 (replay)."
    )


def _marker_args(item: pytest.Item) -> tuple[str | None, str]:
    marker = item.get_closest_marker("forge_cassette")
    if marker is None:
        return None, "live"
    unknown = set(marker.kwargs) - {"name", "target"}
    if unknown or len(marker.args) > 1:
        raise pytest.UsageError(
            f"{item.nodeid}: @pytest.mark.forge_cassette takes (name=None, *, target='live'); "
            f"got args={marker.args!r} kwargs={marker.kwargs!r}."
        )
    name = marker.args[0] if marker.args else marker.kwargs.get("name")
    target = marker.kwargs.get("target", "live")
    if name is not None and (not isinstance(name, str) or not name.strip()):
        raise pytest.UsageError(
            f"{item.nodeid}: forge_cassette name must be a non-empty string, got {name!r}."
        )
    if target not in _TARGETS:
        raise pytest.UsageError(
            f"{item.nodeid}: forge_cassette target must be 'live' or 'emulator', got {target!r}."
        )
    return name, target


def _cassette_path(request: pytest.FixtureRequest, name: str | None) -> Path:
    node = request.node
    if name is None:
        module = Path(str(node.path)).stem
        test = re.sub(r"[^A-Za-z0-9_.-]+", "_", node.name).strip("_")
        name = f"{module}/{test}"
    filename = name if name.endswith((".yaml", ".yml")) else f"{name}.yaml"
    configured = str(request.config.getini("forge_cassette_dir") or "")
    base = request.config.rootpath / configured if configured else Path(str(node.path)).parent / "cassettes"
    return base / filename


def _rerecord_command(request: pytest.FixtureRequest, target: str, option: str) -> str:
    command = f"python -m pytest {option} '{request.node.nodeid}' (from {request.config.rootpath})"
    if target == "emulator":
        return command
    return command + "; it calls the real providers, so their API keys must be set"


@pytest.fixture
def forge_cassette(request: pytest.FixtureRequest) -> Iterator[Cassette]:
    """This test's cassette: replayed with the network blocked, or recorded with ``--forge-record``.

    Build the Registry from ``forge_cassette.config()`` so the same test runs
    in both modes::

        @pytest.mark.forge_cassette("hello", target="emulator")
        async def test_hello(forge_cassette):
            async with forge.Registry(config=forge_cassette.config()) as reg:
                reply = await reg.invoke("openai:gpt-4o-mini", "Say hi")
            assert reply.text
    """
    name, target = _marker_args(request.node)
    mode = record_mode(request.config)
    path = _cassette_path(request, name)
    hint = _rerecord_command(request, target, "--forge-record-mode=all")
    if mode == "none" and not path.is_file():
        pytest.fail(
            f"forge cassette {path} does not exist, and this run replays only.\n"
            f"Record it once: {_rerecord_command(request, target, '--forge-record')}",
            pytrace=False,
        )
    emulator: EmulatorThread | None = None
    if mode != "none" and target == "emulator":
        from forge.testing.emulator import EmulatorThread

        emulator = EmulatorThread().start()
    new = not path.exists()
    try:
        with use_cassette(path, record_mode=mode, rerecord_hint=hint) as cassette:
            cassette.emulator = emulator
            yield cassette
            if mode != "none" and new and request.node.stash.get(_CALL_FAILED, False):
                # A failed test records nothing: an empty or partial new cassette would be
                # replayed by the next --forge-record run, which would refuse to record it.
                cassette._discard = True
    finally:
        if emulator is not None:
            emulator.stop()
    if cassette.misses and not request.node.stash.get(_CALL_FAILED, False):
        # The test passed although a request missed the cassette: something swallowed the miss.
        pytest.fail(str(cassette.misses[0]), pytrace=False)


@pytest.fixture(autouse=True)
def _forge_cassette_marker(request: pytest.FixtureRequest) -> None:
    """Give tests marked ``forge_cassette`` the fixture even when they do not ask for it."""
    if request.node.get_closest_marker("forge_cassette") is not None:
        request.getfixturevalue("forge_cassette")


# --------------------------------------------------------------------------- emulator fixtures


_ASYNC_FIXTURES = frozenset({"forge_emulator", "forge_registry", "forge_cassette"})

try:
    import pytest_asyncio

    _HAVE_ASYNCIO = True
except ImportError:  # installed with forge-llm[testing]; without it, say so rather than vanish
    _HAVE_ASYNCIO = False


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Fail an ``async def`` test using forge's fixtures that nothing would run, saying how to fix it."""
    uses_ours = _ASYNC_FIXTURES & set(getattr(item, "fixturenames", ()))
    if not (uses_ours and inspect.iscoroutinefunction(getattr(item, "obj", None))):
        return
    if not _HAVE_ASYNCIO:
        pytest.fail(
            f"{item.nodeid} is an async test, and forge's fixtures need pytest-asyncio to run it: "
            "pip install 'forge-llm[testing]' (or pytest-asyncio).",
            pytrace=False,
        )
    if type(item) is pytest.Function and item.get_closest_marker("asyncio") is None:
        # pytest-asyncio's default strict mode leaves unmarked async tests to pytest, which cannot run them.
        pytest.fail(
            f"{item.nodeid} is an async test that pytest-asyncio does not run: set asyncio_mode = "
            '"auto" under [tool.pytest.ini_options] in pyproject.toml (or asyncio_mode = auto in '
            "pytest.ini), or mark the test @pytest.mark.asyncio.",
            pytrace=False,
        )


if not _HAVE_ASYNCIO:

    @pytest.fixture(name="forge_emulator")
    def _forge_emulator_needs_pytest_asyncio() -> None:
        """Needs pytest-asyncio: fails saying so."""
        pytest.fail("forge_emulator needs pytest-asyncio: pip install 'forge-llm[testing]'.", pytrace=False)

    @pytest.fixture(name="forge_registry")
    def _forge_registry_needs_pytest_asyncio() -> None:
        """Needs pytest-asyncio: fails saying so."""
        pytest.fail("forge_registry needs pytest-asyncio: pip install 'forge-llm[testing]'.", pytrace=False)

else:
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
