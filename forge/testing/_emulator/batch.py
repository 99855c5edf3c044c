"""Provider batch jobs, shared by the vendor dialects: stored files, a processing delay, per-item replies.

A job is created with its items and finishes ``delay`` seconds later on the
emulator's (injectable) clock; nothing runs in the background. The first
look at a job after that moment processes every item at once, through the
same reply planning as a live chat call, so ``Reply`` rules shape batch
answers too and ``Fault`` rules fail single items.

Each item is matched against the rules as a request to the path
``batch:<custom_id>`` (``batch:<n>`` for Gemini items without a key) with the
item's model and body; ``emu.script(Fault.server_error(), path="batch:req-3")``
fails one item, ``path="batch:*"`` every item. Rules without a path apply to
batch items as well. Items are not rate limited and not in the request log.

A cancelled job ends at the next look: items not yet processed end as
cancelled. The dialects turn jobs into each vendor's JSON.
"""

from __future__ import annotations

import email.parser
import email.policy
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from .base import ApiError, ErrorSpec, JsonBody, Route, Usage, invalid
from .engine import ReplyDefaults, _limited, fault_spec, plan_chunks
from .http import HttpRequest
from .limits import unlimited
from .script import RecordedRequest, Reply, Rule, resolve
from .text import tokens_for_chars

if TYPE_CHECKING:
    from .base import Dialect

JobState = Literal["running", "completed", "cancelled"]


@dataclass(slots=True)
class BatchItem:
    """One request of a job: its id, the chat path it stands for, its JSON body."""

    custom_id: str
    path: str
    body: JsonBody


ItemOutcome = Literal["succeeded", "errored", "cancelled"]


@dataclass(slots=True)
class ItemResult:
    """What one item produced: a vendor completion body (status 200), the vendor's error body, or nothing."""

    custom_id: str
    outcome: ItemOutcome
    status: int = 200
    body: JsonBody = field(default_factory=dict)
    usage: Usage | None = None
    error: ErrorSpec | None = None


@dataclass(slots=True)
class BatchJob:
    """A vendor batch as the emulator keeps it."""

    id: str
    provider: str
    model: str | None
    items: list[BatchItem]
    created: float  # emulator clock
    created_wall: float  # unix time, for the vendors' timestamps
    info: dict[str, Any] = field(default_factory=dict)  # vendor fields (endpoint, input file, metadata...)
    cancel_requested: float | None = None
    ended: float | None = None
    ended_wall: float | None = None
    state: JobState = "running"
    results: list[ItemResult] | None = None


@dataclass(slots=True)
class StoredFile:
    """An uploaded (or generated) file."""

    id: str
    filename: str
    purpose: str
    data: bytes
    created_wall: float


class BatchQueue:
    """Every batch job and file of one emulator."""

    def __init__(
        self,
        *,
        clock: Callable[[], float],
        rules: list[Rule],
        defaults: ReplyDefaults,
        models: frozenset[str] | None = None,
        routes: list[tuple[Route, Dialect]] | None = None,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self._clock = clock
        self._routes = routes or []
        self._wall = wall
        self._rules = rules
        self._defaults = defaults
        self._models = models
        self.delay = 0.0
        self.jobs: dict[str, BatchJob] = {}
        self.files: dict[str, StoredFile] = {}

    def reset(self) -> None:
        self.jobs.clear()
        self.files.clear()
        self.delay = 0.0

    # -- jobs --------------------------------------------------------------------

    def create(
        self, job_id: str, provider: str, model: str | None, items: list[BatchItem], **info: Any
    ) -> BatchJob:
        job = BatchJob(job_id, provider, model, items, self._clock(), self._wall(), dict(info))
        self.jobs[job_id] = job
        return job

    def find(self, provider: str, job_id: str) -> BatchJob:
        job = self.jobs.get(job_id)
        if job is None or job.provider != provider:
            raise ApiError(ErrorSpec("not_found", 404, f"No batch found with id '{job_id}'."))
        return job

    def listed(self, provider: str) -> list[BatchJob]:
        """The provider's jobs, newest first (every vendor lists that way)."""
        return [j for j in reversed(self.jobs.values()) if j.provider == provider]

    def advance(self, job: BatchJob, dialect: Dialect) -> BatchJob:
        """Bring ``job`` up to the clock: process it when its time has come, end it if cancelled."""
        if job.state != "running":
            return job
        now = self._clock()
        if job.cancel_requested is not None:
            job.results = [ItemResult(item.custom_id, "cancelled", 0) for item in job.items]
            job.state = "cancelled"
        elif now - job.created >= self.delay:
            job.results = [self.run_item(dialect, item) for item in job.items]
            job.state = "completed"
        else:
            return job
        job.ended = now
        job.ended_wall = self._wall()
        return job

    def cancel(self, job: BatchJob, dialect: Dialect) -> BatchJob:
        self.advance(job, dialect)
        if job.state == "running" and job.cancel_requested is None:
            job.cancel_requested = self._clock()
        return job

    def remaining(self, job: BatchJob) -> float:
        """Seconds until the job would be processed (0 once it has ended)."""
        if job.state != "running":
            return 0.0
        return max(0.0, self.delay - (self._clock() - job.created))

    # -- items -------------------------------------------------------------------

    def run_item(self, dialect: Dialect, item: BatchItem) -> ItemResult:
        """Answer one item as the chat endpoint would, with the scripted rules applied."""
        model = item.body.get("model")
        rec = RecordedRequest(
            dialect.name, "POST", f"batch:{item.custom_id}", "", {}, item.body, b"", self._clock(),
            model if isinstance(model, str) else None, False,
        )
        plan = resolve(self._rules, rec, generation=True)
        try:
            if plan.error is not None:
                raise ApiError(fault_spec(plan.error, dialect.name, unlimited(0)))
            if plan.interrupt is not None and plan.interrupt.kind == "stream_error":
                raise ApiError(fault_spec(plan.interrupt, dialect.name, unlimited(0)))
            request, match = self._chat_request(dialect, item)
            call = dialect.parse_chat(request, match, item.body)
            if self._models is not None and call.model not in self._models:
                raise ApiError(ErrorSpec("not_found", 404))
        except ApiError as exc:
            rendered = dialect.error(exc.spec, rec.model, None)
            return ItemResult(item.custom_id, "errored", rendered.status, json.loads(rendered.body),
                              error=exc.spec)
        reply = plan.reply or Reply()
        chunks, _ = plan_chunks(dialect.name, call, reply, self._defaults)
        texts, out, cut = _limited(chunks, call.max_tokens)
        input_tokens = reply.input_tokens if reply.input_tokens is not None else tokens_for_chars(
            call.input_chars)
        usage = Usage(input_tokens, out if reply.output_tokens is None else reply.output_tokens,
                      reply.cached_tokens, reply.cache_write_tokens, reply.reasoning_tokens)
        finish = dialect.vendor_finish("length" if cut else (reply.finish_reason or "stop"))
        body = json.loads(dialect.completion(call, "".join(texts), finish, usage))
        return ItemResult(item.custom_id, "succeeded", 200, body, usage)

    def _chat_request(self, dialect: Dialect, item: BatchItem) -> tuple[HttpRequest, re.Match[str]]:
        path, _, query = item.path.partition("?")
        for route, owner in self._routes:
            if owner is dialect and route.handler is None and (match := route.pattern.fullmatch(path)):
                return HttpRequest("POST", item.path, path, query, "HTTP/1.1", {}, b"", True), match
        raise invalid(f"Batch item {item.custom_id!r}: unsupported url {item.path!r}.")

    # -- files -------------------------------------------------------------------

    def add_file(self, file_id: str, filename: str, purpose: str, data: bytes) -> StoredFile:
        stored = StoredFile(file_id, filename, purpose, data, self._wall())
        self.files[file_id] = stored
        return stored

    def file(self, file_id: str) -> StoredFile:
        stored = self.files.get(file_id)
        if stored is None:
            raise ApiError(ErrorSpec("not_found", 404, f"No such File object: {file_id}"))
        return stored


def parse_multipart(req: HttpRequest) -> dict[str, tuple[str | None, bytes]]:
    """The fields of a ``multipart/form-data`` body: name -> (filename, bytes)."""
    content_type = req.headers.get("content-type", "")
    if not content_type.lower().startswith("multipart/form-data"):
        raise invalid("Expected a multipart/form-data body with 'file' and 'purpose' fields.")
    head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode()
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + req.body)
    fields: dict[str, tuple[str | None, bytes]] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not isinstance(name, str):
            continue
        payload = part.get_payload(decode=True)
        fields[name] = (part.get_filename(), payload if isinstance(payload, bytes) else b"")
    return fields


def rfc3339(unix: float) -> str:
    """A unix time as RFC 3339 UTC with microseconds (``2026-11-25T20:15:39.123456Z``)."""
    return datetime.fromtimestamp(unix, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def jsonl(lines: list[JsonBody]) -> bytes:
    """JSON Lines, one compact object per line."""
    return b"".join(json.dumps(line, separators=(",", ":")).encode() + b"\n" for line in lines)


def counts(job: BatchJob) -> tuple[int, int, int]:
    """(succeeded, failed, cancelled) items of an ended job."""
    results = job.results or []
    ok = sum(1 for r in results if r.outcome == "succeeded")
    failed = sum(1 for r in results if r.outcome == "errored")
    return ok, failed, len(results) - ok - failed


def usage_total(job: BatchJob) -> Usage:
    total = Usage(0, 0)
    for r in job.results or []:
        if r.usage is not None:
            u = r.usage
            total = replace(total, input_tokens=total.input_tokens + u.input_tokens,
                            output_tokens=total.output_tokens + u.output_tokens,
                            cached_tokens=total.cached_tokens + u.cached_tokens,
                            reasoning_tokens=total.reasoning_tokens + u.reasoning_tokens)
    return total
