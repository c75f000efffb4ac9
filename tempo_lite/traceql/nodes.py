"""The TraceQL AST nodes: frozen dataclasses and the enums they are built from (types, scopes, intrinsics,
operators). Produced by the parser, read by the validator and the engine; import them from
`tempo_lite.traceql.ast`.

Shape of a query (see `Query`):

    Query(pipeline=Pipeline(stages=(...)), metrics=MetricsAggregate | None, second_stage=(...), hints={})

Field expressions (inside `{ }`, `by()`, aggregates) are `Static`, `Attribute`, `Intrinsic` (the enum
member itself is the leaf node), `BinaryOp` and `UnaryOp`.

Just over 500 lines on purpose: the node classes and the enums they hold are the one vocabulary of the
language and read together; the rules over them live beside it (`static_types.py`, `render.py`).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1


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
        """The attribute as TraceQL text: `.foo`, `span.foo`, `parent.resource.foo`."""
        scopes = (["parent"] if self.parent else []) + ([self.scope.value] if self.scope.value else [])
        return (".".join(scopes) + "." if scopes else ".") + self.name


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
