"""TraceQL literals decoded the way Tempo's lexer does: durations (Prometheus `model.ParseDuration` first,
then Go `time.ParseDuration`), int64 integers, Go string escapes (`strconv.Unquote`, backtick raw strings)
and quoted attribute-name segments. Pure functions, no I/O.
"""

from __future__ import annotations

import re
from fractions import Fraction

from tempo_lite.traceql.nodes import INT64_MAX

_INT64_DIGITS = len(str(INT64_MAX))

# --------------------------------------------------------------------------------------------------
# Durations (Prometheus model.ParseDuration, then Go time.ParseDuration)

_PROM_DURATION = re.compile(
    r"(?:([0-9]+)y)?(?:([0-9]+)w)?(?:([0-9]+)d)?(?:([0-9]+)h)?(?:([0-9]+)m)?(?:([0-9]+)s)?(?:([0-9]+)ms)?"
)
_PROM_UNITS_NS = (
    365 * 24 * 3600 * 10**9,
    7 * 24 * 3600 * 10**9,
    24 * 3600 * 10**9,
    3600 * 10**9,
    60 * 10**9,
    10**9,
    10**6,
)
_GO_UNITS_NS = {
    "ns": 1,
    "us": 10**3,
    "\u00b5s": 10**3,
    "\u03bcs": 10**3,
    "ms": 10**6,
    "s": 10**9,
    "m": 60 * 10**9,
    "h": 3600 * 10**9,
}
_GO_DURATION_PART = re.compile(r"([0-9]*)(?:\.([0-9]*))?([^0-9.]+)")


def parse_duration(text: str) -> int | None:
    """Nanoseconds of a TraceQL duration literal, or None if it is not one (`1.5d`, `1x`)."""
    if text == "0":
        return 0
    if text and _PROM_DURATION.fullmatch(text):
        return parse_prom_duration(text)
    return parse_go_duration(text)


def parse_prom_duration(text: str) -> int | None:
    """Nanoseconds of a Prometheus duration (`model.ParseDuration`: `1h30m`, `2d`, `1w`, `100ms`, whole
    numbers only), or None if `text` is not one or passes int64."""
    m = _PROM_DURATION.fullmatch(text)
    if not m or not text:
        return None
    parts = [(int64_or_none(v), unit) for v, unit in zip(m.groups(), _PROM_UNITS_NS, strict=True) if v]
    if any(v is None for v, _ in parts):
        return None
    total = sum(v * unit for v, unit in parts if v is not None)
    return total if total <= INT64_MAX else None


# Digits of a fraction past this many cannot change a duration's nanoseconds (the largest unit is 3.6e12 ns).
_FRACTION_DIGITS = 30


def int64_or_none(digits: str) -> int | None:
    """The value of a run of decimal digits, or None past int64.

    The length is checked before `int()` parses it: Python refuses more than 4,300 digits with a
    ValueError, and a 5,000-digit literal must be a query error (400), not a server error.
    """
    significant = digits.lstrip("0")
    if len(significant) > _INT64_DIGITS:
        return None
    value = int(significant or "0")
    return value if value <= INT64_MAX else None


def parse_go_duration(text: str) -> int | None:
    """Nanoseconds of a Go duration (`time.ParseDuration`: `1h30m`, `1.5s`, `300us`; fractions truncated to
    the nanosecond), or None if `text` is not one (empty, a bad unit) or passes int64."""
    if not text:
        return None
    pos = 0
    total = Fraction(0)
    while pos < len(text):
        m = _GO_DURATION_PART.match(text, pos)
        if not m:
            return None
        whole, frac, unit = m.groups()
        if not whole and not frac:
            return None
        scale = _GO_UNITS_NS.get(unit)
        if scale is None:
            return None
        whole_value = int64_or_none(whole or "0")
        if whole_value is None:
            return None
        value = Fraction(whole_value)
        frac = (frac or "")[:_FRACTION_DIGITS]
        if frac:
            value += Fraction(int(frac), 10 ** len(frac))
        total += value * scale
        pos = m.end()
    result = int(total)  # Go truncates fractional nanoseconds
    return result if result <= INT64_MAX else None


# --------------------------------------------------------------------------------------------------
# Strings

_GO_SIMPLE_ESCAPES = {
    "a": 0x07,
    "b": 0x08,
    "f": 0x0C,
    "n": 0x0A,
    "r": 0x0D,
    "t": 0x09,
    "v": 0x0B,
    "\\": 0x5C,
    '"': 0x22,
}


def unquote_go_string(literal: str) -> str:
    """Decode a Go double-quoted (`strconv.Unquote`) or backtick raw string literal.

    Raises ValueError naming the bad escape. Byte escapes (`\\xNN`, octal) that do not form UTF-8
    are kept as surrogate escapes, so they never equal a valid attribute value.
    """
    if literal.startswith("`"):
        return literal[1:-1].replace("\r", "")
    body = literal[1:-1]
    out = bytearray()
    i = 0
    n = len(body)
    while i < n:
        ch = body[i]
        if ch != "\\":
            out += ch.encode("utf-8", "surrogateescape")
            i += 1
            continue
        if i + 1 >= n:
            raise ValueError("invalid escape at end of string")
        esc = body[i + 1]
        if esc in _GO_SIMPLE_ESCAPES:
            out.append(_GO_SIMPLE_ESCAPES[esc])
            i += 2
        elif esc == "x":
            digits = body[i + 2 : i + 4]
            if not re.fullmatch(r"[0-9a-fA-F]{2}", digits):
                raise ValueError(f"invalid escape \\x{digits}")
            out.append(int(digits, 16))
            i += 4
        elif esc in "uU":
            width = 4 if esc == "u" else 8
            digits = body[i + 2 : i + 2 + width]
            if not re.fullmatch(rf"[0-9a-fA-F]{{{width}}}", digits):
                raise ValueError(f"invalid escape \\{esc}{digits}")
            code = int(digits, 16)
            if code > 0x10FFFF or 0xD800 <= code <= 0xDFFF:
                raise ValueError(f"invalid Unicode code point \\{esc}{digits}")
            out += chr(code).encode("utf-8")
            i += 2 + width
        elif esc in "01234567":
            digits = body[i + 1 : i + 4]
            if not re.fullmatch(r"[0-7]{3}", digits) or int(digits, 8) > 255:
                raise ValueError(f"invalid octal escape \\{digits}")
            out.append(int(digits, 8))
            i += 4
        else:
            raise ValueError(f"invalid escape \\{esc}")
    return out.decode("utf-8", "surrogateescape")


def decode_attribute_name(raw: str) -> str:
    """Join unquoted and double-quoted segments of an attribute name; quotes allow `\\"` and `\\\\`."""
    out: list[str] = []
    i = 0
    while i < len(raw):
        if raw[i] != '"':
            j = raw.find('"', i)
            j = len(raw) if j < 0 else j
            out.append(raw[i:j])
            i = j
            continue
        i += 1
        while raw[i] != '"':
            if raw[i] == "\\":
                if raw[i + 1] not in '"\\':
                    raise ValueError(f"invalid escape \\{raw[i + 1]} in quoted attribute name")
                out.append(raw[i + 1])
                i += 2
            else:
                out.append(raw[i])
                i += 1
        i += 1
    return "".join(out)
