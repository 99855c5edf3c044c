"""Anthropic Message Batches (``/v1/messages/batches``) behind :class:`~forge.types.BatchProvider`.

``messages.batches.create(requests=[{"custom_id", "params"}])`` with the
params the messages adapter builds (``extra`` merged in); ``retrieve`` for
status (its ``retry-after`` header is honoured by the poller);
``results()`` streams the JSONL results (it re-retrieves the batch first,
then GETs the absolute ``results_url``; results are unordered and matched by
``custom_id``). Message batches carry no metadata, so :meth:`AnthropicBatch.find`
recognizes a job's batch by its request count and creation time, and, once it
has ended, by the job id that prefixes every custom id.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from forge.errors import BatchError, ForgeError
from forge.providers._common import error_for_status, headers_dict, parse_retry_after
from forge.providers._stream import classifying
from forge.providers.anthropic import AnthropicProvider
from forge.providers.anthropic_reply import _response
from forge.providers.anthropic_request import _params
from forge.types import BatchState, BatchStatus, Request, Response

__all__ = ["AnthropicBatch", "batch_request", "parse_result"]


def batch_request(custom_id: str, request: Request) -> dict[str, Any]:
    """One entry of ``requests``: the adapter's params, ``extra_body`` merged in."""
    params = _params(request)
    extra = params.pop("extra_body", None)
    if extra:
        params.update(extra)
    return {"custom_id": custom_id, "params": params}


def parse_result(line: Mapping[str, Any], model: str) -> tuple[str, Response | ForgeError]:
    """``(custom_id, reply or error)`` from one results line (``MessageBatchIndividualResponse``)."""
    custom_id = str(line.get("custom_id", ""))
    result = line.get("result") or {}
    kind = result.get("type")
    if kind == "succeeded":
        try:
            return custom_id, _response(result.get("message") or {}, model)
        except ForgeError as exc:
            return custom_id, exc
    if kind in ("canceled", "expired"):
        code = "cancelled" if kind == "canceled" else "expired"
        return custom_id, BatchError(
            f"anthropic batch item {custom_id} {kind} before it ran", code=code, provider="anthropic",
            model=model,
        )
    outer: Mapping[str, Any] = result.get("error") or {}
    nested = outer.get("error")
    inner: Mapping[str, Any] = nested if isinstance(nested, Mapping) else outer
    message = str(inner.get("message") or "the batch item failed")
    kind = inner.get("type")
    return custom_id, error_for_status(
        None, f"anthropic said: {message}", provider="anthropic", model=model,
        code=str(kind) if kind else None, request_id=outer.get("request_id"),
    )


class AnthropicBatch:
    """Anthropic Message Batches over an :class:`~forge.providers.anthropic.AnthropicProvider`'s client."""

    name = "anthropic"

    def __init__(self, provider: AnthropicProvider) -> None:
        self._provider = provider
        self._client = provider._client

    def _error(self, exc: Exception) -> ForgeError:
        return self._provider.classify(exc)

    async def submit(self, requests: Sequence[tuple[str, Request]], *, marker: str) -> str:
        """Create the batch; every custom id starts with ``marker``. Returns ``msgbatch_...``."""
        entries = [batch_request(cid, r) for cid, r in requests]
        if any(not cid.startswith(marker) for cid, _ in requests):
            raise ValueError("every custom id of an Anthropic batch must start with its marker")
        with classifying(self._error):
            batch = await self._client.messages.batches.create(requests=entries)  # type: ignore[arg-type]
        return batch.id

    async def status(self, batch_id: str) -> BatchStatus:
        with classifying(self._error):
            raw = await self._client.messages.batches.with_raw_response.retrieve(batch_id)
            batch = await raw.parse()
        return _status(batch, parse_retry_after(headers_dict(raw.headers)))

    async def results(self, batch_id: str, custom_ids: Sequence[str]) -> Mapping[str, Response | ForgeError]:
        out: dict[str, Response | ForgeError] = {}
        with classifying(self._error):
            decoder = await self._client.messages.batches.results(batch_id)
            async for item in decoder:
                data: dict[str, Any] = item.to_dict()
                result = data.get("result") or {}
                model = str((result.get("message") or {}).get("model") or "")
                custom_id, parsed = parse_result(data, model)
                out[custom_id] = parsed
        return out

    async def cancel(self, batch_id: str) -> BatchStatus:
        with classifying(self._error):
            batch = await self._client.messages.batches.cancel(batch_id)
        return _status(batch, None)

    async def find(self, marker: str, *, count: int, created_after: float) -> str | None:
        """The batch of job ``marker``: an ended batch whose custom ids carry the marker, else the
        only running batch of ``count`` requests created since ``created_after``.

        Raises:
            BatchError(code="ambiguous"): several running batches could be the job's.
        """
        running: list[str] = []
        with classifying(self._error):
            async for batch in self._client.messages.batches.list(limit=100):
                if batch.created_at.timestamp() < created_after:
                    break
                if _total(batch.request_counts) != count:
                    continue
                if batch.processing_status == "ended":
                    decoder = await self._client.messages.batches.results(batch.id)
                    async for item in decoder:
                        if item.custom_id.startswith(marker + "-"):
                            await decoder.close()
                            return batch.id
                        await decoder.close()
                        break
                else:
                    running.append(batch.id)
        if len(running) > 1:
            raise BatchError(
                f"{len(running)} running Anthropic batches ({', '.join(running)}) could be job {marker}'s; "
                "wait until they end (their custom ids then tell), or cancel the ones that are not yours.",
                code="ambiguous", job_id=marker, provider="anthropic",
            )
        return running[0] if running else None


def _total(counts: Any) -> int:
    return int(counts.processing + counts.succeeded + counts.errored + counts.canceled + counts.expired)


def _status(batch: Any, retry_after: float | None) -> BatchStatus:
    counts = batch.request_counts
    state: BatchState
    if batch.processing_status == "in_progress":
        state = "running"
    elif batch.processing_status == "canceling":
        state = "cancelling"
    elif batch.cancel_initiated_at is not None:
        state = "cancelled"
    else:
        state = "completed"
    return BatchStatus(
        id=batch.id,
        state=state,
        total=_total(counts),
        succeeded=counts.succeeded,
        failed=counts.errored + counts.canceled + counts.expired,
        retry_after=retry_after,
        raw=batch,
    )
