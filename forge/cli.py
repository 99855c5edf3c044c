"""The ``forge`` command line (also ``python -m forge``).

::

    forge demo                                  # stream from all four providers on the built-in emulator
    forge stream openai:gpt-4o-mini "Say hi"    # print a reply as it arrives, then its usage
    forge invoke anthropic:claude-haiku-4-5 "Say hi"
    forge batch openai:gpt-4o-mini in.jsonl --out out.jsonl   # a batch at half price (or concurrent)
    forge emulator --port 8000                  # run the provider emulator in the foreground
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, NoReturn, TextIO

from forge import __version__
from forge._batch_cli import CommandError, add_batch_parser, number, run_batch
from forge.errors import ConfigError, ForgeError

if TYPE_CHECKING:
    from forge._params import RequestParams
    from forge.retry import RetryEvent

__all__ = ["main"]

DEMO_MODELS = (
    ("openai", "openai:gpt-4o-mini"),
    ("anthropic", "anthropic:claude-haiku-4-5"),
    ("google", "google:gemini-2.5-flash"),
    ("ollama", "ollama:llama3.2"),
)


def _usage_line(response: object) -> str:
    from forge.types import Response

    assert isinstance(response, Response)
    u = response.usage
    parts = [
        f"{response.provider}:{response.model}",
        f"finish={response.finish_reason}",
        f"input={u.input_tokens}",
        f"output={u.output_tokens}",
    ]
    if u.cached_input_tokens:
        parts.append(f"cached={u.cached_input_tokens}")
    if response.time_to_first_token_s is not None:
        parts.append(f"ttft={response.time_to_first_token_s * 1000:.0f}ms")
    if response.latency_s is not None:
        parts.append(f"total={response.latency_s * 1000:.0f}ms")
    return "[" + " ".join(parts) + "]"


def _request_params(args: argparse.Namespace) -> RequestParams:
    params: RequestParams = {}
    if args.max_tokens is not None:
        params["max_tokens"] = args.max_tokens
    if args.system is not None:
        params["system"] = args.system
    if args.temperature is not None:
        params["temperature"] = args.temperature
    if args.json:
        params["response_format"] = "json"
    return params


def _say_retry(event: RetryEvent) -> None:
    """Retries are said aloud, so a slow or failing provider never looks like a hang."""
    print(
        f"forge: attempt {event.attempt} failed ({type(event.error).__name__}: {event.error}); "
        f"retrying in {event.wait:.1f}s",
        file=sys.stderr,
        flush=True,
    )


async def _stream(args: argparse.Namespace, out: TextIO) -> int:
    from forge.registry import Registry

    async with Registry(config=args.config, on_retry=_say_retry) as reg:
        await reg.warm(args.model)
        stream = reg.stream(
            args.model, args.prompt, timeout=args.timeout, max_attempts=args.max_attempts,
            **_request_params(args),
        )
        async with stream:
            async for text in stream:
                out.write(text)
                out.flush()
        out.write("\n" + _usage_line(stream.response) + "\n")
    return 0


async def _invoke(args: argparse.Namespace, out: TextIO) -> int:
    from forge.registry import Registry

    async with Registry(config=args.config, on_retry=_say_retry) as reg:
        response = await reg.invoke(
            args.model, args.prompt, timeout=args.timeout, max_attempts=args.max_attempts,
            **_request_params(args),
        )
        out.write(response.text + "\n" + _usage_line(response) + "\n")
    return 0


async def _demo(args: argparse.Namespace, out: TextIO) -> int:
    from forge.registry import Registry
    from forge.testing import Emulator

    async with Emulator(chunk_count=args.chunks) as emu:
        out.write(
            f"forge demo: running on forge's built-in provider emulator at {emu.url}\n"
            "(a local HTTP server speaking each vendor's wire protocol; no real provider is called, "
            "no API key is needed)\n\n"
        )
        async with Registry(config=emu.config()) as reg:
            for name, model in DEMO_MODELS:
                out.write(f"--- {name}: streaming from {model} through the official {name} client\n")
                stream = reg.stream(model, f"Hello {name}, tell me about forge.", max_tokens=200)
                async with stream:
                    async for text in stream:
                        out.write(text)
                        out.flush()
                out.write("\n" + _usage_line(stream.response) + "\n\n")
        out.write(f"The emulator answered {len(emu.requests)} requests. Done.\n")
    return 0


async def _metrics_demo(out: TextIO) -> None:
    from forge.registry import Registry
    from forge.testing import Emulator, Fault

    async with Emulator(chunk_count=6) as emu:
        emu.script(Fault.rate_limit(retry_after=0.05), provider="openai", times=1)
        emu.script(Fault.overloaded(), provider="anthropic", times=1)
        async with Registry(config=emu.config()) as reg:
            for model in (m for _, m in DEMO_MODELS):
                for i in range(5):
                    await reg.invoke(model, f"metrics demo {i}", max_tokens=50)
                await reg.stream(model, "metrics demo stream", max_tokens=50).collect()
            out.write(
                "Metrics of a short workload on the built-in emulator (one 429 and one 529 injected):\n"
            )
            out.write(reg.metrics.format_table() + "\n")


def _metrics(args: argparse.Namespace, out: TextIO) -> int:
    import json

    from forge.metrics import format_snapshot

    if args.demo:
        asyncio.run(_metrics_demo(out))
        return 0
    if args.snapshot is None:
        print(
            "forge metrics: give a snapshot file (a service writes one with "
            "json.dump(reg.metrics.snapshot(), f)) or --demo to run a short workload on the emulator.",
            file=sys.stderr,
        )
        return 2
    try:
        with open(args.snapshot, encoding="utf-8") as fh:
            snapshot = json.load(fh)
        out.write(format_snapshot(snapshot) + "\n")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        print(f"forge metrics: cannot read {args.snapshot}: {exc}", file=sys.stderr)
        return 2
    return 0


def _emulator(args: argparse.Namespace, out: TextIO) -> int:
    from forge.testing import serve

    try:
        serve(args.host, args.port, out=out)
    except OSError as exc:
        if args.port and exc.errno in (98, 48, 10048):  # EADDRINUSE on Linux, macOS, Windows
            raise CommandError(
                f"forge emulator: port {args.port} on {args.host} is already in use; pick another with "
                "--port (or --port 0 for any free port)."
            ) from None
        raise CommandError(
            f"forge emulator: cannot listen on {args.host}:{args.port} ({exc.strerror or exc}); "
            "check --host and --port."
        ) from None
    return 0


def _port(text: str) -> int:
    port = number(int, 0, 65535)(text)
    return int(port)


class _Parser(argparse.ArgumentParser):
    """Usage mistakes are one line on stderr and exit status 2, never a usage dump or a traceback."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="forge",
        description="forge: one async interface over the OpenAI, Anthropic, Gemini and Ollama clients.",
    )
    parser.add_argument("--version", action="version", version=f"forge {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    def call_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("model", help="provider:model, e.g. openai:gpt-4o-mini, or a configured alias")
        p.add_argument("prompt", help="the prompt text ('-' reads standard input)")
        p.add_argument("--system", help="system prompt")
        p.add_argument("--max-tokens", type=number(int, 1), dest="max_tokens")
        p.add_argument("--temperature", type=number(float, 0.0, 2.0))
        p.add_argument("--timeout", type=number(float, 0.0, exclusive=True),
                       help="seconds the whole call may take, retries included (default: config 'deadline')")
        p.add_argument("--max-attempts", type=number(int, 1), dest="max_attempts",
                       help="attempts before giving up (default: config 'retry.max_attempts'; 1: no retry)")
        p.add_argument("--json", action="store_true", help="ask for a JSON object reply")
        p.add_argument("--config", help="config file (TOML or JSON); default: the usual search")

    p_stream = sub.add_parser("stream", help="stream a reply as it arrives, then print its usage")
    call_args(p_stream)
    p_invoke = sub.add_parser("invoke", help="get a whole reply, then print its usage")
    call_args(p_invoke)
    p_demo = sub.add_parser("demo", help="stream from all four providers on the built-in emulator")
    p_demo.add_argument("--chunks", type=number(int, 1), default=12, help="chunks per emulated reply")
    add_batch_parser(sub)
    p_metrics = sub.add_parser("metrics", help="print a metrics snapshot as a table")
    p_metrics.add_argument("snapshot", nargs="?", help="a JSON file written from reg.metrics.snapshot()")
    p_metrics.add_argument("--demo", action="store_true", help="run a short workload on the emulator")
    p_emu = sub.add_parser("emulator", help="run the provider emulator until Ctrl-C")
    p_emu.add_argument("--host", default="127.0.0.1")
    p_emu.add_argument("--port", type=_port, default=8000, help="0-65535 (0: any free port)")
    return parser


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    """Entry point of the ``forge`` command; returns the exit status."""
    stream = out or sys.stdout
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:  # --help (0) or a usage mistake (2, already explained on stderr)
        return exc.code if isinstance(exc.code, int) else 2
    try:
        if getattr(args, "prompt", None) == "-":
            args.prompt = _read_stdin()
        return _run_command(args, stream)
    except CommandError as exc:
        print(str(exc), file=sys.stderr)
        return exc.code
    except ConfigError as exc:
        print(f"forge: configuration error: {exc}", file=sys.stderr)
        return 2
    except ForgeError as exc:
        print(f"forge: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _read_stdin() -> str:
    try:
        return sys.stdin.read()
    except UnicodeDecodeError as exc:
        raise CommandError(
            f"forge: standard input is not UTF-8 text ({exc.reason} at byte {exc.start}); "
            "convert it, e.g. with iconv -t UTF-8."
        ) from None


def _run_command(args: argparse.Namespace, out: TextIO) -> int:
    """Run the subcommand ``args`` names; its exit status."""
    if args.command == "stream":
        return asyncio.run(_stream(args, out))
    if args.command == "invoke":
        return asyncio.run(_invoke(args, out))
    if args.command == "demo":
        return asyncio.run(_demo(args, out))
    if args.command == "batch":
        return asyncio.run(run_batch(args, out))
    if args.command == "metrics":
        return _metrics(args, out)
    if args.command == "emulator":
        return _emulator(args, out)
    return 2


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
