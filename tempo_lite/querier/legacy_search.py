"""Legacy tag search (`/api/search?tags=...`, vParquet4 semantics) over a span table."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tempo_lite.spantable import SpanTable
from tempo_lite.traceql.ast import Intrinsic
from tempo_lite.traceql.engine_context import SpanContext
from tempo_lite.traceql.engine_values import Col, compare

_SUBSTRING_RESOURCE_KEYS = frozenset(
    {
        "service.name",
        "cluster",
        "namespace",
        "pod",
        "container",
        "k8s.cluster.name",
        "k8s.namespace.name",
        "k8s.pod.name",
        "k8s.container.name",
    }
)
_SUBSTRING_SPAN_KEYS = frozenset({"http.method", "http.url"})


@dataclass
class LegacySearch:
    """A legacy `tags=` search: tags plus trace duration (ms) and time window (unix seconds) bounds."""

    tags: Mapping[str, str]
    min_duration_ms: int = 0
    max_duration_ms: int = 0
    start: int = 0
    end: int = 0


def _contains(c: Col, value: str) -> np.ndarray:
    s = c.primary().slots.get("str")
    if s is None or isinstance(s, pa.Scalar):
        return np.zeros(c.n, dtype=bool)
    return pc.match_substring(s, value).fill_null(False).to_numpy(zero_copy_only=False).astype(bool)


def _equals_str(c: Col, value: str) -> np.ndarray:
    return compare("=", c, Col.literal(c.n, "str", value))


def legacy_tag_search(table: SpanTable, search: LegacySearch) -> list[bytes]:
    """Trace IDs matching a legacy tag search (vParquet4 semantics, as Tempo's /api/search tags= parameter).

    Every tag must hold within one batch (a resource/scope of one trace): on the resource or on one of
    the batch's spans. Well-known keys match by case-sensitive substring; `http.status_code` is an
    exact int; `status.code` takes unset|ok|error; any other key is an exact string match.
    """
    if table.num_spans == 0:
        return []
    ctx = SpanContext(table)
    summaries = ctx.summaries
    n = table.num_spans
    span_trace = summaries.span_trace
    n_res = max(table.resources.num_rows, 1)
    batch = span_trace * n_res + ctx.resource_index
    ok_batches: set[int] | None = None
    for key, value in search.tags.items():
        mask = _legacy_tag_mask(ctx, key, value, n)
        batches = set(np.unique(batch[mask]).tolist())
        ok_batches = batches if ok_batches is None else ok_batches & batches
    if ok_batches is None:
        traces = set(range(summaries.traces.num_rows))
    else:
        traces = {b // n_res for b in ok_batches}
    out = []
    rows = summaries.traces.to_pylist()
    for t in sorted(traces):
        row = rows[t]
        duration_ms = (row["end_unix_nano"] - row["start_unix_nano"]) // 1_000_000
        if search.min_duration_ms and duration_ms < search.min_duration_ms:
            continue
        if search.max_duration_ms and duration_ms > search.max_duration_ms:
            continue
        if (search.start or search.end) and not (
            row["start_unix_nano"] <= search.end * 10**9 and row["end_unix_nano"] >= search.start * 10**9
        ):
            continue
        out.append(row["trace_id"])
    return out


def _legacy_tag_mask(ctx: SpanContext, key: str, value: str, n: int) -> np.ndarray:
    if key == "root.service.name":
        return _contains(ctx.intrinsic(Intrinsic.TRACE_ROOT_SERVICE), value)
    if key == "root.name":
        return _contains(ctx.intrinsic(Intrinsic.TRACE_ROOT_NAME), value)
    if key == "name":
        return _contains(ctx.intrinsic(Intrinsic.NAME), value)
    if key == "status.code":
        code = {"unset": 0, "ok": 1, "error": 2}.get(value)
        if code is None:
            return np.zeros(n, dtype=bool)
        return compare("=", ctx.intrinsic(Intrinsic.STATUS), Col.literal(n, "status", code))
    if key == "http.status_code":
        try:
            code_i = int(value)
        except ValueError:
            return np.zeros(n, dtype=bool)
        return compare("=", ctx.span_attr(key), Col.literal(n, "int", code_i))
    span = ctx.span_attr(key)
    res = ctx.resource_level("resource", key)
    dedicated = ctx.table.dedicated.get(key)
    dedicated_str = dedicated is not None and dedicated in ctx.spans.column_names and pa.types.is_string(
        ctx.spans.schema.field(dedicated).type)
    if key in _SUBSTRING_RESOURCE_KEYS or key in _SUBSTRING_SPAN_KEYS or dedicated_str:
        return _contains(span, value) | _contains(res, value)
    return _equals_str(span, value) | _equals_str(res, value)

