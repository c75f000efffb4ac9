"""Per-trace summaries of a span table, computed column-wise with Arrow group-bys.

They feed search result metadata (`rootServiceName`, `rootTraceName`, `startTimeUnixNano`,
`durationMs`, `serviceStats`) and the trace-level TraceQL intrinsics (`trace:duration`,
`trace:rootName`, `trace:rootService`). The root span is the first span (in row order) whose
`parent_span_id` is empty or all zeros; a trace without one has null root columns.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tempo_lite.spantable import SpanTable

ROOT_NOT_YET_RECEIVED = "<root span not yet received>"
_STATUS_ERROR = 2


@dataclass
class TraceSummaries:
    """`traces`: one row per trace (trace_id, start_unix_nano, end_unix_nano, root_service_name,
    root_span_name), in first-seen order; `services`: (trace_id, service_name, span_count, error_count);
    `span_trace`: for every span row of the table, its row in `traces`."""

    traces: pa.Table
    services: pa.Table
    span_trace: np.ndarray

    def by_trace_id(self) -> dict[bytes, dict]:
        """Plain per-trace dicts keyed by trace ID, with a `services` map {name: (spans, errors)}."""
        out: dict[bytes, dict] = {}
        for row in self.traces.to_pylist():
            row["services"] = {}
            out[row["trace_id"]] = row
        for row in self.services.to_pylist():
            out[row["trace_id"]]["services"][row["service_name"]] = (row["span_count"], row["error_count"])
        return out


def root_mask(parent_span_id: pa.Array | pa.ChunkedArray) -> pa.Array:
    """Spans without a parent: empty or all-zero parent span ID."""
    length = pc.binary_length(parent_span_id)
    zero8 = pa.scalar(b"\x00" * 8, pa.binary())
    empty = pc.or_(pc.equal(length, 0), pc.is_null(parent_span_id))
    return pc.fill_null(pc.or_(empty, pc.equal(pc.cast(parent_span_id, pa.binary()), zero8)), True)


def trace_index(trace_ids: pa.Array | pa.ChunkedArray) -> tuple[pa.Array, np.ndarray]:
    """(distinct trace IDs in first-seen order, per-row index into them)."""
    if isinstance(trace_ids, pa.ChunkedArray):
        trace_ids = trace_ids.combine_chunks()
    enc = pc.dictionary_encode(trace_ids)
    return enc.dictionary, enc.indices.to_numpy(zero_copy_only=False).astype(np.int64)


def trace_summaries(table: SpanTable) -> TraceSummaries:
    spans = table.spans
    ids, span_trace = trace_index(spans.column("trace_id"))
    n_traces = len(ids)
    start = spans.column("start_unix_nano")
    end = pc.add(start, spans.column("duration_nano"))
    t = pa.table(
        {
            "t": pa.array(span_trace, pa.int64()),
            "start": start,
            "end": end,
            "service": pc.fill_null(spans.column("service_name"), ""),
            "error": pc.cast(pc.equal(spans.column("status_code"), _STATUS_ERROR), pa.int64()),
            "root": root_mask(spans.column("parent_span_id")),
            "name": pc.fill_null(spans.column("name"), ""),
        }
    )
    times = t.group_by("t", use_threads=False).aggregate([("start", "min"), ("end", "max")])
    starts = np.zeros(n_traces, dtype=np.int64)
    ends = np.zeros(n_traces, dtype=np.int64)
    ti = times.column("t").to_numpy()
    starts[ti] = times.column("start_min").to_numpy()
    ends[ti] = times.column("end_max").to_numpy()

    roots = (
        t.filter(t.column("root"))
        .group_by("t", use_threads=False)
        .aggregate([("service", "first"), ("name", "first")])
    )
    root_pos = np.full(n_traces, -1, dtype=np.int64)
    root_pos[roots.column("t").to_numpy()] = np.arange(roots.num_rows)
    missing = root_pos < 0
    take = pa.array(np.where(missing, 0, root_pos), mask=missing if missing.any() else None)
    if roots.num_rows:
        root_service = roots.column("service_first").take(take)
        root_name = roots.column("name_first").take(take)
    else:
        root_service = pa.nulls(n_traces, pa.string())
        root_name = pa.nulls(n_traces, pa.string())
    traces = pa.table(
        {
            "trace_id": ids,
            "start_unix_nano": pa.array(starts, pa.int64()),
            "end_unix_nano": pa.array(ends, pa.int64()),
            "root_service_name": root_service,
            "root_span_name": root_name,
        }
    )
    svc = t.group_by(["t", "service"], use_threads=False).aggregate([("error", "count"), ("error", "sum")])
    services = pa.table(
        {
            "trace_id": ids.take(svc.column("t")),
            "service_name": svc.column("service"),
            "span_count": svc.column("error_count"),
            "error_count": svc.column("error_sum"),
        }
    )
    return TraceSummaries(traces, services, span_trace)
