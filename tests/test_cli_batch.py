"""``forge batch``: a JSONL file in, results in input order out, progress, and resuming by job id."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from forge import Registry, SQLiteJobStore
from forge.cli import main
from forge.testing import EmulatorThread, Fault


@pytest.fixture(scope="module")
def emu() -> Iterator[EmulatorThread]:
    with EmulatorThread() as e:
        yield e


@pytest.fixture
def files(emu: EmulatorThread, tmp_path: Path) -> dict[str, Path]:
    emu.reset()
    config = tmp_path / "forge.json"
    config.write_text(json.dumps(emu.config()))
    source = tmp_path / "in.jsonl"
    source.write_text("\n".join([
        json.dumps({"prompt": "one", "max_tokens": 40}),
        json.dumps({"messages": [{"role": "user", "content": "two"}], "system": "be brief"}),
        json.dumps({"prompt": "three", "temperature": 9}),
        "not json",
        "",
        json.dumps({"prompt": "five"}),
    ]) + "\n")
    return {"config": config, "in": source, "out": tmp_path / "out.jsonl", "store": tmp_path / "jobs.sqlite3"}


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _run(files: dict[str, Path], *args: str, out: io.StringIO | None = None) -> tuple[int, str, list[dict[str, object]]]:
    stream = out or io.StringIO()
    rc = main(["batch", *args, "--out", str(files["out"]), "--config", str(files["config"]),
               "--job-store", str(files["store"])], out=stream)
    lines = [json.loads(x) for x in files["out"].read_text().splitlines()] if files["out"].exists() else []
    return rc, stream.getvalue(), lines


@pytest.mark.parametrize("mode", ["batch_api", "concurrent"])
def test_results_come_out_in_input_order_with_bad_lines_as_errors(files: dict[str, Path], mode: str) -> None:
    rc, printed, lines = _run(files, "anthropic:claude-haiku-4-5", str(files["in"]), "--mode", mode)
    assert rc == 3  # some items failed
    assert [line["index"] for line in lines] == [0, 1, 2, 3, 4]
    assert str(lines[0]["text"]).endswith("You said: one") and lines[0]["finish_reason"] == "stop"
    assert str(lines[1]["text"]).endswith("You said: two")
    assert lines[2]["error"] == {"type": "BadRequestError", "message": lines[2]["error"]["message"]}  # type: ignore[index]
    assert "line 3" in lines[2]["error"]["message"] and "temperature" in lines[2]["error"]["message"]  # type: ignore[index]
    assert "line 4" in lines[3]["error"]["message"]  # type: ignore[index]
    assert set(lines[0]) == {"index", "text", "usage", "finish_reason", "cost_usd"}
    assert lines[0]["usage"]["output_tokens"] > 0 and lines[0]["cost_usd"] > 0  # type: ignore[index,operator]
    assert "3 succeeded, 2 failed" in printed


def test_batch_api_prints_the_job_id_and_how_to_resume(files: dict[str, Path]) -> None:
    rc, printed, lines = _run(files, "openai:gpt-4o-mini", str(files["in"]), "--mode", "batch_api")
    assert "forge batch: submitted job fj_" in printed and "--resume fj_" in printed
    assert rc == 3 and len(lines) == 5


def test_progress_is_plain_lines_when_not_a_terminal(files: dict[str, Path]) -> None:
    _, printed, _ = _run(files, "google:gemini-2.5-flash", str(files["in"]), "--mode", "concurrent")
    progress = [line for line in printed.splitlines() if line.startswith("batch concurrent")]
    assert progress and "\r" not in printed
    assert "5/5 done=3 failed=2 in_flight=0" in progress[-1]


def test_progress_is_a_live_bar_on_a_terminal(files: dict[str, Path]) -> None:
    _, printed, _ = _run(files, "google:gemini-2.5-flash", str(files["in"]), "--mode", "concurrent", out=Terminal())
    assert "\r[" in printed and "#" * 30 in printed
    assert printed.count("\n") == printed.count("forge batch:") + 1  # bar redrawn in place, one newline after it


def test_resume_collects_a_job_submitted_earlier(files: dict[str, Path], emu: EmulatorThread) -> None:
    async def submit() -> str:
        async with Registry(emu.config()) as reg:
            reg.job_store = SQLiteJobStore(files["store"])
            job = await reg.batch_submit("openai:gpt-4o-mini", ["alpha", "beta"])
            await reg.job_store.aclose()
            return job.id

    job_id = asyncio.run(submit())
    rc, printed, lines = _run(files, "--resume", job_id)
    assert rc == 0 and f"resuming job {job_id}" in printed
    assert [str(line["text"]).split("You said: ")[-1] for line in lines] == ["alpha", "beta"]
    creates = [r for r in emu.requests if r.method == "POST" and r.path == "/v1/batches"]
    assert len(creates) == 1


def test_an_item_failing_at_the_provider_is_an_error_line(files: dict[str, Path], emu: EmulatorThread) -> None:
    emu.script(Fault.status(400, "refused"), path="batch:*-0")
    rc, _, lines = _run(files, "openai:gpt-4o-mini", str(files["in"]), "--mode", "batch_api")
    assert lines[0]["error"] == {"type": "BadRequestError", "message": "openai said: refused"}
    assert rc == 3


def test_model_and_input_are_required_without_resume(
    files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    rc, _, _ = _run(files)
    assert rc == 2 and "--resume" in capsys.readouterr().err


def test_an_unknown_job_fails_cleanly(files: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    rc, _, _ = _run(files, "--resume", "fj_missing")  # a mistyped id is the user's to fix: exit 2
    assert rc == 2 and "no job 'fj_missing' in the job store" in capsys.readouterr().err
