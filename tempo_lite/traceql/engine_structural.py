"""TraceQL structural operators (`>`, `<`, `>>`, `<<`, `~`, their `!` negations and `&` unions) as integer
comparisons of nested-set numbers: `left`/`right` bound a span's subtree, `parent` is its parent's `left`.
Disconnected spans (nested-set left 0) never take part in a structural result, negated ones included.

    structural(op, a_rows, b_rows, nested)   one trace: the rows of b (and a, for unions) the operator keeps

`engine_structural_cols` has the same operators over every trace of a table at once.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from tempo_lite.traceql.ast import SpansetOp

# Negated and union operators, by the plain relation they test.
BASE = {
    SpansetOp.NOT_CHILD: SpansetOp.CHILD,
    SpansetOp.NOT_PARENT: SpansetOp.PARENT,
    SpansetOp.NOT_DESCENDANT: SpansetOp.DESCENDANT,
    SpansetOp.NOT_ANCESTOR: SpansetOp.ANCESTOR,
    SpansetOp.NOT_SIBLING: SpansetOp.SIBLING,
    SpansetOp.UNION_CHILD: SpansetOp.CHILD,
    SpansetOp.UNION_PARENT: SpansetOp.PARENT,
    SpansetOp.UNION_DESCENDANT: SpansetOp.DESCENDANT,
    SpansetOp.UNION_ANCESTOR: SpansetOp.ANCESTOR,
    SpansetOp.UNION_SIBLING: SpansetOp.SIBLING,
}


class NestedSets(NamedTuple):
    """Per span row of a table: nested-set left, right and parent (the parent's left; 0: disconnected)."""

    left: np.ndarray
    right: np.ndarray
    parent: np.ndarray


def structural(op: SpansetOp, a_rows: np.ndarray, b_rows: np.ndarray, nested: NestedSets) -> np.ndarray:
    """`{a} op {b}` within one trace: the rows of b the relation holds for (not holds, for negations;
    with the related rows of a, for unions), as sorted rows."""
    left, right, parent = nested
    a = a_rows[left[a_rows] > 0]
    b = b_rows[left[b_rows] > 0]
    if len(b) == 0:
        return b
    base = BASE.get(op, op)
    # rel[i, j]: relation holds between a[i] and b[j].
    la, ra, pa_ = left[a][:, None], right[a][:, None], parent[a][:, None]
    lb, rb, pb = left[b][None, :], right[b][None, :], parent[b][None, :]
    if base is SpansetOp.DESCENDANT:  # b descends from a
        rel = (la < lb) & (rb < ra)
    elif base is SpansetOp.ANCESTOR:  # b is an ancestor of a
        rel = (lb < la) & (ra < rb)
    elif base is SpansetOp.CHILD:  # b's parent is a
        rel = pb == la
    elif base is SpansetOp.PARENT:  # b is a's parent
        rel = pa_ == lb
    else:  # sibling: same parent, different span
        rel = (pb == pa_) & (a[:, None] != b[None, :])
    hit_b = rel.any(axis=0)
    if op.is_negated:
        return b[~hit_b]
    if op.is_union:
        hit_a = rel[:, hit_b].any(axis=1)
        return np.union1d(b[hit_b], a[hit_a])
    return b[hit_b]
