"""Real OpenAI, Anthropic, Gemini and Ollama recordings replayed through forge's public API.

The recordings live beside the repository in ``../shared/cassettes-real`` and
are read from there (never copied in). Every file is either

- **verified**: each recorded call forge covers is replayed with vcrpy (network
  blocked) through ``Registry.invoke`` / ``Registry.stream``, and the text,
  usage (cached tokens included), finish reason, tool calls or error class
  forge reports must equal what the recorded response says, parsed here from
  the response body itself (so new recordings of the same formats are checked
  without per-file expectations); or
- **a listed gap**: it holds calls to an API forge does not cover yet, and
  :data:`EXPECTED_GAPS` says which and why. Its covered calls, if any, are
  still verified, and so is every line of a downloaded batch result file
  (through forge's batch result parsers); the gap shows up as an xfail with
  its reason.

A file that is neither (a new recording using an uncovered API) fails
:func:`test_every_recording_is_verified_or_a_listed_gap` until it is listed.
"""

from __future__ import annotations

import gzip
import json
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest

import forge
from forge.errors import (
    AuthenticationError,
    BadRequestError,
    ContextLengthError,
    NotFoundError,
    OverloadedError,
    ProviderError,
    ProviderTimeout,
    RateLimitError,
    ServerError,
)
from forge.testing._cassette_files import load_interactions
from forge.testing.cassettes import replay_config, use_cassette
from tests._services import REAL_RECORDINGS, require_real_recordings

# Recordings name models that have since been retired; the client's deprecation notice is noise here.
pytestmark = pytest.mark.filterwarnings("ignore:The model .* is deprecated:DeprecationWarning")

REAL = REAL_RECORDINGS

_RESPONSES_OTHER = "OpenAI Responses API beyond creating a response (retrieve, cancel, input items): not covered"
_OTHER_CLIENT = (
    "recorded by another client: batch_invoke cannot replay it (the custom ids are not forge's "
    "job-marked ones, and forge reads the batch once more after the last recorded poll)"
)
_OPENAI_BATCH = f"OpenAI Files + Batch API, {_OTHER_CLIENT}"
_ANTHROPIC_BATCH = f"Anthropic Message Batches API, {_OTHER_CLIENT}"
_GEMINI_BATCH = f"Gemini Batch API, {_OTHER_CLIENT}"
_GEMINI_CACHE = "Gemini cachedContents create/delete: explicit caches are not managed by forge yet"
_OLLAMA_GENERATE = "Ollama /api/generate (completion API): forge uses /api/chat"
_NOT_A_CASSETTE = "not a vcrpy cassette (a data file)"
_NOT_PROVIDER = "not a provider API call (e.g. a pricing table download)"

EXPECTED_GAPS: dict[str, str] = {
    "openai/batch-full-flow-gzip.yaml": _OPENAI_BATCH,
    "openai/batch-submit.yaml": _OPENAI_BATCH,
    "anthropic/batch-create-poll-results-gzip.yaml": _ANTHROPIC_BATCH,
    "gemini/batch-submit.yaml": _GEMINI_BATCH,
    "gemini/cached-content-create-use-delete.yaml": _GEMINI_CACHE,
    "ollama/generate-stream-ndjson.yaml": _OLLAMA_GENERATE,
}
"""Recordings forge cannot fully replay yet, and why (file relative to cassettes-real)."""

_GEMINI_MODEL_CALL = re.compile(r"^/(v1[a-z0-9]*)/models/([^/:]+):([A-Za-z]+)$")


# --------------------------------------------------------------------------- reading recordings


@dataclass(frozen=True)
class Call:
    """One recorded call forge covers: how to make it through forge, and what came back."""

    index: int
    provider: str
    model: str
    stream: bool
    status: int
    body: bytes
    api_version: str | None = None
    options: Mapping[str, object] = field(default_factory=dict)

    def text(self) -> str:
        return self.body.decode("utf-8")

    def json(self) -> Any:
        return json.loads(self.body)


def _files() -> list[str]:
    if not REAL.is_dir():
        return []
    return sorted(
        str(p.relative_to(REAL))
        for p in REAL.rglob("*")
        if p.is_file() and p.name != "INDEX.md" and not p.name.startswith(".")
    )


def _decoded(response: Mapping[str, Any]) -> bytes:
    raw = response["body"]["string"]
    body = raw if isinstance(raw, bytes) else str(raw).encode("utf-8")
    return gzip.decompress(body) if body[:2] == b"\x1f\x8b" else body


def _request_json(request: Mapping[str, Any]) -> Any:
    body = request.get("body")
    if not body:
        return None
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None


def classify(index: int, item: Mapping[str, Any]) -> Call | str:
    """The forge call that replays a recorded interaction, or why forge cannot (a gap reason)."""
    request, response = item["request"], item["response"]
    url = urlsplit(request["uri"])
    path = url.path
    method = str(request["method"]).upper()
    body = _request_json(request)
    sent: Mapping[str, Any] = body if isinstance(body, dict) else {}
    status = int(response["status"]["code"])

    def call(provider: str, model: object, stream: bool, **extra: Any) -> Call:
        return Call(index, provider, str(model), stream, status, _decoded(response), **extra)

    if method == "POST" and path.endswith("/chat/completions"):
        return call("openai", sent.get("model", "gpt-4o-mini"), bool(sent.get("stream")))
    if method == "POST" and path == "/v1/responses":
        stream = bool(sent.get("stream"))
        return call("openai", sent.get("model", "gpt-4o-mini"), stream, options={"api": "responses"})
    if path.startswith("/v1/responses"):
        return _RESPONSES_OTHER
    if path.startswith("/v1/files") or path.startswith("/v1/batches"):
        return _OPENAI_BATCH
    if path.startswith("/v1/messages/batches"):
        return _ANTHROPIC_BATCH
    if method == "POST" and path == "/v1/messages":
        return call("anthropic", sent.get("model", "claude-sonnet-4-5"), bool(sent.get("stream")))
    if "/cachedContents" in path:
        return _GEMINI_CACHE
    if "/batches" in path or path.endswith(":batchGenerateContent"):
        return _GEMINI_BATCH
    match = _GEMINI_MODEL_CALL.match(path)
    if method == "POST" and match:
        version, model, verb = match.groups()
        if verb == "generateContent":
            return call("google", model, False, api_version=version)
        if verb == "streamGenerateContent":
            # Without alt=sse the body is one streamed JSON array; forge asks for SSE but
            # decodes an array answer too (forge/providers/google.py, _JsonArrayDecoder).
            return call("google", model, True, api_version=version)
        return f"Gemini :{verb}: not covered"
    if method == "POST" and path == "/api/chat":
        return call("ollama", sent.get("model", "llama3"), bool(sent.get("stream", True)))  # Ollama streams by default
    if path == "/api/generate":
        return _OLLAMA_GENERATE
    host = url.hostname or ""
    if not any(h in host for h in ("openai", "anthropic", "googleapis", "127.0.0.1", "localhost")):
        return _NOT_PROVIDER
    return f"unrecognised endpoint {method} {path}"


@dataclass
class Recording:
    """A file's covered calls, its gap reasons, and any downloaded batch result files."""

    name: str
    calls: list[Call]
    gaps: list[str]
    batch_results: list[tuple[str, bytes]] = field(default_factory=list)  # (provider, JSONL body)


_OPENAI_RESULTS = re.compile(r"^/v1/files/[^/]+/content$")
_ANTHROPIC_RESULTS = re.compile(r"^/v1/messages/batches/[^/]+/results$")


def _batch_results(item: Mapping[str, Any]) -> tuple[str, bytes] | None:
    """A downloaded batch result file: ``(provider, body)``, else None."""
    if str(item["request"]["method"]).upper() != "GET" or int(item["response"]["status"]["code"]) != 200:
        return None
    path = urlsplit(item["request"]["uri"]).path
    for provider, pattern in (("openai", _OPENAI_RESULTS), ("anthropic", _ANTHROPIC_RESULTS)):
        if pattern.match(path):
            return provider, _decoded(item["response"])
    return None


def read_recording(name: str) -> Recording:
    if not name.endswith((".yaml", ".yml")):
        return Recording(name, [], [_NOT_A_CASSETTE])
    try:
        interactions = load_interactions(REAL / name)
    except Exception as exc:  # reported by the classification test, not a collection error
        return Recording(name, [], [f"unreadable as a vcrpy cassette: {type(exc).__name__}: {exc}"])
    rec = Recording(name, [], [])
    for index, item in enumerate(interactions):
        result = classify(index, item)
        if isinstance(result, Call):
            rec.calls.append(result)
        else:
            rec.gaps.append(result)
            downloaded = _batch_results(item)
            if downloaded is not None:
                rec.batch_results.append(downloaded)
    return rec


RECORDINGS = {name: read_recording(name) for name in _files()}


# --------------------------------------------------------------------------- what the recording says


@dataclass
class Expected:
    """What forge must report for a recorded call."""

    text: str = ""
    finish_reason: str | None = None
    usage: forge.Usage = field(default_factory=forge.Usage)
    tool_calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    error: type[ProviderError] | None = None


def _args(raw: object) -> dict[str, Any]:
    if isinstance(raw, dict):
        return raw
    try:
        value = json.loads(str(raw)) if raw else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _lines(text: str) -> Iterator[str]:
    for line in text.splitlines():
        if line.strip():
            yield line


def _sse_data(text: str) -> Iterator[dict[str, Any]]:
    for line in _lines(text):
        if line.startswith("data:"):
            payload = line[5:].strip()
            if payload and payload != "[DONE]":
                yield json.loads(payload)


_OPENAI_FINISH = {"stop": "stop", "length": "length", "tool_calls": "tool_calls",
                  "function_call": "tool_calls", "content_filter": "content_filter"}
_ANTHROPIC_FINISH = {"end_turn": "stop", "stop_sequence": "stop", "pause_turn": "stop", "max_tokens": "length",
                     "model_context_window_exceeded": "length", "tool_use": "tool_calls", "refusal": "content_filter"}
_GEMINI_FILTER = {"SAFETY", "RECITATION", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII", "IMAGE_SAFETY"}


def _openai_usage(u: Mapping[str, Any] | None) -> forge.Usage:
    if not u:
        return forge.Usage()
    prompt = u.get("prompt_tokens_details") or {}
    completion = u.get("completion_tokens_details") or {}
    return forge.Usage(
        input_tokens=u.get("prompt_tokens") or 0,
        output_tokens=u.get("completion_tokens") or 0,
        cached_input_tokens=prompt.get("cached_tokens") or 0,
        cache_write_tokens=prompt.get("cache_write_tokens") or 0,
        reasoning_tokens=completion.get("reasoning_tokens") or 0,
    )


def expected_openai(call: Call) -> Expected:
    if not call.stream:
        data = call.json()
        choice = (data.get("choices") or [{}])[0]
        message = choice.get("message") or {}
        finish = _OPENAI_FINISH.get(choice.get("finish_reason") or "", "stop") if choice.get("finish_reason") else None
        if message.get("refusal") and not message.get("content"):
            finish = "content_filter"
        calls = [(tc["function"]["name"], _args(tc["function"]["arguments"])) for tc in message.get("tool_calls") or ()]
        return Expected(message.get("content") or message.get("refusal") or "", finish,
                        _openai_usage(data.get("usage")), calls)
    text, finish, usage, tools, refused = [], None, forge.Usage(), {}, False
    for chunk in _sse_data(call.text()):
        for choice in chunk.get("choices") or ():
            if choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or {}
            text.append(delta.get("content") or "")
            if delta.get("refusal"):
                refused = True
                text.append(delta["refusal"])
            for tc in delta.get("tool_calls") or ():
                entry = tools.setdefault(tc.get("index", 0), ["", []])
                function = tc.get("function") or {}
                entry[0] = entry[0] or function.get("name") or ""
                entry[1].append(function.get("arguments") or "")
            if choice.get("finish_reason"):
                finish = _OPENAI_FINISH.get(choice["finish_reason"], "stop")
        if chunk.get("usage"):
            usage = _openai_usage(chunk["usage"])
    if refused and not any(t for t in text if t):
        finish = "content_filter"
    calls = [(name, _args("".join(parts))) for _, (name, parts) in sorted(tools.items())]
    return Expected("".join(text), finish or "stop", usage, calls)


def _responses_outcome(data: Mapping[str, Any]) -> Expected:
    """A Responses API ``response`` object: output items, status and usage."""
    texts, refusals, calls = [], [], []
    for item in data.get("output") or ():
        if item.get("type") == "message":
            for part in item.get("content") or ():
                if part.get("type") == "output_text":
                    texts.append(part.get("text") or "")
                elif part.get("type") == "refusal":
                    refusals.append(part.get("refusal") or "")
        elif item.get("type") == "function_call":
            calls.append((item.get("name") or "", _args(item.get("arguments"))))
    if data.get("status") == "incomplete":
        reason = (data.get("incomplete_details") or {}).get("reason")
        finish = "content_filter" if reason == "content_filter" else "length"
    elif refusals and not texts:
        finish = "content_filter"
    else:
        finish = "tool_calls" if calls else "stop"
    u = data.get("usage") or {}
    usage = forge.Usage(
        input_tokens=u.get("input_tokens") or 0,
        output_tokens=u.get("output_tokens") or 0,
        cached_input_tokens=(u.get("input_tokens_details") or {}).get("cached_tokens") or 0,
        cache_write_tokens=(u.get("input_tokens_details") or {}).get("cache_write_tokens") or 0,
        reasoning_tokens=(u.get("output_tokens_details") or {}).get("reasoning_tokens") or 0,
    )
    return Expected("".join(texts) or "".join(refusals), finish, usage, calls)


def expected_openai_responses(call: Call) -> Expected:
    if not call.stream:
        return _responses_outcome(call.json())
    deltas, final = [], None
    for event in _sse_data(call.text()):
        if event.get("type") == "response.output_text.delta":
            deltas.append(event.get("delta") or "")
        elif event.get("type") in ("response.completed", "response.incomplete"):
            final = event.get("response") or {}
    assert final is not None, f"call {call.index}: the recorded stream has no response.completed"
    outcome = _responses_outcome(final)
    outcome.text = "".join(deltas)
    return outcome


def _anthropic_usage(start: Mapping[str, Any], latest: Mapping[str, Any]) -> forge.Usage:
    def pick(name: str) -> int:
        value = latest.get(name)
        return int((start.get(name) if value is None else value) or 0)

    written, read = pick("cache_creation_input_tokens"), pick("cache_read_input_tokens")
    return forge.Usage(pick("input_tokens") + written + read, pick("output_tokens"), read, written)


def expected_anthropic(call: Call) -> Expected:
    if not call.stream:
        data = call.json()
        blocks = data.get("content") or []
        usage = data.get("usage") or {}
        return Expected(
            "".join(b.get("text") or "" for b in blocks if b.get("type") == "text"),
            _ANTHROPIC_FINISH.get(data["stop_reason"], "stop") if data.get("stop_reason") else None,
            _anthropic_usage(usage, usage) if usage else forge.Usage(),
            [(b["name"], b.get("input") or {}) for b in blocks if b.get("type") == "tool_use"],
        )
    text, start, latest, finish, tools = [], {}, {}, None, {}
    for event in _sse_data(call.text()):
        kind = event.get("type")
        if kind == "message_start":
            start = latest = event["message"].get("usage") or {}
        elif kind == "content_block_start":
            block = event.get("content_block") or {}
            if block.get("type") == "text":
                text.append(block.get("text") or "")
            elif block.get("type") == "tool_use":
                tools[event["index"]] = [block["name"], [], block.get("input") or {}]
        elif kind == "content_block_delta":
            delta = event["delta"]
            if delta.get("type") == "text_delta":
                text.append(delta["text"])
            elif delta.get("type") == "input_json_delta" and event["index"] in tools:
                tools[event["index"]][1].append(delta.get("partial_json") or "")
        elif kind == "message_delta":
            latest = event.get("usage") or latest
            reason = (event.get("delta") or {}).get("stop_reason")
            finish = _ANTHROPIC_FINISH.get(reason, "stop") if reason else finish
    calls = [(name, _args("".join(parts)) if parts else start_input)
             for _, (name, parts, start_input) in sorted(tools.items())]
    return Expected("".join(text), finish or "stop", _anthropic_usage(start, latest), calls)


def expected_google(call: Call) -> Expected:
    if not call.stream:
        chunks = [call.json()]
    elif call.text().lstrip().startswith("["):  # streamed without alt=sse: one JSON array
        chunks = call.json()
    else:
        chunks = list(_sse_data(call.text()))
    text, finish, meta, calls = [], None, None, []
    for chunk in chunks:
        for candidate in (chunk.get("candidates") or [])[:1]:
            for part in (candidate.get("content") or {}).get("parts") or ():
                if "text" in part and not part.get("thought"):
                    text.append(part["text"])
                elif "functionCall" in part:
                    calls.append((part["functionCall"]["name"], part["functionCall"].get("args") or {}))
            finish = candidate.get("finishReason") or finish
        meta = chunk.get("usageMetadata") or meta
    usage = forge.Usage()
    if meta:
        thoughts = meta.get("thoughtsTokenCount", 0)
        usage = forge.Usage(
            input_tokens=meta.get("promptTokenCount", 0) + meta.get("toolUsePromptTokenCount", 0),
            output_tokens=meta.get("candidatesTokenCount", 0) + thoughts,
            cached_input_tokens=meta.get("cachedContentTokenCount", 0),
            reasoning_tokens=thoughts,
        )
    if finish == "STOP":
        reason: str | None = "tool_calls" if calls else "stop"
    elif finish in ("MAX_TOKENS", "CONTINUATION"):
        reason = "length"
    elif finish in _GEMINI_FILTER:
        reason = "content_filter"
    else:
        reason = None if finish is None else "error"
    return Expected("".join(text), reason, usage, calls)


def expected_ollama(call: Call) -> Expected:
    lines = [json.loads(line) for line in _lines(call.text())]
    text, calls, done = [], [], {}
    for line in lines:
        message = line.get("message") or {}
        text.append(message.get("content") or "")
        calls.extend((tc["function"]["name"], _args(tc["function"].get("arguments"))) for tc in message.get("tool_calls") or ())
        if line.get("done"):
            done = line
    usage = forge.Usage(done.get("prompt_eval_count") or 0, done.get("eval_count") or 0)
    finish = "length" if done.get("done_reason") == "length" else ("tool_calls" if calls else "stop")
    return Expected("".join(text), finish, usage, calls)


_CONTEXT = re.compile(r"context[_ ]length|context window|prompt is too long|too many tokens|exceeds the maximum",
                      re.IGNORECASE)


def expected_error(call: Call) -> type[ProviderError]:
    """The forge error class for a recorded error answer, from its status and body."""
    try:
        body = call.json()
    except ValueError:
        body = {}
    error = body.get("error") if isinstance(body, dict) else None
    error = error if isinstance(error, dict) else {"message": str(error or "")}
    reasons = {d.get("reason") for d in error.get("details") or () if isinstance(d, dict)}
    if call.provider == "google" and reasons & {"API_KEY_INVALID", "API_KEY_EXPIRED", "API_KEY_SERVICE_BLOCKED"}:
        return AuthenticationError
    status = call.status
    if status == 429:
        return RateLimitError
    if status in (503, 529):
        return OverloadedError
    if status in (401, 403):
        return AuthenticationError
    if status == 404:
        return NotFoundError
    if status == 408:
        return ProviderTimeout
    if status >= 500:
        return ServerError
    if status == 413 or _CONTEXT.search(str(error.get("message") or "")):
        return ContextLengthError
    return BadRequestError


_EXPECTED: dict[str, Callable[[Call], Expected]] = {
    "openai": expected_openai,
    "anthropic": expected_anthropic,
    "google": expected_google,
    "ollama": expected_ollama,
}


def expected(call: Call) -> Expected:
    if call.status >= 400:
        return Expected(error=expected_error(call))
    if call.options.get("api") == "responses":
        return expected_openai_responses(call)
    return _EXPECTED[call.provider](call)


# --------------------------------------------------------------------------- replaying through forge


def _same_alt(new: Any, recorded: Any) -> None:
    """Gemini's ``alt`` decides the body format. forge always asks for ``alt=sse``; a
    recording made without it (a streamed JSON array) may answer, since forge decodes
    both, but a recorded SSE body never answers a request for something else."""
    alt_new = dict(parse_qsl(urlsplit(new.uri).query)).get("alt")
    alt_recorded = dict(parse_qsl(urlsplit(recorded.uri).query)).get("alt")
    if alt_recorded is not None and alt_new != alt_recorded:
        raise AssertionError(f"alt={alt_new} != alt={alt_recorded}")


def _config(call: Call) -> forge.ForgeConfig | dict[str, object]:
    section: dict[str, object] = {"retry": {"max_attempts": 1}, **call.options}  # one answer: no retry
    if call.api_version:
        section["api_version"] = call.api_version
    return replay_config({"providers": {call.provider: section}})


async def replay(call: Call) -> forge.Response:
    """Make the recorded call through forge's public API (request content is not matched)."""
    model = f"{call.provider}:{call.model}"
    async with forge.Registry(config=_config(call)) as registry:
        if not call.stream:
            return await registry.invoke(model, "Replay this recording.")
        async with registry.stream(model, "Replay this recording.") as stream:
            return await stream.collect()


def test_every_recording_is_verified_or_a_listed_gap() -> None:
    require_real_recordings()
    assert RECORDINGS, f"no recordings under {REAL}"
    problems = []
    for name, rec in RECORDINGS.items():
        listed = EXPECTED_GAPS.get(name)
        if rec.gaps and listed is None:
            reasons = "; ".join(sorted(set(rec.gaps)))
            problems.append(f"{name}: uses what forge does not cover ({reasons}); cover it, or list it in "
                            f"EXPECTED_GAPS as {name!r}: <reason>")
        elif listed is not None and not rec.gaps:
            problems.append(f"{name}: listed in EXPECTED_GAPS but forge now replays all of it; remove the entry")
        elif listed is not None and listed not in rec.gaps:
            problems.append(f"{name}: EXPECTED_GAPS says {listed!r}, the recording shows {sorted(set(rec.gaps))}")
        if not rec.calls and not rec.gaps:
            problems.append(f"{name}: holds no interaction at all")
    stale = sorted(set(EXPECTED_GAPS) - set(RECORDINGS))
    problems.extend(f"{name}: listed in EXPECTED_GAPS but not in {REAL}" for name in stale)
    assert not problems, "\n".join(problems)


VERIFIED = [pytest.param(name, id=name) for name, rec in RECORDINGS.items() if rec.calls]
GAPS = [pytest.param(name, id=name) for name in RECORDINGS if name in EXPECTED_GAPS]


@pytest.mark.parametrize("name", VERIFIED)
async def test_recording_replays_through_forge(name: str) -> None:
    rec = RECORDINGS[name]
    results: list[tuple[Call, forge.Response | ProviderError]] = []
    with use_cassette(REAL / name, match_on=("method", "path", _same_alt)) as cassette:
        for call in rec.calls:
            try:
                results.append((call, await replay(call)))
            except ProviderError as exc:
                results.append((call, exc))
        assert cassette.play_count == len(rec.calls)
    for call, result in results:
        want = expected(call)
        where = f"{name}[{call.index}]"
        if want.error is not None:
            assert isinstance(result, ProviderError), f"{where}: expected {want.error.__name__}, got {result!r}"
            assert type(result) is want.error, f"{where}: {type(result).__name__} != {want.error.__name__}"
            assert result.status == call.status, where
            continue
        assert isinstance(result, forge.Response), f"{where}: {result!r}"
        assert result.text == want.text, where
        assert result.usage == want.usage, where
        assert result.finish_reason == want.finish_reason, where
        assert [(c.name, dict(c.arguments)) for c in result.tool_calls] == want.tool_calls, where


BATCH_RESULTS = [pytest.param(name, id=name) for name, rec in RECORDINGS.items() if rec.batch_results]


@pytest.mark.parametrize("name", BATCH_RESULTS)
def test_recorded_batch_results_parse_through_forge(name: str) -> None:
    """Each line of a recorded batch result file: forge's parser gives the text, usage and finish it holds."""
    from forge.providers.anthropic_batch import parse_result
    from forge.providers.openai_batch import parse_result_line

    checked = 0
    for provider, body in RECORDINGS[name].batch_results:
        for number, raw in enumerate(_lines(body.decode("utf-8"))):
            line = json.loads(raw)
            where = f"{name}: result line {number}"
            if provider == "openai":
                custom_id, result = parse_result_line(line, "")
                reply = line.get("response") or {}
                status, payload = int(reply.get("status_code") or 0), reply.get("body")
            else:
                custom_id, result = parse_result(line, "")
                outcome = line.get("result") or {}
                ok = outcome.get("type") == "succeeded"
                status, payload = (200 if ok else 0), outcome.get("message")
            assert custom_id == str(line["custom_id"]), where
            if status != 200:
                assert isinstance(result, forge.ForgeError), where
                continue
            call = Call(number, provider, "", False, 200, json.dumps(payload).encode())
            want = expected(call)
            assert isinstance(result, forge.Response), f"{where}: {result!r}"
            assert (result.text, result.usage, result.finish_reason) == (want.text, want.usage, want.finish_reason), where
            checked += 1
    assert checked, f"{name}: no result line was checked"


@pytest.mark.parametrize("name", GAPS)
def test_expected_gap(name: str) -> None:
    """A listed gap is real (the recording holds calls forge cannot make) and stated, not skipped."""
    rec = RECORDINGS[name]
    assert EXPECTED_GAPS[name] in rec.gaps
    verified = f"; its {len(rec.calls)} covered call(s) are verified" if rec.calls else ""
    if rec.batch_results:
        verified += "; its batch result lines are verified through forge's result parser"
    pytest.xfail(f"expected gap: {EXPECTED_GAPS[name]}{verified}")
