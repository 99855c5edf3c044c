"""A user's mistake on the command line is one sentence on stderr and exit status 2, never a traceback."""

from __future__ import annotations

import io
import json
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

import forge._batch_cli as batch_cli
from forge.cli import main
from forge.testing import EmulatorThread
from forge.testing.emulator import config_toml


@pytest.fixture(scope="module")
def emu() -> Iterator[EmulatorThread]:
    with EmulatorThread(chunk_count=3) as e:
        yield e


@pytest.fixture
def config(emu: EmulatorThread, tmp_path: Path) -> Path:
    emu.reset()
    path = tmp_path / "forge.json"
    path.write_text(json.dumps(emu.config()))
    return path


@pytest.fixture
def source(tmp_path: Path) -> Path:
    path = tmp_path / "in.jsonl"
    path.write_text(json.dumps({"prompt": "one"}) + "\n" + json.dumps({"prompt": "two"}) + "\n")
    return path


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    out = io.StringIO()
    code = main(list(argv), out=out)
    err = capsys.readouterr().err
    return code, out.getvalue(), err


def one_line(err: str) -> str:
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["invoke", "openai:gpt-4o-mini", "hi", "--max-tokens", "-1"],
         "forge invoke: argument --max-tokens: give a whole number >= 1, not -1 (see forge invoke --help)"),
        (["stream", "openai:gpt-4o-mini", "hi", "--temperature", "9"],
         "forge stream: argument --temperature: give a number from 0 to 2, not 9 (see forge stream --help)"),
        (["invoke", "openai:gpt-4o-mini", "hi", "--temperature", "warm"],
         "forge invoke: argument --temperature: give a number from 0 to 2, not 'warm' "
         "(see forge invoke --help)"),
        (["invoke", "openai:gpt-4o-mini", "hi", "--timeout", "0"],
         "forge invoke: argument --timeout: give a number > 0, not 0 (see forge invoke --help)"),
        (["batch", "openai:gpt-4o-mini", "in.jsonl", "--out", "o.jsonl", "--max-concurrent", "0"],
         "forge batch: argument --max-concurrent: give a whole number >= 1, not 0 (see forge batch --help)"),
        (["emulator", "--port", "70000"],
         "forge emulator: argument --port: give a whole number from 0 to 65535, not 70000 "
         "(see forge emulator --help)"),
    ],
)
def test_a_bad_number_is_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str], argv: list[str], expected: str
) -> None:
    code, _, err = run(capsys, *argv)
    assert code == 2
    assert one_line(err) == expected


def test_a_missing_input_file_is_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str], config: Path, tmp_path: Path, emu: EmulatorThread
) -> None:
    missing = tmp_path / "nope.jsonl"
    code, _, err = run(capsys, "batch", "openai:gpt-4o-mini", str(missing), "--out", str(tmp_path / "o.jsonl"),
                       "--config", str(config), "--job-store", str(tmp_path / "jobs.sqlite3"))
    assert code == 2
    assert one_line(err) == f"forge batch: input file {missing} does not exist; check the path."
    assert emu.requests == []


def test_a_directory_as_input_is_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str], config: Path, tmp_path: Path
) -> None:
    code, _, err = run(capsys, "batch", "openai:gpt-4o-mini", str(tmp_path), "--out", str(tmp_path / "o.jsonl"),
                       "--config", str(config), "--job-store", str(tmp_path / "jobs.sqlite3"))
    assert code == 2
    assert one_line(err) == f"forge batch: {tmp_path} is a directory; give a JSONL file as INPUT."


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root reads any file")
def test_an_unreadable_input_file_is_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str], config: Path, source: Path, tmp_path: Path
) -> None:
    source.chmod(0)
    code, _, err = run(capsys, "batch", "openai:gpt-4o-mini", str(source), "--out", str(tmp_path / "o.jsonl"),
                       "--config", str(config), "--job-store", str(tmp_path / "jobs.sqlite3"))
    assert code == 2
    assert one_line(err) == f"forge batch: cannot read {source} (permission denied); make it readable (chmod +r)."


def test_a_non_utf8_input_file_is_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str], config: Path, tmp_path: Path, emu: EmulatorThread
) -> None:
    latin = tmp_path / "latin1.jsonl"
    latin.write_bytes(json.dumps({"prompt": "café"}, ensure_ascii=False).encode("latin-1") + b"\n")
    code, _, err = run(capsys, "batch", "openai:gpt-4o-mini", str(latin), "--out", str(tmp_path / "o.jsonl"),
                       "--config", str(config), "--job-store", str(tmp_path / "jobs.sqlite3"))
    assert code == 2
    assert one_line(err) == (
        f"forge batch: {latin} is not UTF-8 text (invalid continuation byte at byte 15); "
        "save it as UTF-8 (e.g. iconv -t UTF-8)."
    )
    assert emu.requests == []


@pytest.mark.parametrize("mode", ["batch_api", "concurrent"])
def test_an_out_path_in_a_missing_directory_fails_before_anything_is_sent(
    capsys: pytest.CaptureFixture[str], config: Path, source: Path, tmp_path: Path, emu: EmulatorThread,
    mode: str,
) -> None:
    target = tmp_path / "missing" / "out.jsonl"
    code, _, err = run(capsys, "batch", "openai:gpt-4o-mini", str(source), "--out", str(target), "--mode", mode,
                       "--config", str(config), "--job-store", str(tmp_path / "jobs.sqlite3"))
    assert code == 2
    assert one_line(err) == (
        f"forge batch: --out {target}: directory {target.parent} does not exist; create it "
        f"(mkdir -p {target.parent}) or write elsewhere."
    )
    assert emu.requests == []  # nothing submitted, nothing paid for


def test_a_directory_as_out_fails_before_anything_is_sent(
    capsys: pytest.CaptureFixture[str], config: Path, source: Path, tmp_path: Path, emu: EmulatorThread
) -> None:
    code, _, err = run(capsys, "batch", "openai:gpt-4o-mini", str(source), "--out", str(tmp_path),
                       "--config", str(config), "--job-store", str(tmp_path / "jobs.sqlite3"))
    assert code == 2
    assert one_line(err) == f"forge batch: --out {tmp_path} is a directory; give a file path inside it."
    assert emu.requests == []


def _fail_writing(monkeypatch: pytest.MonkeyPatch, target: Path) -> None:
    """The out directory vanishes while the batch runs: writing ``target`` fails like it would."""
    real = batch_cli._write_results

    def write(path: str, results: list[batch_cli.BatchResult]) -> None:
        if path == str(target):
            raise FileNotFoundError(2, "No such file or directory", f"{target}.tmp")
        real(path, results)

    monkeypatch.setattr(batch_cli, "_write_results", write)


def test_batch_api_results_that_cannot_be_written_say_how_to_resume(
    capsys: pytest.CaptureFixture[str], config: Path, source: Path, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    target = tmp_path / "out.jsonl"
    store = tmp_path / "jobs.sqlite3"
    _fail_writing(monkeypatch, target)
    code, printed, err = run(capsys, "batch", "openai:gpt-4o-mini", str(source), "--out", str(target),
                             "--mode", "batch_api", "--config", str(config), "--job-store", str(store))
    assert code == 1
    job_id = printed.split("submitted job ", 1)[1].split()[0]
    assert one_line(err) == (
        f"forge batch: cannot write {target} (No such file or directory); the results are kept in the job "
        f"store: get them with forge batch --resume {job_id} --out <a writable path>."
    )
    assert not Path(f"{target}.tmp").exists()
    monkeypatch.undo()
    code, _, _ = run(capsys, "batch", "--resume", job_id, "--out", str(target), "--config", str(config),
                     "--job-store", str(store))
    assert code == 0
    assert len(target.read_text().splitlines()) == 2


def test_concurrent_results_that_cannot_be_written_are_saved_elsewhere(
    capsys: pytest.CaptureFixture[str], config: Path, source: Path, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    target = tmp_path / "out.jsonl"
    _fail_writing(monkeypatch, target)
    code, _, err = run(capsys, "batch", "openai:gpt-4o-mini", str(source), "--out", str(target),
                       "--mode", "concurrent", "--config", str(config),
                       "--job-store", str(tmp_path / "jobs.sqlite3"))
    assert code == 1
    line = one_line(err)
    prefix = f"forge batch: cannot write {target} (No such file or directory); the results are saved in "
    assert line.startswith(prefix) and line.endswith(" instead.")
    spare = Path(line[len(prefix):-len(" instead.")])
    try:
        results = [json.loads(x) for x in spare.read_text().splitlines()]
        assert [r["index"] for r in results] == [0, 1]
        assert str(results[1]["text"]).endswith("You said: two")
    finally:
        spare.unlink()


def test_timeout_needs_concurrent_mode_in_batch(
    capsys: pytest.CaptureFixture[str], config: Path, source: Path, tmp_path: Path, emu: EmulatorThread
) -> None:
    code, _, err = run(capsys, "batch", "openai:gpt-4o-mini", str(source), "--out", str(tmp_path / "o.jsonl"),
                       "--mode", "batch_api", "--timeout", "5", "--config", str(config),
                       "--job-store", str(tmp_path / "jobs.sqlite3"))
    assert code == 2
    assert one_line(err) == (
        "forge batch: --timeout and --max-attempts apply to concurrent mode; add --mode concurrent, "
        "or bound a provider batch with --max-wait."
    )
    assert emu.requests == []


def test_a_port_in_use_is_one_line_and_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, _, err = run(capsys, "emulator", "--port", str(port))
    assert code == 2
    assert one_line(err) == (
        f"forge emulator: port {port} on 127.0.0.1 is already in use; pick another with --port "
        "(or --port 0 for any free port)."
    )


def test_the_printed_emulator_config_can_be_pasted(
    capsys: pytest.CaptureFixture[str], emu: EmulatorThread, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for var in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GEMINI_API_KEY", "GOOGLE_API_KEY"):
        monkeypatch.delenv(var, raising=False)
    pasted = tmp_path / "forge.toml"
    pasted.write_text(config_toml(emu.config()))
    for model in ("openai:gpt-4o-mini", "anthropic:claude-haiku-4-5", "google:gemini-2.5-flash",
                  "ollama:llama3.2"):
        code, printed, err = run(capsys, "invoke", model, "hi", "--config", str(pasted))
        assert (code, err) == (0, ""), err
        assert "You said: hi" in printed


@pytest.mark.parametrize("content", ["[1, 2]", '"text"', "3", '{"models": {"openai:x": 1}}'])
def test_metrics_of_a_json_file_that_is_no_snapshot_is_one_line_exit_2(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, content: str
) -> None:
    snap = tmp_path / "snap.json"
    snap.write_text(content)
    code, _, err = run(capsys, "metrics", str(snap))
    assert code == 2
    assert err.startswith(f"forge metrics: cannot read {snap}: not a forge metrics snapshot")
    assert "Traceback" not in err


def test_resuming_an_unknown_job_is_one_line_exit_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    store = tmp_path / "jobs.sqlite3"
    code, _, err = run(capsys, "batch", "--resume", "fj_nope", "--out", str(tmp_path / "o.jsonl"),
                       "--job-store", str(store))
    assert code == 2
    assert one_line(err).startswith("forge batch: no job 'fj_nope' in the job store")
    assert "--job-store" in err
