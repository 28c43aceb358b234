"""The sampling parameters chatweb accepts, as data, and their validation."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

ParamType = Literal["number", "integer", "string", "stop", "logit_bias"]

MAX_STOP = 4  # stop sequences, as OpenAI allows
LOGIT_BIAS_LIMIT = 100


@dataclass(frozen=True, slots=True)
class ParamSpec:
    """One parameter: its JSON type, its range (None = unbounded) and a one-line help text."""

    name: str
    type: ParamType
    help: str
    min: float | None = None
    max: float | None = None
    min_inclusive: bool = True
    max_inclusive: bool = True
    default: Any = None  # None: not sent, the provider's own default applies


def _specs(*specs: ParamSpec) -> dict[str, ParamSpec]:
    return {spec.name: spec for spec in specs}


PARAM_SPECS: dict[str, ParamSpec] = _specs(
    ParamSpec("temperature", "number", "Randomness: 0 is focused and repeatable, 2 is wild.", 0, 2),
    ParamSpec(
        "top_p",
        "number",
        "Nucleus sampling: keep the likeliest tokens up to this mass.",
        0,
        1,
        min_inclusive=False,
    ),
    ParamSpec("min_p", "number", "Drop tokens less likely than this share of the top token; 0 is off.", 0, 1),
    ParamSpec(
        "top_k", "integer", "Sample from the k likeliest tokens; 0 is off.", 0, 1000, max_inclusive=False
    ),
    ParamSpec("max_tokens", "integer", "The longest reply, in tokens.", 1, None),
    ParamSpec("presence_penalty", "number", "Positive values push towards new topics.", -2, 2),
    ParamSpec("frequency_penalty", "number", "Positive values discourage repeating the same words.", -2, 2),
    ParamSpec("repetition_penalty", "number", "Multiplicative: above 1 discourages repeats.", 0.01, 5),
    ParamSpec("stop", "stop", f"A string, or up to {MAX_STOP} strings, that end the reply."),
    ParamSpec(
        "seed",
        "integer",
        "Makes sampling repeatable where the provider supports it.",
        -(2**63),
        2**63,
        max_inclusive=False,
    ),
    ParamSpec(
        "logit_bias",
        "logit_bias",
        f"Token id → bias from -{LOGIT_BIAS_LIMIT} (ban) to {LOGIT_BIAS_LIMIT} (force).",
        -LOGIT_BIAS_LIMIT,
        LOGIT_BIAS_LIMIT,
    ),
    ParamSpec("user", "string", "An opaque id of the end user, for the provider's abuse monitoring."),
    ParamSpec("n", "integer", "How many alternative replies to generate.", 1, 8),
)


class ParamError(ValueError):
    """A parameter that chatweb will not send; `param` names it, the message says what is allowed."""

    def __init__(self, param: str, message: str) -> None:
        super().__init__(message)
        self.param = param


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() and abs(x) < 2**53 else str(x)


def range_text(spec: ParamSpec) -> str:
    """The allowed range in words: "between 0 and 2", "greater than 0 and at most 1", "at least 1"."""
    lo, hi = spec.min, spec.max
    lo_in, hi_in = spec.min_inclusive, spec.max_inclusive
    if spec.type == "integer":  # [0, 1000) reads better as "between 0 and 999"
        if lo is not None and not lo_in:
            lo, lo_in = math.floor(lo) + 1, True
        if hi is not None and not hi_in:
            hi, hi_in = math.ceil(hi) - 1, True
    if lo is not None and hi is not None and lo_in and hi_in:
        return f"between {_num(lo)} and {_num(hi)}"
    parts = []
    if lo is not None:
        parts.append(f"at least {_num(lo)}" if lo_in else f"greater than {_num(lo)}")
    if hi is not None:
        parts.append(f"at most {_num(hi)}" if hi_in else f"less than {_num(hi)}")
    return " and ".join(parts)


def _in_range(spec: ParamSpec, value: float) -> bool:
    if spec.min is not None and (value < spec.min or (value == spec.min and not spec.min_inclusive)):
        return False
    return spec.max is None or not (value > spec.max or (value == spec.max and not spec.max_inclusive))


def _number(spec: ParamSpec, value: object, name: str | None = None) -> int | float:
    name = name or spec.name
    kind = "an integer" if spec.type == "integer" else "a number"
    bounds = range_text(spec)
    wanted = f"{name} must be {kind}" + (f" {bounds}" if bounds else "")
    # bool is an int in Python, but `true` for a temperature is a mistake, not 1.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ParamError(spec.name, f"{wanted} (got {type(value).__name__})")
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ParamError(spec.name, f"{wanted} (got {value})")
        if spec.type == "integer":
            if not value.is_integer():
                raise ParamError(spec.name, f"{wanted} (got {value})")
            value = int(value)  # 256.0 from a JSON encoder is 256
    if not _in_range(spec, value):
        raise ParamError(spec.name, f"{wanted} (got {value})")
    return value


def _stop(spec: ParamSpec, value: object) -> str | list[str]:
    wanted = f"stop must be a non-empty string or a list of up to {MAX_STOP} non-empty strings"
    if isinstance(value, str):
        if not value:
            raise ParamError(spec.name, wanted)
        return value
    if not isinstance(value, list | tuple) or len(value) > MAX_STOP:
        raise ParamError(spec.name, wanted)
    if not all(isinstance(s, str) and s for s in value):
        raise ParamError(spec.name, wanted)
    return list(value)


def _logit_bias(spec: ParamSpec, value: object) -> dict[str, int | float]:
    wanted = f"logit_bias must map token ids to numbers {range_text(spec)}"
    if not isinstance(value, Mapping):
        raise ParamError(spec.name, f"{wanted} (got {type(value).__name__})")
    cleaned: dict[str, int | float] = {}
    for key, bias in value.items():
        token = str(key) if type(key) is int else key
        if not isinstance(token, str) or not token.isascii() or not token.isdigit():
            raise ParamError(spec.name, f"{wanted}; {key!r} is not a token id")
        cleaned[str(int(token))] = _number(spec, bias, f"logit_bias[{token}]")
    return cleaned


def validate_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """A cleaned copy of `params`, or ParamError for the first bad one. None means "not set" and is
    dropped; integral floats become ints for integer parameters; logit_bias keys become strings."""
    cleaned: dict[str, Any] = {}
    for name, value in params.items():
        spec = PARAM_SPECS.get(name)
        if spec is None:
            raise ParamError(str(name), f"unknown parameter {name}")
        if value is None:
            continue
        if spec.type in ("number", "integer"):
            cleaned[name] = _number(spec, value)
        elif spec.type == "stop":
            cleaned[name] = _stop(spec, value)
        elif spec.type == "logit_bias":
            cleaned[name] = _logit_bias(spec, value)
        else:
            if not isinstance(value, str):
                raise ParamError(name, f"{name} must be a string (got {type(value).__name__})")
            cleaned[name] = value
    return cleaned


def drop_unsupported(params: Mapping[str, Any], dropped: Iterable[str]) -> dict[str, Any]:
    """A copy of `params` without the names a provider rejects (a per-provider setting)."""
    skip = set(dropped)
    return {name: value for name, value in params.items() if name not in skip}
