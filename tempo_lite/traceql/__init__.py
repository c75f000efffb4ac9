"""TraceQL for tempo-lite: parse and validate queries into the AST of `tempo_lite.traceql.ast`.

    parse(query)                 -> Query (parsed and validated) or TraceQLError (HTTP 400)
    parse_attribute(tag_name)    -> Attribute | Intrinsic, for /api/v2/search/tag/<tag>/values
    parse_lenient_filter(q)      -> SpansetFilter | None, for the tags / tag-values `q` filter
    compile_regex(pattern)       -> Python regex with Tempo's anchored RE2 semantics
    parse_duration(text) ...     -> nanoseconds of a TraceQL, Go or Prometheus duration

This package exports the parsing functions only; the AST's names (nodes, `TraceQLError`, `render`,
`result_key`, the type rules) are imported from `tempo_lite.traceql.ast`, their one namespace. The
evaluation engine lives beside the parser (`engine*.py`) and consumes the AST only.
"""

from __future__ import annotations

import sys

from tempo_lite.traceql.ast import Attribute, Intrinsic, Query, SpansetFilter, TraceQLError
from tempo_lite.traceql.literals import parse_duration, parse_go_duration, parse_prom_duration
from tempo_lite.traceql.parser import MAX_QUERY_BYTES, parse_query, parse_tree
from tempo_lite.traceql.validate import anchored_re2, compile_regex, validate

# The PEG parser uses ~35 Python frames per level of parentheses; Tempo's LALR parser has no such
# limit. Python 3.11 runs Python-to-Python calls without C recursion, so a higher limit is safe; it
# is raised once (never lowered) so concurrent parses cannot pull it down under each other.
_RECURSION_LIMIT = 20_000


def _ensure_recursion_limit() -> None:
    if sys.getrecursionlimit() < _RECURSION_LIMIT:
        sys.setrecursionlimit(_RECURSION_LIMIT)


def parse(query: str) -> Query:
    """Parse and validate a TraceQL query. Raises TraceQLError (category parse/validate/unsupported)."""
    _ensure_recursion_limit()
    try:
        result = parse_query(query)
        validate(result)
    except RecursionError:
        raise TraceQLError("parse", "query is nested too deeply") from None
    return result


def parse_attribute(text: str) -> Attribute | Intrinsic:
    """Parse a v2 tag name (`resource.service.name`, `.foo`, `name`, `span:name`, `event.x`).

    A bare custom name such as `service.name` is invalid (TraceQLError, category parse), as are
    `parent` forms (category unsupported).
    """
    _ensure_recursion_limit()
    ref = parse_tree(text.strip(), "attribute_ref")
    assert isinstance(ref, (Attribute, Intrinsic))
    if ref is Intrinsic.PARENT or (isinstance(ref, Attribute) and ref.parent):
        raise TraceQLError("unsupported", f"tag name {text!r}: parent not yet supported")
    return ref


def parse_lenient_filter(query: str) -> SpansetFilter | None:
    """The single `{ ... }` filter of a tags/tag-values `q` parameter, or None if `q` is anything else.

    An invalid or partial `q` is not an error for those endpoints: the filter is just dropped.
    """
    try:
        result = parse(query)
    except TraceQLError:
        return None
    if result.metrics is not None or result.hints or len(result.pipeline.stages) != 1:
        return None
    only = result.pipeline.stages[0]
    return only if isinstance(only, SpansetFilter) else None


__all__ = [
    "MAX_QUERY_BYTES",
    "anchored_re2",
    "compile_regex",
    "parse",
    "parse_attribute",
    "parse_duration",
    "parse_go_duration",
    "parse_lenient_filter",
    "parse_prom_duration",
    "validate",
]
