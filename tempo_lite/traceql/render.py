"""Canonical TraceQL text of AST nodes, as Tempo prints them (Go `String()` forms): result attribute keys
such as `count()` or `by(.a)`, metric labels such as `resource.service.name`, durations and floats as Go
formats them.
"""

from __future__ import annotations

import math
from decimal import Decimal

from tempo_lite.traceql.nodes import (
    Aggregate,
    Attribute,
    AttributeRef,
    BinaryOp,
    BottomK,
    Coalesce,
    GroupBy,
    Intrinsic,
    MetricsAggregate,
    MetricsFilter,
    MetricsOp,
    Pipeline,
    Query,
    ScalarFilter,
    ScalarOperation,
    ScalarPipeline,
    Select,
    SpansetFilter,
    SpansetOperation,
    Static,
    StaticType,
    TopK,
    UnaryOp,
)


def format_duration(ns: int) -> str:
    """Go `time.Duration.String()`: `1h30m0s`, `1.5s`, `100ms`, `1.5µs`, `0s`."""
    if ns == 0:
        return "0s"
    sign = "-" if ns < 0 else ""
    u = abs(ns)
    if u < 1_000:
        return f"{sign}{u}ns"
    if u < 1_000_000:
        return f"{sign}{_fraction(u, 1_000, 3)}µs"
    if u < 1_000_000_000:
        return f"{sign}{_fraction(u, 1_000_000, 6)}ms"
    secs, nanos = divmod(u, 1_000_000_000)
    hours, rem = divmod(secs, 3600)
    minutes, seconds = divmod(rem, 60)
    out = ""
    if hours:
        out += f"{hours}h"
    if hours or minutes:
        out += f"{minutes}m"
    out += _fraction(seconds * 1_000_000_000 + nanos, 1_000_000_000, 9) + "s"
    return sign + out


def _fraction(value: int, unit: int, digits: int) -> str:
    whole, frac = divmod(value, unit)
    if not frac:
        return str(whole)
    return f"{whole}." + f"{frac:0{digits}d}".rstrip("0")


def format_float(f: float) -> str:
    """Go `strconv.FormatFloat(f, 'g', -1, 64)`: shortest repr, exponent form below 1e-4 or >= 1e21."""
    if math.isnan(f):
        return "NaN"
    if math.isinf(f):
        return "+Inf" if f > 0 else "-Inf"
    if f == 0:
        return "-0" if math.copysign(1.0, f) < 0 else "0"
    sign, digit_tuple, exponent = Decimal(repr(f)).as_tuple()
    digits = "".join(map(str, digit_tuple)).rstrip("0") or "0"
    assert isinstance(exponent, int)
    # decimal point position relative to the start of `digits`
    dp = len(digit_tuple) + exponent
    exp = dp - 1
    prefix = "-" if sign else ""
    if exp < -4 or exp >= 21:
        mantissa = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        return f"{prefix}{mantissa}e{'-' if exp < 0 else '+'}{abs(exp):02d}"
    if dp <= 0:
        return f"{prefix}0." + "0" * (-dp) + digits
    if dp >= len(digits):
        return prefix + digits + "0" * (dp - len(digits))
    return f"{prefix}{digits[:dp]}.{digits[dp:]}"


def quote_string(s: str) -> str:
    """A TraceQL (Go) double-quoted string literal for `s`."""
    out = ['"']
    for ch in s:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\r":
            out.append("\\r")
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def render_static(s: Static) -> str:
    if s.type is StaticType.NIL:
        return "nil"
    if s.type is StaticType.BOOL:
        return "true" if s.value else "false"
    if s.type is StaticType.INT:
        return str(s.value)
    if s.type is StaticType.FLOAT:
        return format_float(float(s.value))  # type: ignore[arg-type]
    if s.type is StaticType.DURATION:
        return format_duration(int(s.value))  # type: ignore[arg-type]
    if s.type is StaticType.STRING:
        return quote_string(str(s.value))
    if s.type in (StaticType.STATUS, StaticType.KIND):
        return s.value.text  # type: ignore[union-attr]
    raise TypeError(f"cannot render static of type {s.type}")


def _wrap(e: object) -> str:
    if isinstance(e, (Static, Attribute, Intrinsic, Aggregate, ScalarPipeline)):
        return render(e)
    return "(" + render(e) + ")"


def render(node: object) -> str:
    """Canonical TraceQL text of a node, as Tempo prints it (`Element.String()` in Go).

    Attributes: `.foo`, `span.foo`, `resource.service.name`, `parent.span.foo`; intrinsics: their
    canonical name (`name`, `rootServiceName`, `trace:id`); aggregates `count()`, `avg(duration)`;
    groups `by(resource.service.name)`; binary operators wrap non-leaf operands in parentheses.
    """
    if isinstance(node, Static):
        return render_static(node)
    if isinstance(node, Intrinsic):
        return node.value
    if isinstance(node, Attribute):
        return node.canonical
    if isinstance(node, (BinaryOp, ScalarOperation, ScalarFilter)):
        return f"{_wrap(node.lhs)} {node.op.value} {_wrap(node.rhs)}"
    if isinstance(node, UnaryOp):
        return node.op.value + _wrap(node.operand)
    if isinstance(node, Aggregate):
        return f"{node.op.value}({render(node.expr) if node.expr is not None else ''})"
    if isinstance(node, GroupBy):
        return f"by({render(node.expr)})"
    if isinstance(node, Coalesce):
        return "coalesce()"
    if isinstance(node, Select):
        return "select(" + ", ".join(render(a) for a in node.attributes) + ")"
    if isinstance(node, SpansetFilter):
        if node.expr == Static(StaticType.BOOL, True):
            return "{ true }"
        return "{ " + render(node.expr) + " }"
    if isinstance(node, SpansetOperation):
        return f"({render(node.lhs)}) {node.op.value} ({render(node.rhs)})"
    if isinstance(node, Pipeline):
        return " | ".join(render(s) for s in node.stages)
    if isinstance(node, ScalarPipeline):
        return f"({render(node.pipeline)} | {render(node.aggregate)})"
    if isinstance(node, MetricsAggregate):
        return _render_metrics(node)
    if isinstance(node, TopK):
        return f"topk({node.k})"
    if isinstance(node, BottomK):
        return f"bottomk({node.k})"
    if isinstance(node, MetricsFilter):
        return f"{node.op.value} {render_static(node.value)}"
    if isinstance(node, Query):
        text = render(node.pipeline)
        if node.metrics is not None:
            text += " | " + render(node.metrics)
        for st in node.second_stage:
            text += (" " if isinstance(st, MetricsFilter) else " | ") + render(st)
        if node.hints:
            text += " with(" + ", ".join(f"{k}={render_static(v)}" for k, v in node.hints.items()) + ")"
        return text
    raise TypeError(f"cannot render {node!r}")


def _render_metrics(m: MetricsAggregate) -> str:
    if m.op is MetricsOp.COMPARE:
        assert m.compare_filter is not None
        args = [render(m.compare_filter), str(m.top_n)]
        if m.start_ns or m.end_ns:
            args += [str(m.start_ns), str(m.end_ns)]
        text = f"compare({', '.join(args)})"
    else:
        args = [render(m.attribute)] if m.attribute is not None else []
        args += [format_float(q) for q in m.quantiles]
        text = f"{m.op.value}({', '.join(args)})"
    if m.by:
        text += " by (" + ", ".join(render(b) for b in m.by) + ")"
    return text


def result_key(ref: AttributeRef) -> str:
    """Key of a fetched field in search results: attribute name without scope, intrinsic short name."""
    return ref.name if isinstance(ref, Attribute) else ref.value
