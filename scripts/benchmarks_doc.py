"""Render docs/benchmarks.md from the JSON that ``python -m benchmarks --json`` prints.

    python scripts/benchmarks_doc.py --run                 # run the default suite, then write the page
    python -m benchmarks --json > r.json && python scripts/benchmarks_doc.py r.json

The page says the machine (CPU model, cores, Python and package versions), the date and
the exact command, then every figure as printed; nothing in it is typed by hand.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # a script: the benchmarks package sits beside scripts/

from benchmarks._common import fmt  # noqa: E402 - after the path it needs

PACKAGES = ("openai", "anthropic", "google-genai", "ollama", "httpx2", "any-llm-sdk", "litellm")

HOW = """\
## How each figure is measured

- **streaming**: for each target (OpenAI chat, the Responses API, Anthropic, Gemini,
  Ollama) the same stream from the emulator, in its own process so its CPU is not
  counted, is consumed three ways in the same run, interleaved: forge
  (`Stream.events()`), the vendor's typed stream, and the **floor**: bare httpx2 line
  iteration plus `json.loads` of every data line of the same request, the least any
  Python client can do with these bytes. Two arrivals: **packed** (events that are
  ready together arrive in one read) and **one per read** (the emulator sends each
  event on its own about 1 ms apart, so per-read costs show; a tenth as many chunks).
  CPU per text chunk; every path must count the same events or the run stops. Targets:
  forge at most 1.2x the floor (OpenAI chat, Responses, Anthropic, Gemini, both
  arrivals); forge at most 0.25x the typed client's CPU for OpenAI and Gemini, 0.7x
  for Anthropic, 1.1x for Ollama (packed).
- **hotpath**: the hot-path targets. Per provider (OpenAI chat, Responses, Anthropic,
  Gemini), forge's CPU per text chunk over the floor's (bare httpx2 `aiter_lines` plus
  `json.loads` of every `data:` line of the same request, in the same run), packed and
  one event per read (the emulator writes each event on its own, unpaced), 4,000
  chunks a stream; per chunk means the whole call's CPU (request building through the
  official client included) over its text chunks. Runs are interleaved in pairs of
  rounds, each side leading one round of the pair (whichever runs first pays more),
  and a ratio is the median over the pairs of the two rounds' geometric mean. Then
  1,000 OpenAI chat streams at once through one Registry against 1,000 floor streams
  at once on a client with the same pool (100 chunks each): CPU ratio and errors, and
  the same 1,000 requests through the official openai client alone (the body as forge
  sends it, the floor's decoding), which is what forge's request costs before forge
  does anything. Target: at most 1.2x the floor everywhere, with 0 errors.
- **structure**: not a timing. Functions in forge/ above cyclomatic complexity 15
  (radon) without a `# complexity: <why>` comment on their def line (target 0; the
  justified ones are named), the largest adapter module in forge/providers/ (target
  under 400 lines), and repeated runs inside forge/providers/ as the `duplicates`
  tool finds them, where it is installed (target 0).
- **peers**: the same packed OpenAI chat stream through LiteLLM and any-llm beside
  forge, the typed client and the floor, in the same run, when they are installed
  (they are not dependencies; the run prints a note and skips a missing one).
- **stream_to_file**: a 10 MB reply written with `reg.stream_to_file`; peak Python
  memory (tracemalloc) above the starting point. Target under 5 MB.
- **import**: `import X` in a fresh interpreter.
- **overhead**: CPU per non-streamed call. The like-for-like baseline is the official
  client's `with_raw_response` plus `json.loads` of the body (the decoding work forge
  does); the typed client's figure (it also builds pydantic models) is shown too,
  labelled as unlike work. Time to the first streamed token.
- **limiter**, **metrics**: one `TokenBucket.acquire` with budget to spare, the rate a
  `RequestCounter` sustains, the cost of recording one call.
- **batch**: concurrent `batch_invoke` against the emulator enforcing the same limit
  server-side (throughput as a share of the limit, 429s). The batch-API cost ratio is
  **computed from forge's price list** (batch at half price), so its 0.50 restates the
  price list; what is measured is the token usage of both modes, shown beside it
  (equal in both modes).
- **optimize**: input cost of ten calls sharing a 5,000-token system prompt with
  optimizations off and on (usage from the emulator, priced with forge's price list);
  wall times are the emulator's modelled prefill, not real provider latency. The
  emulator's cache rules come from the vendors' documentation
  (`forge/testing/_emulator/vendor_facts.py`), not from forge's optimizer.
- **ratelimit**: a raw server (`tests/strict_limits.py`, not the emulator) admits at
  most rpm/60 requests and tpm/60 tokens in any sliding one-second window and
  answers 429 otherwise; forge, configured with the same limit, sends 200 requests
  from 50 tasks. Figures: 429s, the busiest second as a share of the slice, and the
  rate reached as a share of the slice.
- **fallback**, **first_call**, **faults**: see docs/fallback.md, docs/configuration.md
  and docs/retry.md; each prints its own command line there.
"""


def machine() -> list[str]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = []
    for name in PACKAGES:
        try:
            versions.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            versions.append(f"{name} not installed")
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"
    return [
        f"- CPU: {cpu}, {os.cpu_count()} cores (load average at the end: {load})",
        f"- Python {platform.python_version()} ({platform.python_implementation()}), {platform.system()} "
        f"{platform.release()}",
        f"- Packages: {', '.join(versions)}",
    ]


def render(figures: list[dict[str, object]], command: str, date: str, seconds: float | None) -> str:
    took = f" It took {seconds / 60:.1f} minutes." if seconds else ""
    lines = [
        "# Benchmarks",
        "",
        "Generated by `python scripts/benchmarks_doc.py` from the JSON of the command below; do not",
        "edit the figures by hand. Each figure is the median of interleaved runs, with min and max.",
        "",
        "## Reproduce",
        "",
        "```bash",
        f"{command}",
        "python -m benchmarks streaming --quick           # tiny sizes: checks that everything runs",
        "python -m benchmarks.bench_streaming --targets openai,google --modes packed  # one suite",
        "python -m benchmarks.peers                        # LiteLLM / any-llm, when installed",
        "python scripts/benchmarks_doc.py --run            # run the default suite and rewrite this page",
        "```",
        "",
        f"Run on {date} with `{command}`.{took} The default run is kept to a few minutes on",
        "the 2-core machine below, which was shared with other work while it ran: treat",
        "single microseconds as noise; the ratios measured in the same run are what matter.",
        "",
        *machine(),
        "",
        "The test suite runs `python -m benchmarks --quick` (tiny sizes) so the benchmarks",
        "cannot rot; speed targets are checked here, never in timed unit tests.",
        "",
        HOW,
        f"## Results ({date})",
        "",
        "| benchmark | figure | median | min | max | unit | runs | note |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for f in figures:
        lines.append("| {} | {} | {} | {} | {} | {} | {} | {} |".format(
            f["bench"], f["name"], fmt(float(f["median"])), fmt(float(f["min"])),  # type: ignore[arg-type]
            fmt(float(f["max"])), f["unit"], f["runs"], str(f["note"]).replace("|", "/")))  # type: ignore[arg-type]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("json_file", nargs="?", help="`python -m benchmarks --json` output (default: stdin)")
    parser.add_argument("--run", action="store_true", help="run `python -m benchmarks --json` first")
    parser.add_argument("--command", default="python -m benchmarks --json",
                        help="the command that produced the JSON, as the page should name it")
    parser.add_argument("--out", default=str(ROOT / "docs" / "benchmarks.md"))
    parser.add_argument("--seconds", type=float, default=None, help="how long the run took")
    args = parser.parse_args()
    seconds = args.seconds
    if args.run:
        start = time.monotonic()
        done = subprocess.run([sys.executable, "-m", "benchmarks", "--json"], cwd=ROOT, check=True,
                              stdout=subprocess.PIPE, text=True)
        seconds = time.monotonic() - start
        text = done.stdout
    elif args.json_file:
        text = Path(args.json_file).read_text()
    else:
        text = sys.stdin.read()
    date = datetime.date.today().isoformat()
    Path(args.out).write_text(render(json.loads(text), args.command, date, seconds))
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
