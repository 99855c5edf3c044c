"""Record and replay provider HTTP traffic (vcrpy cassettes) with defaults that suit forge.

Record once against a real provider or the emulator, then replay in CI with
the network blocked::

    import forge
    from forge.testing.cassettes import use_cassette

    with use_cassette("cassettes/hello.yaml") as cassette:        # replay; no socket may connect
        async with forge.Registry(config=cassette.config()) as reg:
            reply = await reg.invoke("openai:gpt-4o-mini", "Say hi")

``use_cassette(..., record_mode="once")`` records what is missing; in pytest the
``forge_cassette`` fixture (:mod:`forge.testing.pytest_plugin`) does all of this
per test, switched by ``--forge-record`` / ``FORGE_RECORD=1``.

What the defaults do, and why:

- **Streams** are stored as one body string (SSE / NDJSON text intact) and
  replayed through the same HTTP client, so forge decodes them exactly as
  it decodes the wire. Multi-line bodies are written as YAML block scalars
  so they can be read in review.
- **Matching** is on method, path, query (without ``key=``-style credential
  parameters) and the body: JSON bodies compared after ``json.loads`` and a
  sorted-key dump, multipart uploads with their random boundary taken out.
  Host, port and headers are ignored, so a cassette recorded against the
  emulator on any port (or the real API) replays anywhere.
- **gzip** bodies are stored decoded.
- **Credentials never reach the file**: ``authorization``, ``x-api-key``,
  ``x-goog-api-key``, ``api-key``, cookies and OpenAI organization/project
  headers are dropped from requests, cookie and organization headers from
  responses, ``key=`` / ``api_key=`` from URLs, and the values of the usual
  key variables (``OPENAI_API_KEY``...) are replaced by ``REDACTED``
  anywhere they appear. Loopback URLs are rewritten to
  :data:`PLACEHOLDER_ORIGIN`; volatile client headers (``user-agent``,
  ``x-stainless-*``) are left out, so re-recording on another machine gives
  a small diff. :func:`find_secrets` checks a cassette for anything key-like.
- **Batch jobs** replay with the job ids they were recorded with (forge's
  job ids are random and the provider echoes them in every result), and
  matching ignores job ids, so a batch replays with its recorded results.
- **A replay miss** raises :class:`CassetteMiss`, naming the request, the
  cassette and how to re-record. It derives from ``BaseException`` so that
  no vendor client, forge retry or service ``except Exception`` can wrap,
  retry or swallow it: the test fails, once.
- **Only the vendor clients' HTTP stacks are recorded** (httpx, httpx2,
  aiohttp): a library fetching something with ``requests`` or ``urllib3``
  (tiktoken downloading its BPE file, say) is not written into the cassette.
- **While replaying, the network is blocked**: any TCP connect or DNS
  lookup raises :class:`NetworkBlocked` (a ``ConnectionRefusedError``, so
  code with an offline fallback takes it), proving nothing left the process.

vcrpy (``pip install 'forge-llm[testing]'``) is imported only when a cassette
is used; importing this module needs nothing beyond the standard library.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import logging
import os
import re
import socket
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from unittest import mock
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from forge.testing._cassette_files import (
    CREDENTIAL_HEADERS,
    CREDENTIAL_QUERY_PARAMS,
    REDACTED,
    RESPONSE_SECRET_HEADERS,
    YamlSerializer,
    find_secrets,
)

if TYPE_CHECKING:
    from forge.config import ForgeConfig
    from forge.testing._emulator.script import Fault, Reply, Rule
    from forge.testing.emulator import Emulator, EmulatorThread

__all__ = [
    "CREDENTIAL_HEADERS",
    "CREDENTIAL_QUERY_PARAMS",
    "MATCH_ON",
    "PLACEHOLDER_ORIGIN",
    "RECORD_MODES",
    "REPLAY_API_KEY",
    "Cassette",
    "CassetteMiss",
    "NetworkBlocked",
    "RecordMode",
    "block_network",
    "find_secrets",
    "normalize_body",
    "replay_config",
    "use_cassette",
]

RecordMode = Literal["none", "once", "new_episodes", "all"]
RECORD_MODES: tuple[RecordMode, ...] = ("none", "once", "new_episodes", "all")
"""``none`` replays only; ``once`` records a cassette that does not exist yet;
``new_episodes`` adds requests missing from an existing one; ``all`` records
everything again and keeps only what was recorded now."""

PLACEHOLDER_ORIGIN = "http://forge-emulator.invalid"
"""Where recorded loopback URLs point, and where :func:`replay_config` sends requests."""

REPLAY_API_KEY = "forge-replay-key"
"""The API key :func:`replay_config` configures (never sent anywhere; vcrpy answers)."""

MATCH_ON: tuple[str, ...] = ("method", "path", "query", "body")
"""The default request matching: host, port and headers are ignored."""

# Client-side headers that differ per machine or attempt and are never matched on.
_VOLATILE_REQUEST_HEADERS = frozenset(
    {"user-agent", "x-goog-api-client", "host", "content-length", "connection"}
)
_VOLATILE_PREFIXES = ("x-stainless-",)
# The vendor clients speak httpx2 (OpenAI, Anthropic, Gemini), httpx (Ollama) or aiohttp (Gemini, when
# installed); everything else is left alone so no library download ends up in a cassette.
_SKIP_PATCHERS = ("httplib", "requests", "boto3", "urllib3", "httplib2", "tornado")
_LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1", "0.0.0.0"})
_SECRET_ENV_VARS = (
    "OPENAI_API_KEY",
    "ANTHROPIC_API_KEY",
    "GEMINI_API_KEY",
    "GOOGLE_API_KEY",
    "OLLAMA_API_KEY",
    "OPENAI_ORG_ID",
    "OPENAI_PROJECT_ID",
)
_MIN_SECRET_LENGTH = 8
_BODY_EXCERPT = 300
_PROVIDERS = ("openai", "anthropic", "google", "ollama")


# --------------------------------------------------------------------------- errors


class CassetteMiss(BaseException):
    """A request had no recorded answer in the cassette, and the record mode forbids recording it.

    A ``BaseException`` on purpose: the vendor clients wrap every ``Exception``
    raised inside their transport (Anthropic's as a retryable connection error),
    and a service's own ``except Exception`` fallback would hide the miss. This
    one reaches the test runner unchanged. Attributes: ``method``, ``uri``,
    ``body`` (an excerpt), ``cassette`` (the file) and ``rerecord`` (how to fix it).
    """

    def __init__(
        self, message: str, *, method: str, uri: str, body: str, cassette: Path, rerecord: str
    ) -> None:
        super().__init__(message)
        self.method = method
        self.uri = uri
        self.body = body
        self.cassette = cassette
        self.rerecord = rerecord


class NetworkBlocked(ConnectionRefusedError):
    """Code tried to open a network connection (or resolve a name) while a cassette replays.

    Provider traffic never gets this far (vcrpy answers it at the HTTP client),
    so this is some other code going online. It is an ``OSError``, as being
    offline is, so code with an offline fallback (tiktoken's) still works;
    each attempt is also listed in :attr:`Cassette.blocked`.
    """


# --------------------------------------------------------------------------- the cassette in use


class Cassette:
    """A cassette in use (from :func:`use_cassette` or the ``forge_cassette`` fixture).

    Attributes:
        path: the cassette file.
        record_mode: how it was opened (``"none"``: replay only).
        misses: every :class:`CassetteMiss` raised so far.
        blocked: every network connect or lookup refused so far (``host:port`` strings).
        emulator: the emulator being recorded against, when there is one (the
            pytest fixture sets it for ``target="emulator"`` while recording;
            set it yourself to have :meth:`config` and :meth:`script` use yours).
        vcr_cassette: the underlying ``vcr.cassette.Cassette`` (escape hatch).
    """

    def __init__(self, path: Path, record_mode: RecordMode, vcr_cassette: object) -> None:
        self.path = path
        self.record_mode: RecordMode = record_mode
        self.vcr_cassette = vcr_cassette
        self.misses: list[CassetteMiss] = []
        self.blocked: list[str] = []
        self.emulator: Emulator | EmulatorThread | None = None
        # Set by the pytest fixture when the test failed: a new cassette is then not written.
        self._discard = False

    @property
    def recording(self) -> bool:
        """Whether requests missing from the cassette go to the network (any mode but ``none``)."""
        return self.record_mode != "none"

    @property
    def _vcr(self) -> Any:
        return self.vcr_cassette

    def __len__(self) -> int:
        """Interactions in the cassette (loaded plus recorded so far)."""
        return len(self._vcr)

    @property
    def play_count(self) -> int:
        """How many recorded answers were played back."""
        return int(self._vcr.play_count)

    @property
    def all_played(self) -> bool:
        """Whether every recorded interaction was played back (a replay used the whole cassette)."""
        return bool(self._vcr.all_played)

    def metadata(self, key: str, default: object = None) -> object:
        """A value stored in the cassette next to its interactions.

        While recording, a missing key is stored as ``default`` (and saved with
        the cassette); while replaying, a missing key raises vcrpy's
        ``MissingMetadataError``.
        """
        return self._vcr.get_metadata(key, default)

    def config(
        self, base: ForgeConfig | Mapping[str, object] | None = None
    ) -> ForgeConfig | dict[str, object] | None:
        """The config a :class:`~forge.Registry` should use under this cassette.

        Replaying: ``base`` with every provider pointed at :data:`PLACEHOLDER_ORIGIN`
        and a dummy key (see :func:`replay_config`). Recording against the
        emulator: ``base`` pointed at the emulator. Recording against real
        providers: ``base`` unchanged (``None``: forge's usual config search).
        """
        if not self.recording:
            return replay_config(base)
        if self.emulator is not None:
            emu = self.emulator.config()["providers"]
            return _with_providers(base, {name: dict(emu[name]) for name in _PROVIDERS})
        if base is None:
            return None
        return base if not isinstance(base, Mapping) else dict(base)

    def script(
        self,
        action: Fault | Reply,
        *more: Fault | Reply,
        provider: str | None = None,
        model: str | None = None,
        path: str | None = None,
        times: int | None = 1,
    ) -> Rule | None:
        """Script the emulator while recording against it; do nothing while replaying.

        The scripted answer is in the cassette, so a test reads the same in
        both modes::

            forge_cassette.script(Fault.rate_limit(retry_after=1), provider="openai")

        Returns the emulator rule, or ``None`` when there is no emulator.
        """
        if self.emulator is None:
            if self.recording:
                raise RuntimeError(
                    "Cassette.script() scripts the emulator, but this cassette records against real "
                    "providers; use @pytest.mark.forge_cassette(target='emulator') to record against it."
                )
            return None
        return self.emulator.script(action, *more, provider=provider, model=model, path=path, times=times)


def replay_config(base: ForgeConfig | Mapping[str, object] | None = None) -> ForgeConfig | dict[str, object]:
    """``base`` (default: empty) with every provider pointed at :data:`PLACEHOLDER_ORIGIN`.

    Other settings (models, aliases, retry, rate limits, options) are kept.
    OpenAI, Anthropic and Gemini get the dummy key :data:`REPLAY_API_KEY` so no
    real key is needed in CI. ``.invalid`` never resolves, so a request that
    escaped the cassette could not reach anything even without the network block.
    """
    sections: dict[str, dict[str, object]] = {
        "openai": {"base_url": PLACEHOLDER_ORIGIN + "/v1", "api_key": REPLAY_API_KEY},
        "anthropic": {"base_url": PLACEHOLDER_ORIGIN, "api_key": REPLAY_API_KEY},
        "google": {"base_url": PLACEHOLDER_ORIGIN, "api_key": REPLAY_API_KEY},
        "ollama": {"base_url": PLACEHOLDER_ORIGIN},
    }
    result = _with_providers(base, sections)
    assert result is not None
    return result


def _with_providers(
    base: ForgeConfig | Mapping[str, object] | None, sections: Mapping[str, Mapping[str, object]]
) -> ForgeConfig | dict[str, object]:
    """``base`` with ``sections`` laid over each provider's settings (provider aliases respected)."""
    from forge.config import ForgeConfig, ProviderConfig, normalize_provider

    if isinstance(base, ForgeConfig):
        providers = dict(base.providers)
        for name, section in sections.items():
            current = providers.get(name) or ProviderConfig(name=name, source=base.source)
            providers[name] = dataclasses.replace(current, **section)  # type: ignore[arg-type]
        return dataclasses.replace(base, providers=providers)
    data: dict[str, object] = copy.deepcopy(dict(base)) if base is not None else {}
    raw = data.get("providers")
    providers_map: dict[str, object] = dict(raw) if isinstance(raw, Mapping) else {}
    for name, section in sections.items():
        key = next((k for k in providers_map if _canonical(k, normalize_provider) == name), name)
        existing = providers_map.get(key)
        merged = dict(existing) if isinstance(existing, Mapping) else {}
        merged.update(section)
        providers_map[key] = merged
    data["providers"] = providers_map
    return data


def _canonical(name: str, normalize: Callable[[str], str]) -> str:
    try:
        return normalize(name)
    except ValueError:
        return name


# --------------------------------------------------------------------------- use_cassette


@contextlib.contextmanager
def use_cassette(
    path: str | os.PathLike[str],
    *,
    record_mode: RecordMode = "none",
    block_network: bool | None = None,
    match_on: Sequence[str | Callable[[Any, Any], None]] = MATCH_ON,
    rerecord_hint: str | None = None,
    allow_playback_repeats: bool = False,
    secrets: Sequence[str] = (),
) -> Iterator[Cassette]:
    """Record or replay every HTTP request made inside the block (all four vendor clients).

    Args:
        path: the cassette file (YAML, vcrpy format version 1).
        record_mode: ``"none"`` (replay only, the default), ``"once"``,
            ``"new_episodes"`` or ``"all"`` (see :data:`RECORD_MODES`).
        block_network: refuse every TCP connect and DNS lookup inside the block
            (default: when replaying).
        match_on: matcher names (``method``, ``path``, ``query``, ``body``, or
            any vcrpy matcher name) or matcher functions ``(new, recorded) ->
            None`` that raise ``AssertionError`` on a difference.
        rerecord_hint: the command that re-records this cassette, for miss messages.
        allow_playback_repeats: let one recorded answer serve several requests.
        secrets: more values to replace with ``REDACTED`` before saving (the
            usual provider key variables are always covered).

    Raises:
        CassetteMiss: (inside the block) a request is not in the cassette and
            the record mode forbids recording it.
        NetworkBlocked: (inside the block) code tried to reach the network while replaying.
        ValueError: an unknown record mode.
    """
    if record_mode not in RECORD_MODES:
        raise ValueError(f"record_mode must be one of {', '.join(RECORD_MODES)}; got {record_mode!r}.")
    try:
        import vcr  # type: ignore[import-untyped]
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ImportError(
            "forge cassettes need vcrpy and PyYAML: pip install 'forge-llm[testing]'."
        ) from exc

    cassette_path = Path(path)
    hint = rerecord_hint or (
        f"record it again with use_cassette({str(cassette_path)!r}, record_mode='all'), "
        "or delete the file and record with record_mode='once'"
    )
    recorder = vcr.VCR(
        record_mode=record_mode,
        skip_patchers=_SKIP_PATCHERS,
        decode_compressed_response=True,
        before_record_request=_scrub_request,
        before_record_response=_scrub_response,
        before_save_interaction=_secret_scrubber(secrets),
        drop_unused_requests=record_mode == "all",
    )
    recorder.register_serializer("forge-yaml", YamlSerializer())
    names: list[str] = []
    for i, matcher in enumerate(match_on):
        if callable(matcher):
            name = f"forge_custom_{i}_{getattr(matcher, '__name__', 'matcher')}"
            recorder.register_matcher(name, matcher)
            names.append(name)
        elif matcher in _FORGE_MATCHERS:
            recorder.register_matcher(f"forge_{matcher}", _FORGE_MATCHERS[matcher])
            names.append(f"forge_{matcher}")
        else:
            names.append(matcher)
    block = (record_mode == "none") if block_network is None else block_network
    with contextlib.ExitStack() as stack:
        vcr_cassette = stack.enter_context(
            recorder.use_cassette(
                str(cassette_path),
                serializer="forge-yaml",
                match_on=tuple(names),
                allow_playback_repeats=allow_playback_repeats,
            )
        )
        cassette = Cassette(cassette_path, record_mode, vcr_cassette)
        _raise_on_miss(cassette, hint, secrets)
        stack.enter_context(_redacted_vcr_logs(secrets))
        job_ids = _recorded_job_ids(vcr_cassette) if record_mode != "all" else []
        if job_ids:
            stack.enter_context(_reused_job_ids(job_ids))
        if block:
            stack.enter_context(_blocked_network(f"cassette {cassette_path}", cassette.blocked))
        yield cassette
        if cassette._discard:
            # Saved, this file would be replayed next time and refuse the requests it lacks.
            vcr_cassette.dirty = False
        elif record_mode != "none" and not cassette_path.exists():
            vcr_cassette.dirty = True  # no request was made: that is a recording too (an empty one)


def _raise_on_miss(cassette: Cassette, hint: str, secrets: Sequence[str] = ()) -> None:
    """Make the vcrpy cassette raise :class:`CassetteMiss` (with forge's message) for an unmatched request."""
    inner: Any = cassette.vcr_cassette
    can_play = inner.can_play_response_for

    def can_play_or_miss(request: Any) -> bool:
        if can_play(request):
            return True
        if inner.write_protected and inner.filter_request(request) is not None:
            miss = _miss(cassette, inner, request, hint, secrets)
            cassette.misses.append(miss)
            raise miss
        return False

    inner.can_play_response_for = can_play_or_miss


def _miss(
    cassette: Cassette, inner: Any, request: Any, hint: str, secrets: Sequence[str] = ()
) -> CassetteMiss:
    # The file never holds a secret (before_save_interaction); neither may the message.
    values = _secret_values(secrets)
    shown = _scrub_request(copy.deepcopy(request))
    body = _replace_all(_excerpt(_body_bytes(shown)), values)
    lines = [
        "forge cassette: this request is not in the cassette, and it is replaying "
        f"(record mode {cassette.record_mode!r}), so nothing was sent.",
        f"  {shown.method} {shown.uri}",
    ]
    if body:
        lines.append(f"  body: {body}")
    lines.append(f"Cassette: {cassette.path} ({len(inner)} interactions, {inner.play_count} played)")
    similar = inner.find_requests_with_most_matches(request)
    if similar and not similar[0][2]:
        lines.append(
            "It matches a recorded interaction that was already played: the code now sends this "
            "request more often than when the cassette was recorded."
        )
    elif similar:
        recorded, _ok, failed = similar[0]
        lines.append(f"Closest recorded request: {recorded.method} {recorded.uri}")
        for name, message in failed[:3]:
            detail = " ".join(str(message or "").split())
            label = name.removeprefix("_match_")
            lines.append(f"  {label} differs" + (f": {detail[:400]}" if detail else ""))
    elif len(inner):
        lines.append("Nothing recorded in it is similar (different method and path).")
    lines.append(f"To re-record: {hint}")
    return CassetteMiss(
        _replace_all("\n".join(lines), values),
        method=str(shown.method),
        uri=_replace_all(str(shown.uri), values),
        body=body,
        cassette=cassette.path,
        rerecord=hint,
    )


def _recorded_job_ids(inner: Any) -> list[str]:
    """forge batch job ids in the recorded requests, in order of first appearance."""
    seen: dict[str, None] = {}
    for request in inner.requests:
        for match in _JOB_ID.finditer(_body_bytes(request)):
            seen.setdefault(match.group().decode("ascii"), None)
    return list(seen)


@contextlib.contextmanager
def _reused_job_ids(ids: Sequence[str]) -> Iterator[None]:
    """New batch jobs get the recorded ids, in order, then fresh ones.

    A job id is random, and the provider echoes it in every result (custom
    ids, metadata): a replayed batch must carry the recorded one for its
    recorded results to be found.
    """
    import forge.batch as batch_module

    pending = list(ids)
    fresh = batch_module.new_job_id

    def next_job_id() -> str:
        return pending.pop(0) if pending else fresh()

    with mock.patch.object(batch_module, "new_job_id", next_job_id):
        yield


def _excerpt(body: bytes) -> str:
    if not body:
        return ""
    text = body.decode("utf-8", "replace")
    return text if len(text) <= _BODY_EXCERPT else f"{text[:_BODY_EXCERPT]}... ({len(text)} characters)"


# --------------------------------------------------------------------------- network block


def block_network(
    reason: str = "the network is blocked", attempts: list[str] | None = None
) -> contextlib.AbstractContextManager[None]:
    """Refuse every TCP/UDP connect and DNS lookup inside the block (:class:`NetworkBlocked`).

    Unix-domain sockets (the event loop's self-pipe, a local Redis socket)
    still work. Each refused target is appended to ``attempts`` when given.
    :func:`use_cassette` uses this while replaying.
    """
    return _blocked_network(reason, attempts if attempts is not None else [])


@contextlib.contextmanager
def _blocked_network(reason: str, attempts: list[str]) -> Iterator[None]:
    inet = (socket.AF_INET, socket.AF_INET6)
    real_connect = socket.socket.connect
    real_connect_ex = socket.socket.connect_ex

    def refuse(target: object) -> NetworkBlocked:
        attempts.append(_target(target))
        return NetworkBlocked(
            f"forge cassette: network access is blocked while replaying ({reason}); something tried "
            f"to reach {_target(target)}. Provider calls are answered from the cassette before any "
            "socket opens, so this is other code going online: fake that call in the test."
        )

    def connect(self: socket.socket, address: Any) -> None:
        if self.family in inet:
            raise refuse(address)
        real_connect(self, address)

    def connect_ex(self: socket.socket, address: Any) -> int:
        if self.family in inet:
            raise refuse(address)
        return real_connect_ex(self, address)

    def getaddrinfo(host: object, port: object, *args: object, **kwargs: object) -> Any:
        raise refuse((host, port))

    with (
        mock.patch.object(socket.socket, "connect", connect),
        mock.patch.object(socket.socket, "connect_ex", connect_ex),
        mock.patch.object(socket, "getaddrinfo", getaddrinfo),
    ):
        yield


def _target(target: object) -> str:
    if isinstance(target, tuple) and len(target) >= 2:
        return f"{target[0]}:{target[1]}"
    return str(target)


# --------------------------------------------------------------------------- matching


def normalize_body(body: bytes | str | None, content_type: str | None = None) -> bytes:
    """A request body as compared in matching.

    JSON is parsed and dumped with sorted keys; a multipart body has its
    boundary replaced by a fixed token (it is random per request); anything
    else is compared byte for byte. forge's batch job ids (``fj_`` and 16 hex
    digits, random per job, carried in custom ids, metadata and file names)
    are replaced by a fixed token too.
    """
    if not body:
        return b""
    raw = body.encode("utf-8") if isinstance(body, str) else bytes(body)
    boundary = _multipart_boundary(content_type, raw)
    if boundary:
        normalized = raw.replace(boundary, b"forge-boundary")
    else:
        try:
            value = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            normalized = raw
        else:
            dumped = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
            normalized = dumped.encode("utf-8")
    return _JOB_ID.sub(b"fj_job", normalized)


_JOB_ID = re.compile(rb"\bfj_[0-9a-f]{16}\b")


_BOUNDARY_PARAM = re.compile(r'boundary="?([^";,\s]+)"?', re.IGNORECASE)
_BOUNDARY_LINE = re.compile(rb"--([!-~]{1,200})\r?\n")


def _multipart_boundary(content_type: str | None, raw: bytes) -> bytes | None:
    if content_type and content_type.lower().startswith("multipart/"):
        match = _BOUNDARY_PARAM.search(content_type)
        if match:
            return match.group(1).encode("utf-8")
    if raw.startswith(b"--"):
        line = _BOUNDARY_LINE.match(raw)
        if line and b"content-disposition" in raw[:1000].lower():
            return line.group(1)
    return None


def _body_bytes(request: Any) -> bytes:
    body = request.body
    if hasattr(body, "read"):
        body = body.read()
    elif body is not None and not isinstance(body, (bytes, bytearray, str)):
        body = b"".join(part if isinstance(part, bytes) else str(part).encode() for part in body)
    if body is None:
        return b""
    return body.encode("utf-8") if isinstance(body, str) else bytes(body)


def _header(request: Any, name: str) -> str | None:
    value = request.headers.get(name)
    if isinstance(value, (list, tuple)):
        value = value[0] if value else None
    return None if value is None else str(value)


def _match_method(new: Any, recorded: Any) -> None:
    if str(new.method).upper() != str(recorded.method).upper():
        raise AssertionError(f"{new.method} != {recorded.method} (recorded)")


def _match_path(new: Any, recorded: Any) -> None:
    if (new.path or "/") != (recorded.path or "/"):
        raise AssertionError(f"{new.path} != {recorded.path} (recorded)")


def _query(request: Any) -> list[tuple[str, str]]:
    pairs = parse_qsl(urlsplit(request.uri).query, keep_blank_values=True)
    return sorted((k, v) for k, v in pairs if k.lower() not in CREDENTIAL_QUERY_PARAMS)


def _match_query(new: Any, recorded: Any) -> None:
    if _query(new) != _query(recorded):
        raise AssertionError(f"{_query(new)} != {_query(recorded)} (recorded)")


def _match_body(new: Any, recorded: Any) -> None:
    a = normalize_body(_body_bytes(new), _header(new, "content-type"))
    b = normalize_body(_body_bytes(recorded), _header(recorded, "content-type"))
    if a != b:
        raise AssertionError(f"this request {_excerpt(a)} != recorded {_excerpt(b)}")


_FORGE_MATCHERS: dict[str, Callable[[Any, Any], None]] = {
    "method": _match_method,
    "path": _match_path,
    "query": _match_query,
    "body": _match_body,
}


# --------------------------------------------------------------------------- scrubbing


def _scrub_uri(uri: str) -> str:
    parts = urlsplit(uri)
    netloc = parts.netloc
    if (parts.hostname or "") in _LOOPBACK_HOSTS:
        placeholder = urlsplit(PLACEHOLDER_ORIGIN)
        parts = parts._replace(scheme=placeholder.scheme)
        netloc = placeholder.netloc
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        kept = [(k, v) for k, v in pairs if k.lower() not in CREDENTIAL_QUERY_PARAMS]
        if len(kept) != len(pairs):
            query = urlencode(kept)
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def _scrub_request(request: Any) -> Any:
    """Drop credential and volatile headers, credential query parameters; loopback -> placeholder."""
    request.uri = _scrub_uri(request.uri)
    headers = request.headers
    for name in list(headers.keys()):
        lowered = name.lower()
        if (
            lowered in CREDENTIAL_HEADERS
            or lowered in _VOLATILE_REQUEST_HEADERS
            or lowered.startswith(_VOLATILE_PREFIXES)
        ):
            del headers[name]
    return request


_LOOPBACK_ORIGIN = re.compile(rb"http://(?:127\.0\.0\.1|localhost|\[::1\]):\d+")


def _scrub_response(response: dict[str, Any]) -> dict[str, Any]:
    """Drop cookie and organization headers; loopback origins in the body -> the placeholder.

    A body can carry the server's own URL (Anthropic's batch ``results_url``);
    the emulator's random port would otherwise churn every re-recording.
    """
    headers = response.get("headers") or {}
    response["headers"] = {k: v for k, v in headers.items() if k.lower() not in RESPONSE_SECRET_HEADERS}
    body = response.get("body")
    if isinstance(body, dict):
        content = body.get("string")
        if isinstance(content, (bytes, bytearray)) and _LOOPBACK_ORIGIN.search(content):
            body["string"] = _LOOPBACK_ORIGIN.sub(PLACEHOLDER_ORIGIN.encode(), bytes(content))
    return response


def _secret_scrubber(extra: Sequence[str]) -> Callable[[Any, dict[str, Any]], tuple[Any, dict[str, Any]]]:
    """A ``before_save_interaction`` hook replacing known secret values with ``REDACTED``."""

    def scrub(request: Any, response: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        secrets = _secret_values(extra)
        if not secrets:
            return request, response
        data = _replace_all(request._to_dict(), secrets)
        return type(request)._from_dict(data), _replace_all(response, secrets)

    return scrub


def _secret_values(extra: Sequence[str]) -> list[str]:
    """Values never to print or save: the usual key variables, ``extra``, and every key forge was given."""
    from forge._secrets import registered_secrets

    values = [os.environ.get(var, "") for var in _SECRET_ENV_VARS]
    values.extend(extra)
    values.extend(registered_secrets())
    return sorted({v for v in values if len(v) >= _MIN_SECRET_LENGTH}, key=len, reverse=True)


class _RedactingFilter(logging.Filter):
    """Rewrites a record's message without the secrets (vcrpy logs request bodies at DEBUG)."""

    def __init__(self, secrets: Sequence[str]) -> None:
        super().__init__()
        self.secrets = secrets

    def filter(self, record: logging.LogRecord) -> bool:
        values = _secret_values(self.secrets)
        if values:
            message = record.getMessage()
            cleaned = _replace_all(message, values)
            if cleaned != message:
                record.msg, record.args = cleaned, None
        return True


_VCR_LOGGERS = ("vcr", "vcr.cassette", "vcr.matchers", "vcr.patch", "vcr.request", "vcr.stubs",
                "vcr.stubs.httpx_stubs", "vcr.stubs.aiohttp_stubs")


@contextlib.contextmanager
def _redacted_vcr_logs(secrets: Sequence[str]) -> Iterator[None]:
    """A filter on vcrpy's loggers (a logger's filters see only its own records) for the block."""
    filt = _RedactingFilter(secrets)
    loggers = [logging.getLogger(name) for name in _VCR_LOGGERS]
    for lg in loggers:
        lg.addFilter(filt)
    try:
        yield
    finally:
        for lg in loggers:
            lg.removeFilter(filt)


def _replace_all(obj: Any, secrets: Sequence[str]) -> Any:
    if isinstance(obj, str):
        for secret in secrets:
            obj = obj.replace(secret, REDACTED)
        return obj
    if isinstance(obj, (bytes, bytearray)):
        out = bytes(obj)
        for secret in secrets:
            out = out.replace(secret.encode("utf-8"), REDACTED.encode())
        return out
    if isinstance(obj, dict):
        return {_replace_all(k, secrets): _replace_all(v, secrets) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_replace_all(item, secrets) for item in obj)
    return obj
