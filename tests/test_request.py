"""build_request's table of per-parameter validators (forge/_request.py)."""

from __future__ import annotations

import typing

import pytest

from forge import _request
from forge._params import RequestParams
from forge.llm import build_request


def test_every_request_parameter_has_exactly_one_validator() -> None:
    declared = set(typing.get_type_hints(RequestParams))
    assert set(_request._VALIDATORS) == declared
    assert set(_request._REQUEST_PARAMS) == declared


def test_unknown_parameter_error_lists_the_allowed_ones_in_documented_order() -> None:
    with pytest.raises(TypeError) as info:
        build_request("m", "hi", temprature=0.2)  # type: ignore[call-arg]
    assert f"Allowed: {', '.join(_request._REQUEST_PARAMS)};" in str(info.value)


def test_several_bad_parameters_report_the_first_in_table_order() -> None:
    # max_tokens is checked before temperature, as before the table existed.
    with pytest.raises(ValueError, match="max_tokens must be a positive int"):
        build_request("m", "hi", temperature=9.0, max_tokens=0)


def test_a_tool_choice_is_checked_against_the_tools_of_the_same_call() -> None:
    tool = {"name": "lookup", "parameters": {"type": "object", "properties": {}}}
    assert build_request("m", "hi", tools=[tool], tool_choice="lookup").tool_choice == "lookup"
    with pytest.raises(ValueError, match=r"one of the tools \(lookup\)"):
        build_request("m", "hi", tools=[tool], tool_choice="search")
