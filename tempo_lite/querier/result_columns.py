"""Search results column-wise: one row per trace (hex ID, start, duration, the trace's JSON object).

Every source's matches become a `ResultColumns` (rendered by `result_json`, or by `result_pb` for a
protobuf answer), sources are combined and cut to the limit with Arrow sorts and takes, and the answer's
body is the rows' objects as they lie: no Python object per trace on the way. `messages()` gives the
protobuf messages (parsed from the protobuf body, or from each JSON object for results that arrived as
JSON)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from google.protobuf import json_format

from tempo_lite._gen import tempopb_pb2 as pb
from tempo_lite.querier import result_json as rj
from tempo_lite.querier import result_pb as rpb
from tempo_lite.querier.search_json import trace_json
from tempo_lite.traceql.engine_columns import SpansetColumns
from tempo_lite.traceql.engine_summary import ROOT_NOT_YET_RECEIVED, TraceSummaries

SCHEMA = pa.schema([
    ("id", pa.string()),  # the result's traceID (hex without leading zeros)
    ("start", pa.int64()),
    ("duration_ms", pa.int64()),
    ("json", pa.string()),  # the TraceSearchMetadata as a JSON object
])
# Results rendered for a protobuf answer: each row's object is its `SearchResponse.traces` field (bytes).
PB_SCHEMA = pa.schema([*SCHEMA][:3] + [pa.field("json", pa.binary())])


# SearchMetrics fields in declaration order, with whether proto3 JSON writes them as strings (64-bit).
_METRICS_FIELDS = [(f.name, f.type == f.TYPE_UINT64) for f in pb.SearchMetrics.DESCRIPTOR.fields]


def metrics_json(metrics: pb.SearchMetrics) -> bytes:
    """`json_format.MessageToDict(metrics)` as compact JSON, without the generic converter."""
    items = []
    for name, as_string in _METRICS_FIELDS:
        value = getattr(metrics, name)
        if value:
            items.append(f'"{name}":"{value}"' if as_string else f'"{name}":{value}')
    return ("{" + ",".join(items) + "}").encode()


@dataclass(frozen=True)
class ResultColumns:
    table: pa.Table
    # The rows are already an answer: distinct trace IDs, newest first (a `merged` result, or one source's
    # results, which `from_summaries` renders in that order). Merging such rows is a slice.
    in_order: bool = False

    @staticmethod
    def empty() -> ResultColumns:
        return _EMPTY

    @staticmethod
    def concat(parts: Iterable[ResultColumns]) -> ResultColumns:
        tables = [p.table for p in parts if p.table.num_rows]
        if not tables:
            return ResultColumns.empty()
        if len(tables) == 1:
            return next(p for p in parts if p.table.num_rows)
        return ResultColumns(pa.concat_tables(tables))

    @staticmethod
    def from_messages(results: Iterable[pb.TraceSearchMetadata]) -> ResultColumns:
        """Results that arrive as messages (a sharding frontend's querier answers) as columns, each JSON
        object as `search_json` renders it."""
        results = list(results)
        if not results:
            return ResultColumns.empty()
        return ResultColumns(pa.table({
            "id": pa.array([md.traceID for md in results], pa.string()),
            "start": pa.array([md.startTimeUnixNano for md in results], pa.int64()),
            "duration_ms": pa.array([md.durationMs for md in results], pa.int64()),
            "json": pa.array([json.dumps(trace_json(md), separators=(",", ":")) + "," for md in results], pa.string()),
        }, schema=SCHEMA))

    def __len__(self) -> int:
        return self.table.num_rows

    @property
    def protobuf(self) -> bool:
        """The rows' objects are protobuf fields (`result_pb`), not JSON objects."""
        return pa.types.is_binary(self.table.schema.field("json").type)

    @property
    def ids(self) -> pa.ChunkedArray:
        return self.table.column("id")

    def distinct(self) -> int:
        if self.in_order:
            return len(self)
        return len(pc.unique(self.ids)) if len(self) else 0

    def overlapping(self, start_ns: int, end_ns: int) -> ResultColumns:
        """Results whose trace overlaps the range (as `search._overlapping` judges messages)."""
        if (not start_ns and not end_ns) or not len(self):
            return self
        end = end_ns or (1 << 63) - 1
        starts = self.table.column("start").to_numpy()
        ends = starts + self.table.column("duration_ms").to_numpy() * 1_000_000
        keep = (starts <= end) & (ends >= start_ns)
        return self if keep.all() else ResultColumns(self.table.filter(pa.array(keep)), self.in_order)

    def _order(self, limit: int | None = None) -> np.ndarray:
        """Rows of the merged answer: the first row of each trace ID, newest first (stable), `limit`."""
        t = self.table
        keep = np.arange(t.num_rows)
        codes = pc.dictionary_encode(t.column("id").combine_chunks()).indices.to_numpy(zero_copy_only=False)
        _, first = np.unique(codes, return_index=True)
        if len(first) < t.num_rows:
            keep = np.sort(first)
        starts = t.column("start").to_numpy()[keep]
        order = keep[np.argsort(-starts, kind="stable")]
        return order if limit is None else order[:limit]

    def merged(self, limit: int | None = None) -> ResultColumns:
        """First row of each trace ID, newest first (stable), at most `limit` (merge_search_results)."""
        if not len(self) or (self.in_order and (limit is None or len(self) <= limit)):
            return self
        if self.in_order:
            return ResultColumns(self.table.slice(0, limit), True)
        return ResultColumns(self.table.take(pa.array(self._order(limit))), True)

    def kth_newest_start(self, k: int) -> int | None:
        """Start of the k-th newest distinct trace, None with fewer than k."""
        if len(self) < k:
            return None
        if self.in_order:
            return int(self.table.column("start")[k - 1].as_py())
        order = self._order(k)
        return int(self.table.column("start").to_numpy()[order[k - 1]]) if len(order) >= k else None

    def _objects(self) -> memoryview:
        """The rows' objects as one contiguous buffer, as it lies."""
        objects = self.table.column("json").combine_chunks()
        offsets = np.frombuffer(objects.buffers()[1], dtype=np.int32, count=len(objects) + 1, offset=objects.offset * 4)
        return memoryview(objects.buffers()[2])[int(offsets[0]): int(offsets[-1])]

    def json_body(self, metrics: pb.SearchMetrics | None = None) -> bytes:
        """The SearchResponse JSON document (as `search_json.search_response_json` renders it): the rows'
        objects (each followed by a comma) are one contiguous buffer, used as it lies."""
        parts: list[bytes | memoryview] = [b"{"]
        if len(self):
            if self.protobuf:
                raise ValueError("results rendered for a protobuf answer have no JSON body")
            parts += [b'"traces":[', self._objects()[:-1], b"]"]
        if metrics is not None:
            if len(parts) > 1:
                parts.append(b",")
            parts.append(b'"metrics":' + metrics_json(metrics))
        parts.append(b"}")
        return b"".join(parts)

    def protobuf_body(self, metrics: pb.SearchMetrics | None = None) -> bytes:
        """The serialized SearchResponse. Rows rendered for protobuf are its `traces` fields as they lie;
        JSON rows are parsed into messages first (results that arrived as JSON)."""
        if len(self) and not self.protobuf:
            return pb.SearchResponse(traces=self.messages(), metrics=metrics).SerializeToString()
        tail = b"" if metrics is None else pb.SearchResponse(metrics=metrics).SerializeToString()
        return b"".join([self._objects(), tail]) if len(self) else tail

    def messages(self) -> list[pb.TraceSearchMetadata]:
        """The results as protobuf messages (protobuf and gRPC answers)."""
        if self.protobuf:
            return list(pb.SearchResponse.FromString(self.protobuf_body()).traces)
        return [json_format.Parse(s[:-1], pb.TraceSearchMetadata()) for s in self.table.column("json").to_pylist()]


_EMPTY = ResultColumns(SCHEMA.empty_table())


def _trace_rows(summaries: TraceSummaries, trace_ids: pa.Array) -> np.ndarray:
    pos = pc.index_in(trace_ids, summaries.traces.column("trace_id"))
    if pos.null_count:
        raise ValueError("a matched trace has no summary")
    return pos.to_numpy(zero_copy_only=False).astype(np.int64)


def from_summaries(summaries: TraceSummaries, trace_ids: pa.Array,
                   spansets: tuple[pa.Array, pa.Array] | None = None, *, protobuf: bool = False) -> ResultColumns:
    """Results for `trace_ids` from their summaries, with rendered spansets if given (`spanset_json`, or
    `spanset_pb` with `protobuf`): rows newest first."""
    n = len(trace_ids)
    if not n:
        return ResultColumns.empty()
    rows = _trace_rows(summaries, trace_ids)
    traces = summaries.traces.take(pa.array(rows))
    starts = traces.column("start_unix_nano").combine_chunks()
    ends = traces.column("end_unix_nano").combine_chunks()
    duration_ms = pa.array((ends.to_numpy() - starts.to_numpy()) // 1_000_000, pa.int64())
    root_service = traces.column("root_service_name").combine_chunks()
    root_name = traces.column("root_span_name").combine_chunks()
    has_root = pc.or_(pc.is_valid(root_service), pc.is_valid(root_name))
    service = pc.if_else(has_root, pc.fill_null(root_service, ""), ROOT_NOT_YET_RECEIVED)
    name = pc.if_else(has_root, root_name, pa.scalar(None, pa.string()))

    svc = summaries.services
    svc_pos = pc.index_in(svc.column("trace_id"), trace_ids).to_numpy(zero_copy_only=False)
    svc_pos = np.nan_to_num(svc_pos.astype(np.float64), nan=-1).astype(np.int64)
    keep = np.flatnonzero(svc_pos >= 0)
    keep = keep[np.argsort(svc_pos[keep], kind="stable")]
    svc = svc.take(pa.array(keep))
    stats = (rpb.service_stats_pb if protobuf else rj.service_stats_json)(
        svc_pos[keep], svc.column("service_name").combine_chunks(), svc.column("span_count").combine_chunks(),
        svc.column("error_count").combine_chunks(), n,
    )
    # Rows newest first (stable), as the merged answer lists them; distinct IDs have distinct summary rows.
    order = np.argsort(-starts.to_numpy(), kind="stable")
    distinct = bool(np.bincount(rows).max() <= 1)
    positions = pa.array(order)
    ids = rj.trace_id_hex(trace_ids).take(positions)
    if protobuf:
        body = rpb.trace_pb(ids, starts, duration_ms, service, name, spansets, stats, order)
    else:
        body = rj.trace_json(trace_ids, starts, duration_ms, service, name, spansets, stats, order, ids)
    columns = [ids, starts.take(positions), duration_ms.take(positions), body]
    return ResultColumns(pa.table(columns, schema=PB_SCHEMA if protobuf else SCHEMA), distinct)


def from_matches(matches: SpansetColumns, summaries: TraceSummaries, *, protobuf: bool = False) -> ResultColumns:
    """Search results for column-wise matches, trace facts from `summaries` of the same spans."""
    if not matches.num_traces:
        return ResultColumns.empty()
    spansets = rpb.spanset_pb(matches) if protobuf else rj.spanset_json(matches)
    return from_summaries(summaries, matches.trace_ids, spansets, protobuf=protobuf)
