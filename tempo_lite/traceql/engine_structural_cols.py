"""TraceQL structural operators over every trace of a table at once: the column-wise twin of
`engine_structural.structural` (which judges one trace), on row masks instead of per-trace row lists.

Rows are keyed by (trace, nested-set number) folded into one int64 (`trace * base + number`), so one
sort and a `searchsorted` answer each relation for all traces together:

    related(op, a, b, span_trace, nested)      rows of b for which the plain relation holds with some a
    structural_mask(op, a, b, span_trace, nested)  what `structural` keeps, negated and union forms too
"""

from __future__ import annotations

import numpy as np

from tempo_lite.traceql.ast import SpansetOp
from tempo_lite.traceql.engine_structural import BASE, NestedSets

# The relation seen from the other side: `{a} op {b}` holds for (a, b) iff REVERSE[op] holds for (b, a).
_REVERSE = {
    SpansetOp.CHILD: SpansetOp.PARENT,
    SpansetOp.PARENT: SpansetOp.CHILD,
    SpansetOp.DESCENDANT: SpansetOp.ANCESTOR,
    SpansetOp.ANCESTOR: SpansetOp.DESCENDANT,
    SpansetOp.SIBLING: SpansetOp.SIBLING,
}


def related(op: SpansetOp, a: np.ndarray, b: np.ndarray, span_trace: np.ndarray, nested: NestedSets) -> np.ndarray:
    """For row masks a and b: the mask of rows of b related by the plain relation `op` (child, parent,
    descendant, ancestor, sibling) to some row of a in the same trace, as `structural` judges them
    (disconnected spans left out)."""
    left, right, parent = nested
    connected = left > 0
    a_rows = np.flatnonzero(a & connected)
    b_rows = np.flatnonzero(b & connected)
    out = np.zeros(len(a), dtype=bool)
    if not len(a_rows) or not len(b_rows):
        return out
    base = int(max(left.max(), right.max(), parent.max())) + 3
    trace = span_trace.astype(np.int64) * base

    def key(number: np.ndarray, rows: np.ndarray) -> np.ndarray:
        return trace[rows] + number[rows].astype(np.int64) + 2

    if op is SpansetOp.CHILD:  # b's parent is a
        hit = np.isin(key(parent, b_rows), key(left, a_rows))
    elif op is SpansetOp.PARENT:  # b is a's parent
        hit = np.isin(key(left, b_rows), key(parent, a_rows))
    elif op is SpansetOp.DESCENDANT:  # some a with left(a) < left(b) and right(b) < right(a)
        order = np.argsort(key(left, a_rows), kind="stable")
        a_left = key(left, a_rows)[order]
        reach = np.maximum.accumulate(key(right, a_rows)[order])
        before = np.searchsorted(a_left, key(left, b_rows), side="left") - 1
        hit = (before >= 0) & (reach[np.maximum(before, 0)] > key(right, b_rows))
    elif op is SpansetOp.ANCESTOR:  # some a with left(b) < left(a) and right(a) < right(b)
        order = np.argsort(key(left, a_rows), kind="stable")
        a_left = key(left, a_rows)[order]
        inner = np.minimum.accumulate(key(right, a_rows)[order][::-1])[::-1]
        after = np.searchsorted(a_left, key(left, b_rows), side="right")
        inside = after < len(a_left)
        hit = inside & (inner[np.minimum(after, len(a_left) - 1)] < key(right, b_rows))
    else:  # sibling: a row of a with the same parent, other than b itself
        keys, counts = np.unique(key(parent, a_rows), return_counts=True)
        b_keys = key(parent, b_rows)
        pos = np.minimum(np.searchsorted(keys, b_keys), len(keys) - 1)
        same = np.where(keys[pos] == b_keys, counts[pos], 0)
        hit = same - a[b_rows].astype(np.int64) > 0
    out[b_rows[hit]] = True
    return out


def structural_mask(
    op: SpansetOp, a: np.ndarray, b: np.ndarray, span_trace: np.ndarray, nested: NestedSets
) -> np.ndarray:
    """`{a} op {b}` over every trace: the rows `structural` keeps for each trace (rows of b the relation
    holds for; not holds, for negations; with the related rows of a, for unions), as a row mask."""
    base = BASE.get(op, op)
    hit = related(base, a, b, span_trace, nested)
    if op.is_negated:
        return b & (nested.left > 0) & ~hit
    if op.is_union:
        return hit | related(_REVERSE[base], hit, a, span_trace, nested)
    return hit
