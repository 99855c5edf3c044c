"""Gemini batch mode (``models/{m}:batchGenerateContent``) behind :class:`~forge.types.BatchProvider`.

Requests are inlined (``aio.batches.create(model=, src=[InlinedRequest])``),
each built by the Gemini adapter's own request mapping and tagged with
``metadata={"key": custom_id}``; the batch's display name is the job
marker, which :meth:`GoogleBatch.find` looks for. ``aio.batches.get`` gives
the state and, once it has ended, ``dest.inlined_responses`` in input order
(matched by their ``metadata.key`` when the service echoes it, by position
otherwise); each response goes through the adapter's chunk reader.

Only ``GenerateContentConfig`` fields of ``request.extra`` can be sent: the
batch API takes typed requests, so raw JSON body fields raise
:class:`~forge.BadRequestError` before anything is submitted.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from google.genai import types as gt

from forge.errors import BadRequestError, BatchError, ForgeError
from forge.providers._common import error_for_status
from forge.providers._stream import classifying
from forge.providers.google import GoogleProvider
from forge.providers.google_reply import _ChunkReader
from forge.providers.google_request import gemini_call_args
from forge.types import BatchState, BatchStatus, Request, Response

__all__ = ["GoogleBatch", "inlined_request", "parse_inlined_response"]

_STATES: dict[str, BatchState] = {
    "JOB_STATE_QUEUED": "running",
    "JOB_STATE_PENDING": "running",
    "JOB_STATE_RUNNING": "running",
    "JOB_STATE_UPDATING": "running",
    "JOB_STATE_PAUSED": "running",
    "JOB_STATE_SUCCEEDED": "completed",
    "JOB_STATE_PARTIALLY_SUCCEEDED": "completed",
    "JOB_STATE_FAILED": "failed",
    "JOB_STATE_CANCELLING": "cancelling",
    "JOB_STATE_CANCELLED": "cancelled",
    "JOB_STATE_EXPIRED": "expired",
}
# google.rpc.Code -> the HTTP status Google maps it to.
_RPC_STATUS = {1: 499, 2: 500, 3: 400, 4: 504, 5: 404, 6: 409, 7: 403, 8: 429, 9: 400, 10: 409, 11: 400,
               12: 501, 13: 500, 14: 503, 15: 500, 16: 401}
_RPC_NAMES = {3: "INVALID_ARGUMENT", 4: "DEADLINE_EXCEEDED", 5: "NOT_FOUND", 7: "PERMISSION_DENIED",
              8: "RESOURCE_EXHAUSTED", 13: "INTERNAL", 14: "UNAVAILABLE", 16: "UNAUTHENTICATED"}


def inlined_request(custom_id: str, request: Request) -> gt.InlinedRequest:
    """One inlined request: the adapter's contents and config, tagged with ``custom_id``."""
    _, contents, config = gemini_call_args(request)
    if config.http_options is not None and config.http_options.extra_body:
        keys = ", ".join(sorted(config.http_options.extra_body))
        raise BadRequestError(
            f"Gemini batch requests cannot carry raw body fields ({keys}); pass GenerateContentConfig "
            "fields in extra, or use mode='concurrent'.",
            provider="google", model=request.model,
        )
    # Client-side switches (function calling, continuation) mean nothing to a batch.
    config = config.model_copy(
        update={"automatic_function_calling": None, "automatic_continuation": None, "http_options": None}
    )
    return gt.InlinedRequest(contents=contents, config=config, metadata={"key": custom_id})


def parse_inlined_response(item: Mapping[str, Any], model: str) -> Response | ForgeError:
    """A reply or an error from one ``InlinedResponse`` (camelCase JSON)."""
    error = item.get("error")
    if error:
        code = error.get("code")
        if code == 1:  # google.rpc.Code CANCELLED: the batch ended before this item ran
            return BatchError(f"google said: {error.get('message') or 'cancelled'}", code="cancelled",
                              provider="google", model=model)
        status = _RPC_STATUS.get(code, 500) if isinstance(code, int) and code < 100 else code
        name = error.get("status") or (_RPC_NAMES.get(code) if isinstance(code, int) else None)
        return error_for_status(
            status if isinstance(status, int) else None,
            f"google said: {error.get('message') or 'the batch item failed'}",
            provider="google", model=model, code=name,
        )
    body = item.get("response") or {}
    try:
        reader = _ChunkReader()
        events = reader.feed(dict(body))
    except ForgeError as exc:
        return exc
    return reader.response(events, model, body)


class GoogleBatch:
    """Gemini batch mode over a :class:`~forge.providers.google.GoogleProvider`'s client."""

    name = "google"

    def __init__(self, provider: GoogleProvider) -> None:
        self._provider = provider
        self._batches = provider._client.aio.batches

    def _error(self, exc: Exception) -> ForgeError:
        return self._provider.classify(exc)

    async def submit(self, requests: Sequence[tuple[str, Request]], *, marker: str) -> str:
        """Create the batch (display name ``marker``); returns its name (``batches/...``)."""
        models = {r.model for _, r in requests}
        if len(models) != 1:
            raise ValueError(f"a Gemini batch runs one model, got {sorted(models)}")
        src = [inlined_request(cid, r) for cid, r in requests]
        with classifying(self._error):
            job = await self._batches.create(
                model=models.pop(), src=src, config=gt.CreateBatchJobConfig(display_name=marker)
            )
        if not job.name:
            raise ForgeError("Gemini created a batch without a name")
        return job.name

    async def _get(self, batch_id: str) -> gt.BatchJob:
        with classifying(self._error):
            return await self._batches.get(name=batch_id)

    async def status(self, batch_id: str) -> BatchStatus:
        return _status(await self._get(batch_id))

    async def results(self, batch_id: str, custom_ids: Sequence[str]) -> Mapping[str, Response | ForgeError]:
        job = await self._get(batch_id)
        model = (job.model or "").removeprefix("models/")
        items = (job.dest.inlined_responses if job.dest is not None else None) or []
        out: dict[str, Response | ForgeError] = {}
        for position, item in enumerate(items):
            data = item.model_dump(mode="json", by_alias=True, exclude_none=True)
            key = (item.metadata or {}).get("key")
            if key is None and position < len(custom_ids):
                key = custom_ids[position]  # responses come back in input order
            if key is not None:
                out[key] = parse_inlined_response(data, model)
        return out

    async def cancel(self, batch_id: str) -> BatchStatus:
        with classifying(self._error):
            await self._batches.cancel(name=batch_id)
        return await self.status(batch_id)

    async def find(self, marker: str, *, count: int, created_after: float) -> str | None:
        """The batch whose display name is ``marker``."""
        with classifying(self._error):
            pager = await self._batches.list(config=gt.ListBatchJobsConfig(page_size=100))
            async for job in pager:
                if job.display_name == marker and job.name:
                    return job.name
                if job.create_time is not None and job.create_time.timestamp() < created_after:
                    return None
        return None


def _status(job: gt.BatchJob) -> BatchStatus:
    state = job.state.value if job.state is not None else "JOB_STATE_PENDING"
    stats = job.completion_stats
    succeeded = int(stats.successful_count or 0) if stats is not None else 0
    failed = int(stats.failed_count or 0) if stats is not None else 0
    message = None
    if job.error is not None:
        message = job.error.message
    return BatchStatus(
        id=job.name or "", state=_STATES.get(state, "running"), succeeded=succeeded, failed=failed,
        message=message, raw=job,
    )
