"""The TraceQL abstract syntax tree: frozen dataclasses and enums produced by the parser.

The evaluation engine works on these nodes only. Every node documents what it means; `render()` gives
the canonical Tempo text of a node (result attribute keys such as `count()` or `by(.a)`, metric labels
such as `resource.service.name`), and the static-type helpers at the bottom are shared by the validator
and the engine.

Shape of a query (see `Query`):

    Query(pipeline=Pipeline(stages=(...)), metrics=MetricsAggregate | None, second_stage=(...), hints={})

Field expressions (inside `{ }`, `by()`, aggregates) are `Static`, `Attribute`, `Intrinsic` (the enum
member itself is the leaf node), `BinaryOp` and `UnaryOp`.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from decimal import Decimal

from tempo_lite.errors import InvalidRequest

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1


class TraceQLError(InvalidRequest):
    """A query that cannot be run: HTTP 400.

    `category` is "parse" (syntax, lexical errors, size cap), "validate" (types, regexes, limits) or
    "unsupported" (features Tempo answers with "not yet supported"). `line`/`col` (1-based) locate parse
    errors; they are None for validation errors and for the size cap.
    """

    def __init__(self, category: str, detail: str, line: int | None = None, col: int | None = None) -> None:
        if line is not None and col is not None:
            message = f"invalid TraceQL query: parse error at line {line}, col {col}: {detail}"
        else:
            message = f"invalid TraceQL query: {detail}"
        super().__init__(message)
        self.category = category
        self.detail = detail
        self.line = line
        self.col = col


# --------------------------------------------------------------------------------------------------
# Enums


class StaticType(enum.Enum):
    """Static (parse-time) type of a value or expression. ATTRIBUTE means "unknown until run time"."""

    NIL = "nil"
    INT = "int"
    FLOAT = "float"
    STRING = "string"
    BOOL = "bool"
    DURATION = "duration"
    STATUS = "status"
    KIND = "kind"
    ATTRIBUTE = "attribute"

    @property
    def is_numeric(self) -> bool:
        return self in (StaticType.INT, StaticType.FLOAT, StaticType.DURATION)


class Scope(enum.Enum):
    """Attribute scope prefix. NONE is the unscoped `.foo` (span, then resource)."""

    NONE = ""
    SPAN = "span"
    RESOURCE = "resource"
    EVENT = "event"
    LINK = "link"
    INSTRUMENTATION = "instrumentation"


class Status(enum.Enum):
    """Span status literal. Values are TraceQL's ordinals (error=0, ok=1, unset=2), not OTLP's."""

    ERROR = 0
    OK = 1
    UNSET = 2

    @property
    def otlp_code(self) -> int:
        """OTLP `Status.code`: UNSET=0, OK=1, ERROR=2."""
        return {Status.UNSET: 0, Status.OK: 1, Status.ERROR: 2}[self]

    @property
    def text(self) -> str:
        return self.name.lower()


class Kind(enum.Enum):
    """Span kind literal. Values are OTLP `Span.SpanKind` numbers."""

    UNSPECIFIED = 0
    INTERNAL = 1
    SERVER = 2
    CLIENT = 3
    PRODUCER = 4
    CONSUMER = 5

    @property
    def text(self) -> str:
        return self.name.lower()


class Intrinsic(enum.Enum):
    """Intrinsic fields; the member itself is the AST leaf. Value = canonical text (traceql.md §3.2).

    `span:name` and `name` both parse to NAME, `trace:rootService` and `rootServiceName` to
    TRACE_ROOT_SERVICE, and so on; `render(Intrinsic.X)` is `Intrinsic.X.value`.
    """

    DURATION = "duration"
    NAME = "name"
    STATUS = "status"
    STATUS_MESSAGE = "statusMessage"
    KIND = "kind"
    SPAN_ID = "span:id"
    SPAN_PARENT_ID = "span:parentID"
    CHILD_COUNT = "childCount"
    TRACE_DURATION = "traceDuration"
    TRACE_ROOT_NAME = "rootName"
    TRACE_ROOT_SERVICE = "rootServiceName"
    TRACE_ID = "trace:id"
    EVENT_NAME = "event:name"
    EVENT_TIME_SINCE_START = "event:timeSinceStart"
    LINK_TRACE_ID = "link:traceID"
    LINK_SPAN_ID = "link:spanID"
    INSTRUMENTATION_NAME = "instrumentation:name"
    INSTRUMENTATION_VERSION = "instrumentation:version"
    NESTED_SET_LEFT = "nestedSetLeft"
    NESTED_SET_RIGHT = "nestedSetRight"
    NESTED_SET_PARENT = "nestedSetParent"
    PARENT = "parent"

    @property
    def canonical(self) -> str:
        return self.value

    @property
    def static_type(self) -> StaticType:
        return _INTRINSIC_TYPES[self]

    @property
    def level(self) -> str:
        """Where the value lives: "span", "trace", "event", "link", "instrumentation" or "parent"."""
        return _INTRINSIC_LEVELS.get(self, "span")


_INTRINSIC_TYPES: dict[Intrinsic, StaticType] = {
    Intrinsic.DURATION: StaticType.DURATION,
    Intrinsic.NAME: StaticType.STRING,
    Intrinsic.STATUS: StaticType.STATUS,
    Intrinsic.STATUS_MESSAGE: StaticType.STRING,
    Intrinsic.KIND: StaticType.KIND,
    Intrinsic.SPAN_ID: StaticType.STRING,
    Intrinsic.SPAN_PARENT_ID: StaticType.STRING,
    Intrinsic.CHILD_COUNT: StaticType.INT,
    Intrinsic.TRACE_DURATION: StaticType.DURATION,
    Intrinsic.TRACE_ROOT_NAME: StaticType.STRING,
    Intrinsic.TRACE_ROOT_SERVICE: StaticType.STRING,
    Intrinsic.TRACE_ID: StaticType.STRING,
    Intrinsic.EVENT_NAME: StaticType.STRING,
    Intrinsic.EVENT_TIME_SINCE_START: StaticType.DURATION,
    Intrinsic.LINK_TRACE_ID: StaticType.STRING,
    Intrinsic.LINK_SPAN_ID: StaticType.STRING,
    Intrinsic.INSTRUMENTATION_NAME: StaticType.STRING,
    Intrinsic.INSTRUMENTATION_VERSION: StaticType.STRING,
    Intrinsic.NESTED_SET_LEFT: StaticType.INT,
    Intrinsic.NESTED_SET_RIGHT: StaticType.INT,
    Intrinsic.NESTED_SET_PARENT: StaticType.INT,
    Intrinsic.PARENT: StaticType.ATTRIBUTE,
}

_INTRINSIC_LEVELS: dict[Intrinsic, str] = {
    Intrinsic.TRACE_DURATION: "trace",
    Intrinsic.TRACE_ROOT_NAME: "trace",
    Intrinsic.TRACE_ROOT_SERVICE: "trace",
    Intrinsic.TRACE_ID: "trace",
    Intrinsic.EVENT_NAME: "event",
    Intrinsic.EVENT_TIME_SINCE_START: "event",
    Intrinsic.LINK_TRACE_ID: "link",
    Intrinsic.LINK_SPAN_ID: "link",
    Intrinsic.INSTRUMENTATION_NAME: "instrumentation",
    Intrinsic.INSTRUMENTATION_VERSION: "instrumentation",
    Intrinsic.PARENT: "parent",
}


class Op(enum.Enum):
    """Operators of field and scalar expressions; the value is the TraceQL symbol."""

    ADD = "+"
    SUB = "-"
    MUL = "*"
    DIV = "/"
    MOD = "%"
    POW = "^"
    EQ = "="
    NEQ = "!="
    LT = "<"
    LTE = "<="
    GT = ">"
    GTE = ">="
    REGEX = "=~"
    NOT_REGEX = "!~"
    AND = "&&"
    OR = "||"
    NOT = "!"

    @property
    def is_arithmetic(self) -> bool:
        return self in _ARITHMETIC

    @property
    def is_comparison(self) -> bool:
        return self in _COMPARISON

    @property
    def is_boolean(self) -> bool:
        """True if the result of the operator is a boolean (comparisons, regex, && || !)."""
        return self in _COMPARISON or self in (Op.AND, Op.OR, Op.NOT)


_ARITHMETIC = frozenset({Op.ADD, Op.SUB, Op.MUL, Op.DIV, Op.MOD, Op.POW})
_COMPARISON = frozenset({Op.EQ, Op.NEQ, Op.LT, Op.LTE, Op.GT, Op.GTE, Op.REGEX, Op.NOT_REGEX})


class SpansetOp(enum.Enum):
    """Operators between spanset expressions (traceql.md §7.4); the value is the TraceQL symbol.

    For structural operators `A op B` the result is drawn from B (plus A for the union `&` forms).
    """

    AND = "&&"
    UNION = "||"
    CHILD = ">"
    PARENT = "<"
    DESCENDANT = ">>"
    ANCESTOR = "<<"
    SIBLING = "~"
    NOT_CHILD = "!>"
    NOT_PARENT = "!<"
    NOT_DESCENDANT = "!>>"
    NOT_ANCESTOR = "!<<"
    NOT_SIBLING = "!~"
    UNION_CHILD = "&>"
    UNION_PARENT = "&<"
    UNION_DESCENDANT = "&>>"
    UNION_ANCESTOR = "&<<"
    UNION_SIBLING = "&~"

    @property
    def is_structural(self) -> bool:
        return self not in (SpansetOp.AND, SpansetOp.UNION)

    @property
    def is_negated(self) -> bool:
        return self.value.startswith("!")

    @property
    def is_union(self) -> bool:
        """The `&` forms, which also return the matching left-hand spans."""
        return self.value.startswith("&") and self is not SpansetOp.AND


class AggregateOp(enum.Enum):
    """Spanset aggregates of scalar filters (§7.2)."""

    COUNT = "count"
    AVG = "avg"
    MIN = "min"
    MAX = "max"
    SUM = "sum"


class MetricsOp(enum.Enum):
    """First-stage metrics functions (§9.1)."""

    RATE = "rate"
    COUNT_OVER_TIME = "count_over_time"
    MIN_OVER_TIME = "min_over_time"
    MAX_OVER_TIME = "max_over_time"
    SUM_OVER_TIME = "sum_over_time"
    AVG_OVER_TIME = "avg_over_time"
    QUANTILE_OVER_TIME = "quantile_over_time"
    HISTOGRAM_OVER_TIME = "histogram_over_time"
    COMPARE = "compare"


# --------------------------------------------------------------------------------------------------
# Field expressions


StaticValue = int | float | str | bool | Status | Kind | None


@dataclass(frozen=True)
class Static:
    """A literal. `value` by `type`: INT int, FLOAT float, DURATION int nanoseconds, STRING str,
    BOOL bool, STATUS `Status`, KIND `Kind`, NIL None.

    A leading unary minus on a numeric literal is folded into the literal (`-1`, `-5s`).
    """

    type: StaticType
    value: StaticValue

    def as_float(self) -> float:
        """Numeric value as float (durations in nanoseconds); raises TypeError for non-numerics."""
        if not self.type.is_numeric:
            raise TypeError(f"{self.type.value} literal is not numeric")
        return float(self.value)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Attribute:
    """A custom attribute: `span.foo` (scope SPAN, name "foo"), `.foo` (scope NONE), `parent.span.foo`
    (parent=True). `name` is the decoded key, quoted segments already joined (`span."a b"` -> "a b")."""

    name: str
    scope: Scope = Scope.NONE
    parent: bool = False

    @property
    def canonical(self) -> str:
        return render(self)


@dataclass(frozen=True)
class BinaryOp:
    """`lhs op rhs` inside a field expression: arithmetic, comparison, regex or `&&`/`||`.

    Existence checks are `BinaryOp(NEQ, x, Static(NIL))` / `BinaryOp(EQ, x, Static(NIL))` (nil on either
    side). For regex ops the pattern is `rhs`, a STRING Static (validated); compile it with
    `compile_regex`.
    """

    op: Op
    lhs: FieldExpr
    rhs: FieldExpr


@dataclass(frozen=True)
class UnaryOp:
    """`-operand` (numeric negation) or `!operand` (boolean not)."""

    op: Op
    operand: FieldExpr


FieldExpr = Static | Attribute | Intrinsic | BinaryOp | UnaryOp
AttributeRef = Attribute | Intrinsic


# --------------------------------------------------------------------------------------------------
# Spansets and pipelines


@dataclass(frozen=True)
class SpansetFilter:
    """`{ expr }`: keeps the spans of each spanset for which `expr` is true. `{}` has expr `true`."""

    expr: FieldExpr


@dataclass(frozen=True)
class SpansetOperation:
    """`lhs op rhs` between spanset expressions (`&&`, `||`, structural operators)."""

    op: SpansetOp
    lhs: SpansetExpr
    rhs: SpansetExpr


@dataclass(frozen=True)
class Aggregate:
    """`count()` (expr None), `avg(e)`, `min(e)`, `max(e)`, `sum(e)` over the spans of a spanset.
    `render()` gives the spanset attribute key (`count()`, `avg(duration)`)."""

    op: AggregateOp
    expr: FieldExpr | None = None


@dataclass(frozen=True)
class ScalarOperation:
    """Arithmetic between scalar expressions (`count() + count()`); only reaches the engine inside
    queries the validator marks unsupported."""

    op: Op
    lhs: ScalarExpr
    rhs: ScalarExpr


@dataclass(frozen=True)
class ScalarPipeline:
    """`( pipeline | aggregate )`: an aggregate over the output of a pipeline (top-level scalar filters)."""

    pipeline: Pipeline
    aggregate: Aggregate


ScalarExpr = Aggregate | Static | ScalarOperation | ScalarPipeline


@dataclass(frozen=True)
class ScalarFilter:
    """`lhs op rhs` with op in `= != < <= > >=`. The supported shape is `Aggregate op Static`; it keeps
    the spansets whose aggregate satisfies the comparison (and records the aggregate as a spanset
    attribute keyed `render(lhs)`)."""

    op: Op
    lhs: ScalarExpr
    rhs: ScalarExpr


@dataclass(frozen=True)
class GroupBy:
    """`by(expr)`: splits each spanset by the value of `expr`; key `render(self)` = `by(<expr>)`."""

    expr: FieldExpr


@dataclass(frozen=True)
class Coalesce:
    """`coalesce()`: merges all spansets of a trace into one."""


@dataclass(frozen=True)
class Select:
    """`select(a, b, ...)`: fetch these fields for the result spans; does not filter."""

    attributes: tuple[AttributeRef, ...]


@dataclass(frozen=True)
class Pipeline:
    """`stage | stage | ...`, applied left to right to the list of spansets of one trace.

    A parenthesised pipeline can also be an operand of a spanset operator; a parenthesised
    single spanset expression is unwrapped to that expression.
    """

    stages: tuple[Stage, ...]


SpansetExpr = SpansetFilter | SpansetOperation | Pipeline
Stage = SpansetFilter | SpansetOperation | Pipeline | ScalarFilter | GroupBy | Coalesce | Select


# --------------------------------------------------------------------------------------------------
# Metrics


@dataclass(frozen=True)
class MetricsAggregate:
    """First-stage metrics function `| fn(...) [by (...)]`.

    `attribute` is the measured field for the *_over_time functions; `quantiles` for
    quantile_over_time. For COMPARE: `compare_filter` selects the "selection" spans, `top_n` (default
    10) limits values per attribute, `start_ns`/`end_ns` (0 when unset) narrow the selection window.
    """

    op: MetricsOp
    attribute: AttributeRef | None = None
    by: tuple[AttributeRef, ...] = ()
    quantiles: tuple[float, ...] = ()
    compare_filter: SpansetFilter | None = None
    top_n: int = 10
    start_ns: int = 0
    end_ns: int = 0


@dataclass(frozen=True)
class TopK:
    """`| topk(k)`: at each timestamp keep the k series with the largest values."""

    k: int


@dataclass(frozen=True)
class BottomK:
    """`| bottomk(k)`: at each timestamp keep the k series with the smallest values."""

    k: int


@dataclass(frozen=True)
class MetricsFilter:
    """`<cmp> <number|duration>` after a metrics function: drop samples failing the comparison.
    `threshold` is the value to compare samples with (durations converted to seconds)."""

    op: Op
    value: Static

    @property
    def threshold(self) -> float:
        if self.value.type is StaticType.DURATION:
            return self.value.as_float() / 1e9
        return self.value.as_float()


SecondStage = TopK | BottomK | MetricsFilter


@dataclass(frozen=True)
class Query:
    """A parsed, validated query.

    `pipeline` always exists (a search query is just the pipeline). `metrics` is set for metrics
    queries, followed by `second_stage` operations in order. `hints` maps `with(name=value)` names to
    their literal values (unknown hints are kept; honour only those with the expected type).
    """

    pipeline: Pipeline
    metrics: MetricsAggregate | None = None
    second_stage: tuple[SecondStage, ...] = ()
    hints: Mapping[str, Static] = field(default_factory=dict, hash=False)

    @property
    def is_metrics(self) -> bool:
        return self.metrics is not None

    def hint(self, name: str, expected: StaticType) -> StaticValue:
        """Value of hint `name` if present with the expected type, else None."""
        value = self.hints.get(name)
        if value is None or value.type is not expected:
            return None
        return value.value


# --------------------------------------------------------------------------------------------------
# Static type inference (shared by validator and engine)


def implied_type(expr: FieldExpr | ScalarExpr) -> StaticType:
    """The static type of a field or scalar expression (ATTRIBUTE when only known at run time)."""
    if isinstance(expr, Static):
        return expr.type
    if isinstance(expr, Attribute):
        return StaticType.ATTRIBUTE
    if isinstance(expr, Intrinsic):
        return expr.static_type
    if isinstance(expr, (BinaryOp, ScalarOperation)):
        if expr.op.is_boolean:
            return StaticType.BOOL
        lhs = implied_type(expr.lhs)
        return lhs if lhs is not StaticType.ATTRIBUTE else implied_type(expr.rhs)
    if isinstance(expr, UnaryOp):
        return StaticType.BOOL if expr.op is Op.NOT else implied_type(expr.operand)
    if isinstance(expr, Aggregate):
        if expr.op is AggregateOp.COUNT or expr.expr is None:
            return StaticType.INT
        if expr.op is AggregateOp.AVG:
            return StaticType.FLOAT
        inner = implied_type(expr.expr)
        return inner if inner.is_numeric else StaticType.FLOAT
    if isinstance(expr, ScalarPipeline):
        return implied_type(expr.aggregate)
    raise TypeError(f"not an expression: {expr!r}")


def references_span(expr: FieldExpr) -> bool:
    """True if the expression reads any span field (attribute or intrinsic)."""
    stack: list[FieldExpr] = [expr]
    while stack:
        e = stack.pop()
        if isinstance(e, (Attribute, Intrinsic)):
            return True
        if isinstance(e, BinaryOp):
            stack += (e.lhs, e.rhs)
        elif isinstance(e, UnaryOp):
            stack.append(e.operand)
    return False


def left_spine(expr: BinaryOp, ops: Collection[Op] | None = None) -> tuple[FieldExpr, list[BinaryOp]]:
    """Unwind a left-deep chain `x op1 y op2 z ...` without recursion.

    Returns the innermost left operand and the BinaryOp nodes from the innermost outwards, so the
    chain can be evaluated iteratively: `acc = eval(first); for node in ops: acc = node.op(acc, node.rhs)`.
    Long `&&`/`||` chains (thousands of terms fit in 128 KiB) are left-deep trees this deep. With
    `ops`, only nodes with those operators are unwound (e.g. `{Op.AND, Op.OR}`), else any BinaryOp.
    """
    chain: list[BinaryOp] = []
    e: FieldExpr = expr
    while isinstance(e, BinaryOp) and (ops is None or e.op in ops):
        chain.append(e)
        e = e.lhs
    chain.reverse()
    return e, chain


def is_matching_operand(lhs: StaticType, rhs: StaticType) -> bool:
    """Tempo's "matching operands": same type, both numeric, either nil, or either unknown."""
    if StaticType.ATTRIBUTE in (lhs, rhs) or StaticType.NIL in (lhs, rhs):
        return True
    return lhs is rhs or (lhs.is_numeric and rhs.is_numeric)


_NUMERIC_OPS = _ARITHMETIC | {Op.EQ, Op.NEQ, Op.LT, Op.LTE, Op.GT, Op.GTE}
_STRING_OPS = frozenset({Op.EQ, Op.NEQ, Op.LT, Op.LTE, Op.GT, Op.GTE, Op.REGEX, Op.NOT_REGEX})
_BOOL_OPS = frozenset({Op.AND, Op.OR, Op.EQ, Op.NEQ})
_EQUALITY_OPS = frozenset({Op.EQ, Op.NEQ})


def binary_type_valid(op: Op, t: StaticType) -> bool:
    """Whether an operand of static type `t` may appear on either side of `op` (§5.2)."""
    if t is StaticType.ATTRIBUTE:
        return True
    if t.is_numeric:
        return op in _NUMERIC_OPS
    if t is StaticType.STRING:
        return op in _STRING_OPS
    if t is StaticType.BOOL:
        return op in _BOOL_OPS
    return op in _EQUALITY_OPS  # nil, status, kind


def unary_type_valid(op: Op, t: StaticType) -> bool:
    if t is StaticType.ATTRIBUTE:
        return True
    if op is Op.SUB:
        return t.is_numeric
    return op is Op.NOT and t is StaticType.BOOL


# --------------------------------------------------------------------------------------------------
# Canonical rendering (Tempo's String() forms)


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
        scopes = (["parent"] if node.parent else []) + ([node.scope.value] if node.scope.value else [])
        return (".".join(scopes) + "." if scopes else ".") + node.name
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
