"""OpenAI Batch API (``/v1/batches``) behind :class:`~forge.types.BatchProvider`.

One JSONL line per request (``{"custom_id", "method": "POST", "url":
"/v1/chat/completions", "body"}``, the body built by the chat adapter's own
request mapping) is uploaded with ``files.create(purpose="batch")``, then
``batches.create(completion_window="24h", metadata={"forge_job": marker})``.
Results come from the output file (replies) and the error file (per-item
errors), matched by ``custom_id``; each reply body goes through the chat
adapter's response mapping. Everything uses the adapter's own client (vendor
retries off); forge retries above.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from forge.errors import BatchError, ForgeError
from forge.providers._common import error_for_status, headers_dict, parse_retry_after
from forge.providers._stream import classifying
from forge.providers.openai import OpenAIProvider
from forge.providers.openai_reply import _response
from forge.providers.openai_request import _params
from forge.types import BatchState, BatchStatus, Request, Response

__all__ = ["OpenAIBatch", "batch_line", "parse_result_line"]

_MARKER_KEY = "forge_job"
_UNRUN = {"batch_cancelled": "cancelled", "batch_expired": "expired"}
_STATES: dict[str, BatchState] = {
    "validating": "running",
    "in_progress": "running",
    "finalizing": "running",
    "completed": "completed",
    "failed": "failed",
    "expired": "expired",
    "cancelling": "cancelling",
    "cancelled": "cancelled",
}


def batch_line(custom_id: str, request: Request) -> dict[str, Any]:
    """The JSONL input line for one request (``extra`` merged into the body, as the adapter sends it)."""
    body = _params(request)
    extra = body.pop("extra_body", None)
    if extra:
        body.update(extra)
    return {"custom_id": custom_id, "method": "POST", "url": "/v1/chat/completions", "body": body}


def parse_result_line(line: Mapping[str, Any], model: str) -> tuple[str, Response | ForgeError]:
    """``(custom_id, reply or error)`` from one line of an output or error file."""
    custom_id = str(line.get("custom_id", ""))
    response = line.get("response") or {}
    status = response.get("status_code")
    body = response.get("body")
    if status == 200 and isinstance(body, Mapping):
        try:
            return custom_id, _response(body, str(body.get("model") or model))
        except ForgeError as exc:
            return custom_id, exc
    error = line.get("error") or (body.get("error") if isinstance(body, Mapping) else None) or {}
    if not isinstance(error, Mapping):
        error = {"message": str(error)}
    message = error.get("message") or f"the batch item failed (status {status})"
    code = error.get("code") or error.get("type")
    if code in _UNRUN:  # the batch ended (cancelled, expired) before this item ran
        return custom_id, BatchError(f"openai said: {message}", code=_UNRUN[code], provider="openai",
                                     model=model)
    return custom_id, error_for_status(
        status if isinstance(status, int) else None,
        f"openai said: {message}",
        provider="openai",
        model=model,
        code=str(code) if code else None,
        request_id=response.get("request_id"),
    )


class OpenAIBatch:
    """The OpenAI Batch API over an :class:`~forge.providers.openai.OpenAIProvider`'s client."""

    name = "openai"

    def __init__(self, provider: OpenAIProvider) -> None:
        self._provider = provider
        self._client = provider._client
        # marker -> input file id, uploaded for a batches.create that has not succeeded yet:
        # a retry reuses it instead of uploading (and paying storage for) the same file again.
        self._uploaded: dict[str, str] = {}
        # batch id -> its files, as results() saw them: delete_files() needs no extra request.
        self._files: dict[str, tuple[str | None, ...]] = {}

    def _error(self, exc: Exception) -> ForgeError:
        return self._provider.classify(exc)

    async def submit(self, requests: Sequence[tuple[str, Request]], *, marker: str) -> str:
        """Upload the JSONL file and create the batch; returns its id (``batch_...``)."""
        data = b"".join(
            json.dumps(batch_line(cid, r), separators=(",", ":")).encode() + b"\n" for cid, r in requests
        )
        with classifying(self._error):
            file_id = self._uploaded.get(marker)
            if file_id is None:
                uploaded = await self._client.files.create(
                    file=(f"forge-{marker}.jsonl", data, "application/jsonl"), purpose="batch"
                )
                file_id = self._uploaded[marker] = uploaded.id
            batch = await self._client.batches.create(
                input_file_id=file_id,
                endpoint="/v1/chat/completions",
                completion_window="24h",
                metadata={_MARKER_KEY: marker},
            )
            self._uploaded.pop(marker, None)
        return batch.id

    async def status(self, batch_id: str) -> BatchStatus:
        with classifying(self._error):
            raw = await self._client.batches.with_raw_response.retrieve(batch_id)
            batch = raw.parse()
        return _status(batch, parse_retry_after(headers_dict(raw.headers)))

    async def results(self, batch_id: str, custom_ids: Sequence[str]) -> Mapping[str, Response | ForgeError]:
        """Replies from the output file and errors from the error file, by custom id."""
        with classifying(self._error):
            batch = await self._client.batches.retrieve(batch_id)
            self._files[batch_id] = (batch.input_file_id, batch.output_file_id, batch.error_file_id)
            out: dict[str, Response | ForgeError] = {}
            model = batch.model or ""
            for file_id in (batch.output_file_id, batch.error_file_id):
                if not file_id:
                    continue
                content = await self._client.files.content(file_id)
                for text in content.text.splitlines():
                    if text.strip():
                        custom_id, result = parse_result_line(json.loads(text), model)
                        out[custom_id] = result
        return out

    async def delete_files(self, batch_id: str) -> None:
        """Delete the batch's input, output and error files (OpenAI keeps them until deleted).

        Every file is tried; the first failure is raised after the others were deleted.
        """
        files = self._files.pop(batch_id, None)
        if files is None:
            try:
                batch = await self._client.batches.retrieve(batch_id)
            except Exception as exc:
                raise self._error(exc) from exc
            files = (batch.input_file_id, batch.output_file_id, batch.error_file_id)
        failures: list[ForgeError] = []
        for file_id in files:
            if not file_id:
                continue
            try:
                await self._client.files.delete(file_id)
            except Exception as exc:
                error = self._error(exc)
                if getattr(error, "status", None) != 404:  # already gone is what we wanted
                    failures.append(error)
        if failures:
            raise failures[0]

    async def cancel(self, batch_id: str) -> BatchStatus:
        with classifying(self._error):
            batch = await self._client.batches.cancel(batch_id)
        return _status(batch, None)

    async def find(self, marker: str, *, count: int, created_after: float) -> str | None:
        """The newest batch whose metadata carries ``marker`` (batches are listed newest first)."""
        with classifying(self._error):
            async for batch in self._client.batches.list(limit=100):
                if (batch.metadata or {}).get(_MARKER_KEY) == marker:
                    return batch.id
                if batch.created_at < created_after:
                    return None
        return None


def _status(batch: Any, retry_after: float | None) -> BatchStatus:
    counts = batch.request_counts
    message = None
    errors = batch.errors
    if errors is not None and errors.data:
        message = "; ".join(str(e.message or e.code) for e in errors.data)
    return BatchStatus(
        id=batch.id,
        state=_STATES.get(batch.status, "running"),
        total=counts.total if counts else 0,
        succeeded=counts.completed if counts else 0,
        failed=counts.failed if counts else 0,
        message=message,
        retry_after=retry_after,
        raw=batch,
    )
