"""What every request decoder does with hostile input: bounded work, and a 400 with a message, never a 5xx.

- `load_json`: `json.loads` with the bounds JSON itself lacks. Numbers of more than `MAX_NUMBER_DIGITS`
  digits, infinite numbers (`1e999`) and the non-standard `NaN`/`Infinity` are refused; so is nesting
  deeper than the interpreter's recursion limit allows (1,000 levels by default, 20,000 once TraceQL
  has raised it; no span format nests deeper than a few dozen). Strings (keys included) with a lone
  UTF-16 surrogate (`"\ud800"`) are refused: they cannot be encoded as UTF-8, and protobuf fails on
  them in ways that are not all exceptions it documents (a key with one raises SystemError inside
  json_format).
- `refuse_bad_input`: a decorator for a pure decoder (bytes in, OTLP request out). The value errors that
  only the input can cause -- an integer out of a protobuf field's range, a string with a lone UTF-16
  surrogate that protobuf cannot encode, recursion too deep -- become `InvalidRequest` naming the
  protocol, instead of escaping as a 500. Type and key errors are not caught: the decoders check
  types and keys themselves, and anything else is a bug that must stay visible.
"""

from __future__ import annotations

import functools
import json
import math
import re
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

from tempo_lite.errors import InvalidRequest

# uint64 has 20 digits; a few more leave room for leading zeros and exponents' mantissas in the wild.
MAX_NUMBER_DIGITS = 32

# A \u escape of a UTF-16 surrogate; only bodies containing one need their strings checked.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")

_P = ParamSpec("_P")
_R = TypeVar("_R")


def _parse_int(text: str) -> int:
    digits = len(text) - text.startswith("-")
    if digits > MAX_NUMBER_DIGITS:
        raise ValueError(f"a number of {digits} digits is out of range")
    return int(text)


def _parse_float(text: str) -> float:
    if len(text) > 4 * MAX_NUMBER_DIGITS:
        raise ValueError(f"a number of {len(text)} characters is out of range")
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text} is out of range")
    return value


def _parse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def load_json(body: bytes | str, what: str) -> Any:
    """Parse a JSON request body; `InvalidRequest` (naming `what`) for anything that is not bounded JSON."""
    try:
        # UTF-8 only, as OTLP/JSON and Zipkin specify (json.loads would also take UTF-16 and UTF-32,
        # which can carry raw lone surrogates past the escape check below).
        text = body if isinstance(body, str) else body.decode("utf-8-sig")
        doc = json.loads(text, parse_int=_parse_int, parse_float=_parse_float, parse_constant=_parse_constant)
    except RecursionError:
        raise InvalidRequest(f"{what}: body is not valid JSON: nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors too
        raise InvalidRequest(f"{what}: body is not valid JSON: {exc}") from None
    if _SURROGATE_ESCAPE.search(text):
        bad = _lone_surrogate(doc)
        if bad is not None:
            raise InvalidRequest(f"{what}: string {bad!r} holds an unpaired UTF-16 surrogate")
    return doc


def _lone_surrogate(doc: Any) -> str | None:
    """The first string (key or value) that cannot be encoded as UTF-8, or None."""
    stack = [doc]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            strings: list[str] = [item]
        elif isinstance(item, dict):
            strings = list(item)
            stack.extend(item.values())
        elif isinstance(item, list):
            strings = []
            stack.extend(item)
        else:
            continue
        for s in strings:
            try:
                s.encode("utf-8")
            except UnicodeEncodeError:
                return s[:40]
    return None


def refuse_bad_input(what: str) -> Callable[[Callable[_P, _R]], Callable[_P, _R]]:
    """Turn input-caused ValueError/OverflowError/RecursionError of a pure decoder into `InvalidRequest`."""

    def decorate(decoder: Callable[_P, _R]) -> Callable[_P, _R]:
        @functools.wraps(decoder)
        def guarded(*args: _P.args, **kwargs: _P.kwargs) -> _R:
            try:
                return decoder(*args, **kwargs)
            except InvalidRequest:
                raise
            except RecursionError:
                raise InvalidRequest(f"{what}: request nested too deeply") from None
            except (ValueError, OverflowError) as exc:
                raise InvalidRequest(f"{what}: {exc}") from None

        return guarded

    return decorate
