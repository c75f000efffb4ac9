"""Attribute names per scope of a span table (tag discovery; TraceQL metrics' compare() counts them). Pure."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tempo_lite.spantable import SpanTable
from tempo_lite.traceql.ast import SpansetFilter
from tempo_lite.traceql.engine_context import SpanContext

ATTRIBUTE_SCOPES = ("resource", "span", "event", "link", "instrumentation")


def keys_of(lists: pa.Array | pa.ChunkedArray, rows: np.ndarray | None) -> set[str]:
    if isinstance(lists, pa.ChunkedArray):
        lists = lists.combine_chunks()
    if rows is not None:
        lists = lists.take(pa.array(rows, pa.int64()))
    flat = pc.list_flatten(lists)
    if len(flat) == 0:
        return set()
    return set(pc.unique(pc.struct_field(flat, "key")).to_pylist())


def tag_names(table: SpanTable, q: SpansetFilter | None = None) -> dict[str, set[str]]:
    """Attribute names per scope (resource, span, event, link, instrumentation), optionally only on
    spans matching the `q` filter."""
    out: dict[str, set[str]] = {s: set() for s in ATTRIBUTE_SCOPES}
    if table.num_spans == 0:
        return out
    spans = table.spans
    rows: np.ndarray | None = None
    if q is not None:
        rows = np.flatnonzero(SpanContext(table).filter_mask(q.expr))
        if len(rows) == 0:
            return out
    out["span"] = keys_of(spans.column("attrs"), rows)
    for key, col in table.dedicated.items():
        c = spans.column(col)
        if rows is not None:
            c = c.take(pa.array(rows, pa.int64()))
        if c.null_count < len(c):
            out["span"].add(key)
    res_rows = pc.unique(spans.column("resource_index") if rows is None else spans.column("resource_index").take(rows))
    res_idx = np.array(res_rows.to_pylist(), dtype=np.int64)
    out["resource"] = keys_of(table.resources.column("attrs"), res_idx)
    out["instrumentation"] = keys_of(table.resources.column("scope_attrs"), res_idx)
    for scope, column in (("event", "events"), ("link", "links")):
        nested = spans.column(column)
        if rows is not None:
            nested = nested.take(pa.array(rows, pa.int64()))
        flat = pc.list_flatten(nested)
        out[scope] = keys_of(pc.struct_field(flat, "attrs"), None) if len(flat) else set()
    return out
