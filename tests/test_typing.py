"""The call parameters are typed: mypy --strict flags a misspelt or mistyped keyword before the code runs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

api = pytest.importorskip("mypy.api")

MISTAKES = Path(__file__).parent / "typing" / "mistakes.py"


def test_mypy_flags_every_deliberate_mistake_and_nothing_else() -> None:
    out, err, status = api.run(
        ["--strict", "--no-incremental", "--cache-dir", "/dev/null", "--show-error-codes", str(MISTAKES)]
    )
    assert status == 1, out + err
    errors = {
        int(m.group(1)): m.group(2)
        for m in re.finditer(r"^.*mistakes\.py:(\d+): error: (.*)$", out, re.MULTILINE)
    }
    assert set(errors) == {10, 11, 12, 13, 14, 15, 16}, out
    assert 'Unexpected keyword argument "temprature"' in errors[10]
    assert 'Argument "max_tokens"' in errors[11] and '"str"' in errors[11]
    assert 'Unexpected keyword argument "first_token_timout"' in errors[12]
    assert 'Argument "reasoning_effort"' in errors[13]
    assert 'Argument "max_attempts"' in errors[14]
    assert 'Unexpected keyword argument "timeout"' in errors[15]
    assert 'Argument "stop"' in errors[16]
