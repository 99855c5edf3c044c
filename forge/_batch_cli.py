"""``forge batch``: run a JSONL file of prompts as one batch, write the results in input order.

::

    forge batch openai:gpt-4o-mini prompts.jsonl --out results.jsonl            # batch API when it can
    forge batch ollama:llama3.2 prompts.jsonl --out results.jsonl --mode concurrent --max-concurrent 8
    forge batch --resume fj_0123456789abcdef --out results.jsonl                 # after an interruption

Input lines are ``{"prompt": "..."}`` or ``{"messages": [...]}``, plus any
request parameters (``system``, ``max_tokens``, ``temperature``, ...). Output
lines are ``{"index", "text", "usage", "finish_reason", "cost_usd"}`` or
``{"index", "error": {"type", "message"}}``. A line that is not valid input
becomes an error line; nothing is sent for it.

Progress goes to standard output: a live bar on a terminal, a plain line
every 10% (and at each state change) otherwise. Exit status: 0 when every
item succeeded, 3 when some failed, 1/2 when the batch itself could not run.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO, TypeVar

from forge.errors import BadRequestError, BatchError, ForgeError

if TYPE_CHECKING:
    from forge.batch import BatchProcessor, BatchProgress, BatchResult
    from forge.llm import LLM
    from forge.types import Request

__all__ = ["CommandError", "add_batch_parser", "number", "run_batch"]

_BAR_WIDTH = 30
EXIT_PARTIAL = 3
N = TypeVar("N", int, float)


class CommandError(Exception):
    """A mistake the user can fix, or a failure they must act on: one line on stderr, then ``code``."""

    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        self.code = code


def number(
    kind: type[N], minimum: float, maximum: float | None = None, *, exclusive: bool = False
) -> Callable[[str], N]:
    """An argparse ``type`` that accepts a ``kind`` within bounds and says what to give otherwise."""
    noun = "a whole number" if kind is int else "a number"
    if maximum is not None:
        allowed = f"{noun} from {minimum:g} to {maximum:g}"
    else:
        allowed = f"{noun} {'>' if exclusive else '>='} {minimum:g}"

    def parse(text: str) -> N:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"give {allowed}, not {text!r}") from None
        if value != value or value < minimum or (exclusive and value == minimum) or (
            maximum is not None and value > maximum
        ):
            raise argparse.ArgumentTypeError(f"give {allowed}, not {text}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its own messages
    return parse


def add_batch_parser(sub: Any) -> None:
    """Register the ``batch`` subcommand on ``forge``'s subparsers."""
    p: argparse.ArgumentParser = sub.add_parser(
        "batch",
        help="run a JSONL file of prompts as one batch (provider batch API or concurrent calls)",
        description="Run every line of INPUT.jsonl and write one result line per input line, in order.",
    )
    p.add_argument("model", nargs="?", help="provider:model or an alias (not needed with --resume)")
    p.add_argument("input", nargs="?", help="JSONL: {\"prompt\": ...} or {\"messages\": [...]} per line")
    p.add_argument("--out", required=True, help="where to write the results (JSONL, input order)")
    p.add_argument("--mode", choices=("auto", "batch_api", "concurrent"), default="auto",
                   help="auto: the provider's batch API (half price) when it has one, else concurrent")
    p.add_argument("--resume", metavar="JOB_ID", help="collect a job submitted earlier instead of submitting")
    p.add_argument("--max-concurrent", type=number(int, 1), default=16, dest="max_concurrent")
    p.add_argument("--max-wait", type=number(float, 0.0, exclusive=True), dest="max_wait",
                   help="seconds to wait for a provider batch before cancelling it")
    p.add_argument("--timeout", type=number(float, 0.0, exclusive=True),
                   help="concurrent mode: seconds each call may take, retries included")
    p.add_argument("--max-attempts", type=number(int, 1), dest="max_attempts",
                   help="concurrent mode: attempts per call (1: no retry)")
    p.add_argument("--job-store", dest="job_store",
                   help="a SQLite path or redis:// URL (default: $FORGE_JOB_STORE, else the user data dir)")
    p.add_argument("--config", help="config file (TOML or JSON); default: the usual search")


def _input_lines(path: str) -> list[str]:
    """The input file's lines; a file that cannot be read is a :class:`CommandError`."""
    try:
        with open(path, encoding="utf-8") as f:
            return f.read().splitlines()
    except FileNotFoundError:
        raise CommandError(f"forge batch: input file {path} does not exist; check the path.") from None
    except IsADirectoryError:
        raise CommandError(f"forge batch: {path} is a directory; give a JSONL file as INPUT.") from None
    except PermissionError:
        raise CommandError(
            f"forge batch: cannot read {path} (permission denied); make it readable (chmod +r)."
        ) from None
    except UnicodeDecodeError as exc:
        raise CommandError(
            f"forge batch: {path} is not UTF-8 text ({exc.reason} at byte {exc.start}); "
            "save it as UTF-8 (e.g. iconv -t UTF-8)."
        ) from None
    except OSError as exc:
        raise CommandError(f"forge batch: cannot read {path} ({exc.strerror or exc}).") from None


def _check_out(path: str) -> None:
    """Fail before anything is submitted (and paid for) when ``path`` cannot be written."""
    target = Path(path)
    if target.is_dir():
        raise CommandError(f"forge batch: --out {path} is a directory; give a file path inside it.")
    parent = target.parent
    if not parent.is_dir():
        raise CommandError(
            f"forge batch: --out {path}: directory {parent} does not exist; create it "
            f"(mkdir -p {parent}) or write elsewhere."
        )
    probe = f"{path}.tmp"
    try:
        with open(probe, "a", encoding="utf-8"):
            pass
        os.remove(probe)
    except OSError as exc:
        raise CommandError(
            f"forge batch: --out {path} cannot be written ({exc.strerror or exc}); choose a path you "
            "can write to."
        ) from None


def _read_input(path: str, llm: LLM, lines: list[str] | None = None) -> list[Request | ForgeError]:
    items: list[Request | ForgeError] = []
    for n, line in enumerate(_input_lines(path) if lines is None else lines, 1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
            if not isinstance(data, dict):
                raise ValueError("a line must be a JSON object")
            params = dict(data)
            prompt = params.pop("messages", None)
            text = params.pop("prompt", None)
            if (prompt is None) == (text is None):
                raise ValueError('give exactly one of "prompt" or "messages"')
            items.append(llm.request(prompt if prompt is not None else text, **params))
        except (TypeError, ValueError) as exc:
            items.append(BadRequestError(f"{path} line {n}: {exc}", provider=llm.provider_name,
                                         model=llm.model))
    return items


def result_line(index: int, result: BatchResult) -> dict[str, object]:
    """One output line."""
    from forge.errors import ProviderError
    from forge.types import Response

    if isinstance(result, Response):
        u = result.usage
        return {
            "index": index,
            "text": result.text,
            "usage": {
                "input_tokens": u.input_tokens, "output_tokens": u.output_tokens,
                "cached_input_tokens": u.cached_input_tokens, "cache_write_tokens": u.cache_write_tokens,
                "reasoning_tokens": u.reasoning_tokens,
            },
            "finish_reason": result.finish_reason,
            "cost_usd": result.cost_usd,
        }
    message = result.message if isinstance(result, ProviderError) else str(result)
    return {"index": index, "error": {"type": type(result).__name__, "message": message}}


class _ProgressView:
    """A live bar on a terminal; otherwise a plain line per 10% step and state change."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.tty = out.isatty()
        self._step = -1
        self._state = ""
        self._drawn = False

    def __call__(self, p: BatchProgress) -> None:
        cost = f" ${p.cost_usd:.4f}" if p.cost_usd else ""
        counts = (f"{p.finished}/{p.total} done={p.done} failed={p.failed} in_flight={p.in_flight} "
                  f"tokens={p.input_tokens + p.output_tokens}{cost} {p.elapsed_s:.1f}s")
        if self.tty:
            filled = _BAR_WIDTH * p.finished // max(p.total, 1)
            bar = "#" * filled + "." * (_BAR_WIDTH - filled)
            self.out.write(f"\r[{bar}] {counts} {p.state}\x1b[K")
            self.out.flush()
            self._drawn = True
            return
        step = 10 * p.finished // max(p.total, 1)
        if step != self._step or p.state != self._state:
            self._step, self._state = step, p.state
            self.out.write(f"batch {p.mode} {p.state}: {counts}\n")
            self.out.flush()

    def close(self) -> None:
        if self._drawn:
            self.out.write("\n")
            self._drawn = False


def _write_results(path: str, results: list[BatchResult]) -> None:
    tmp = f"{path}.tmp"
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            for i, result in enumerate(results):
                f.write(json.dumps(result_line(i, result), ensure_ascii=False) + "\n")
        os.replace(tmp, path)  # readers never see a half-written file
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise


def _save_results(path: str, results: list[BatchResult], job_id: str | None) -> None:
    """Write the results to ``path``; if that fails, say where they are and how to get them."""
    try:
        _write_results(path, results)
        return
    except OSError as exc:
        reason = exc.strerror or str(exc)
    if job_id is not None:
        raise CommandError(
            f"forge batch: cannot write {path} ({reason}); the results are kept in the job store: "
            f"get them with forge batch --resume {job_id} --out <a writable path>.",
            code=1,
        )
    fd, spare = tempfile.mkstemp(prefix="forge-batch-", suffix=".jsonl")
    os.close(fd)
    _write_results(spare, results)
    raise CommandError(
        f"forge batch: cannot write {path} ({reason}); the results are saved in {spare} instead.", code=1
    )


async def _submit_and_collect(
    processor: BatchProcessor,
    items: list[Request | ForgeError],
    args: argparse.Namespace,
    out: TextIO,
    view: _ProgressView,
) -> tuple[list[BatchResult], str | None]:
    """Submit the valid lines as one provider batch (printing how to resume it), then wait for it.

    Returns the results and the job id (None when nothing was sendable).
    """
    from forge.types import Request

    sendable = [r for r in items if isinstance(r, Request)]
    collected: list[BatchResult] = []
    job_id = None
    if sendable:
        job = await processor.submit(sendable)
        job_id = job.id
        resume = f"forge batch --resume {job.id} --out {args.out}"
        out.write(
            f"forge batch: submitted job {job.id} ({job.provider} batch {job.batch_id}); if interrupted, "
            f"resume with: {resume}\n"
        )
        out.flush()
        try:
            collected = await processor.collect(job, on_progress=view, max_wait=args.max_wait)
        except ForgeError as exc:
            raise CommandError(
                f"forge batch: {type(exc).__name__}: {exc} The job is recorded; resume it with: {resume}",
                code=1,
            ) from exc
    it = iter(collected)
    return [r if isinstance(r, ForgeError) else next(it) for r in items], job_id


async def run_batch(args: argparse.Namespace, out: TextIO) -> int:
    """The ``forge batch`` command."""
    from forge.jobs import open_job_store
    from forge.registry import Registry

    if args.resume is None and (args.model is None or args.input is None):
        raise CommandError("forge batch: give MODEL and INPUT.jsonl, or --resume JOB_ID.")
    # Everything the user can get wrong is checked before a request is sent (and paid for).
    _check_out(args.out)
    lines = _input_lines(args.input) if args.resume is None else []
    view = _ProgressView(out)
    job_id: str | None = args.resume
    async with Registry(config=args.config) as reg:
        reg.job_store = open_job_store(args.job_store)
        try:
            if args.resume is not None:
                try:
                    job = await reg.batch_job(args.resume)
                except BatchError as exc:
                    if exc.code != "unknown_job":
                        raise
                    raise CommandError(
                        f"forge batch: no job {args.resume!r} in the job store {reg.job_store!r}; check the "
                        "id (forge batch printed it when it submitted), or give --job-store (or "
                        "FORGE_JOB_STORE) as it was then."
                    ) from None
                out.write(f"forge batch: resuming job {job.id} ({job.provider}:{job.model}, "
                          f"{job.count} requests, {job.state})\n")
                results = await reg.batch_resume(job.id, on_progress=view, max_wait=args.max_wait)
            else:
                await reg.warm(args.model)
                processor = reg.batch_processor(args.model)
                items = _read_input(args.input, processor.llm, lines)
                if processor.choose_mode(args.mode, args.max_wait) == "concurrent":
                    results = await processor.run_concurrent(
                        items, max_concurrent=args.max_concurrent, on_progress=view,
                        timeout=args.timeout, max_attempts=args.max_attempts,
                    )
                elif args.timeout is not None or args.max_attempts is not None:
                    raise CommandError(
                        "forge batch: --timeout and --max-attempts apply to concurrent mode; add "
                        "--mode concurrent, or bound a provider batch with --max-wait."
                    )
                else:
                    results, job_id = await _submit_and_collect(processor, items, args, out, view)
        finally:
            view.close()
            await reg.job_store.aclose()
    _save_results(args.out, results, job_id)
    failed = sum(1 for r in results if isinstance(r, ForgeError))
    out.write(f"forge batch: {len(results) - failed} succeeded, {failed} failed -> {args.out}\n")
    return EXIT_PARTIAL if failed else 0
