"""Sampling parameters: the specs as data, validation messages, dropping what a provider rejects."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from conversations.upstream.params import PARAM_SPECS, ParamError, drop_unsupported, validate_params


def test_the_accepted_parameters() -> None:
    assert sorted(PARAM_SPECS) == sorted(
        [
            "temperature", "top_p", "min_p", "top_k", "max_tokens", "presence_penalty", "frequency_penalty",
            "repetition_penalty", "stop", "seed", "logit_bias", "user", "n",
        ]
    )  # fmt: skip
    for name, spec in PARAM_SPECS.items():
        assert spec.name == name and spec.default is None
        assert spec.help and "\n" not in spec.help


@pytest.mark.parametrize(
    "params",
    [
        {"temperature": 0},
        {"temperature": 2},
        {"temperature": 0.7},
        {"top_p": 1},
        {"top_p": 1e-9},
        {"min_p": 0},
        {"min_p": 1.0},
        {"top_k": 0},
        {"top_k": 999},
        {"max_tokens": 1},
        {"max_tokens": 1_000_000},
        {"presence_penalty": -2},
        {"frequency_penalty": 2},
        {"repetition_penalty": 0.01},
        {"repetition_penalty": 5},
        {"stop": "END"},
        {"stop": ["a", "b", "c", "d"]},
        {"stop": []},
        {"seed": 0},
        {"seed": -(2**63)},
        {"seed": 2**63 - 1},
        {"logit_bias": {"50256": -100, "11": 100, "7": 0.5}},
        {"logit_bias": {}},
        {"user": "hashed-user-7"},
        {"n": 1},
        {"n": 8},
    ],
)
def test_valid_values_pass_unchanged(params: dict) -> None:
    assert validate_params(params) == params


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"temperature": 2.01}, "temperature must be a number between 0 and 2 (got 2.01)"),
        ({"temperature": -0.1}, "temperature must be a number between 0 and 2 (got -0.1)"),
        ({"temperature": True}, "temperature must be a number between 0 and 2 (got bool)"),
        ({"temperature": "0.7"}, "temperature must be a number between 0 and 2 (got str)"),
        ({"temperature": math.nan}, "temperature must be a number between 0 and 2 (got nan)"),
        ({"temperature": math.inf}, "temperature must be a number between 0 and 2 (got inf)"),
        ({"top_p": 0}, "top_p must be a number greater than 0 and at most 1 (got 0)"),
        ({"top_p": 1.5}, "top_p must be a number greater than 0 and at most 1 (got 1.5)"),
        ({"min_p": 1.1}, "min_p must be a number between 0 and 1 (got 1.1)"),
        ({"top_k": 1000}, "top_k must be an integer between 0 and 999 (got 1000)"),
        ({"top_k": -1}, "top_k must be an integer between 0 and 999 (got -1)"),
        ({"top_k": 4.5}, "top_k must be an integer between 0 and 999 (got 4.5)"),
        ({"max_tokens": 0}, "max_tokens must be an integer at least 1 (got 0)"),
        ({"max_tokens": False}, "max_tokens must be an integer at least 1 (got bool)"),
        ({"presence_penalty": 3}, "presence_penalty must be a number between -2 and 2 (got 3)"),
        ({"frequency_penalty": -2.5}, "frequency_penalty must be a number between -2 and 2 (got -2.5)"),
        ({"repetition_penalty": 0}, "repetition_penalty must be a number between 0.01 and 5 (got 0)"),
        ({"seed": 2**63}, "seed must be an integer between"),
        ({"seed": "42"}, "seed must be an integer between"),
        ({"n": 9}, "n must be an integer between 1 and 8 (got 9)"),
        ({"n": 0}, "n must be an integer between 1 and 8 (got 0)"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop must be a non-empty string or a list of up to 4"),
        ({"stop": ""}, "stop must be a non-empty string"),
        ({"stop": ["a", 1]}, "stop must be a non-empty string"),
        ({"stop": {"a": 1}}, "stop must be a non-empty string"),
        ({"logit_bias": {"50256": 101}}, "logit_bias[50256] must be a number between -100 and 100 (got 101)"),
        (
            {"logit_bias": {"50256": True}},
            "logit_bias[50256] must be a number between -100 and 100 (got bool)",
        ),
        (
            {"logit_bias": {"hello": 1}},
            "logit_bias must map token ids to numbers between -100 and 100; 'hello' is not a token id",
        ),
        (
            {"logit_bias": {"-1": 1}},
            "logit_bias must map token ids to numbers between -100 and 100; '-1' is not a token id",
        ),
        ({"logit_bias": [1, 2]}, "logit_bias must map token ids to numbers between -100 and 100 (got list)"),
        ({"user": 7}, "user must be a string (got int)"),
        ({"temperature": 1, "bogus": 1}, "unknown parameter bogus"),
        ({"max_completion_tokens": 5}, "unknown parameter max_completion_tokens"),
    ],
)
def test_invalid_values_name_the_parameter_and_the_range(params: dict, message: str) -> None:
    with pytest.raises(ParamError) as info:
        validate_params(params)
    assert str(info.value).startswith(message)
    assert info.value.param == next(k for k in params if k != "temperature" or len(params) == 1)
    assert isinstance(info.value, ValueError)


def test_cleaning() -> None:
    params = {"temperature": None, "top_k": 40.0, "max_tokens": 256.0, "stop": ("a",), "logit_bias": {7: 1}}
    assert validate_params(params) == {"top_k": 40, "max_tokens": 256, "stop": ["a"], "logit_bias": {"7": 1}}
    assert type(validate_params({"top_k": 40.0})["top_k"]) is int
    original = {"stop": ["a"]}
    cleaned = validate_params(original)
    cleaned["stop"].append("b")
    assert original == {"stop": ["a"]}  # a copy, never the caller's objects


def test_drop_unsupported() -> None:
    params = {"temperature": 1, "min_p": 0.1, "top_k": 5}
    assert drop_unsupported(params, ["min_p", "top_k", "not_there"]) == {"temperature": 1}
    assert drop_unsupported(params, iter(())) == params
    assert drop_unsupported(params, []) is not params


@given(st.dictionaries(st.sampled_from(sorted(PARAM_SPECS)), st.from_type(object) | st.floats(), max_size=4))
def test_validation_raises_only_param_errors(params: dict) -> None:
    try:
        cleaned = validate_params(params)
    except ParamError as exc:
        assert exc.param in params
    else:
        assert set(cleaned) <= set(params)
