"""`TraceQLError`: the one error a query that cannot be run raises (parse, validation, unsupported)."""

from __future__ import annotations

from tempo_lite.errors import InvalidRequest


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
