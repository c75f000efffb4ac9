"""Wire-level scan of a serialized OTLP `ExportTraceServiceRequest` for the distributor's hot path.

The distributor needs, per span, the trace ID, the span ID and the encoded size (`Span.ByteSize()`),
and, per request, whether any attribute could be longer than the attribute limit. Reading those from
protobuf objects costs a Python wrapper per span (and `ByteSize()` re-encodes each span): ~28 µs per
span measured. Here the request's canonical serialization (`SerializeToString()`, done in C) is parsed
again with a mirror schema whose spans are `repeated bytes` and whose resource and scope are `bytes`:
upb hands every span over as its exact encoding, so its length *is* `ByteSize()`, and the IDs are read
from its first bytes (a canonical encoding writes fields in field-number order, one occurrence each).

Pure: bytes in, values out. Only canonical serializations may be scanned (what `SerializeToString()`
returns); the distributor keeps the protobuf-object path for anything that must change the request.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from operator import itemgetter
from typing import Any

import numpy as np
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from tempo_lite.errors import InvalidRequest

_ZERO_SPAN_ID = b"\x00" * 8
_TRACE_ID_PREFIX = b"\x0a\x10"  # field 1, length-delimited, 16 bytes
_SPAN_ID_PREFIX = b"\x12\x08"  # field 2, length-delimited, 8 bytes
_HEAD = itemgetter(slice(0, 2))
_TRACE_ID = itemgetter(slice(2, 18))
_SPAN_ID_HEAD = itemgetter(slice(18, 20))
_SPAN_ID = itemgetter(slice(20, 28))


def _raw_request_class() -> Any:
    """`ExportTraceServiceRequest` with the same field numbers, spans/resource/scope left as raw bytes."""
    F = descriptor_pb2.FieldDescriptorProto
    fdp = descriptor_pb2.FileDescriptorProto(
        name="tempo_lite/distributor_raw_otlp.proto", package="tempo_lite.distributor_raw", syntax="proto3"
    )
    messages: dict[str, list[tuple[str, int, int, str]]] = {
        "Request": [("resource_spans", 1, F.TYPE_MESSAGE, "*ResourceSpans")],
        "ResourceSpans": [("resource", 1, F.TYPE_BYTES, ""), ("scope_spans", 2, F.TYPE_MESSAGE, "*ScopeSpans"),
                          ("schema_url", 3, F.TYPE_BYTES, "")],
        "ScopeSpans": [("scope", 1, F.TYPE_BYTES, ""), ("spans", 2, F.TYPE_BYTES, "*"),
                       ("schema_url", 3, F.TYPE_BYTES, "")],
    }
    for name, fields in messages.items():
        m = fdp.message_type.add(name=name)
        for fname, number, typ, spec in fields:
            f = m.field.add(name=fname, number=number, type=typ,
                            label=F.LABEL_REPEATED if spec.startswith("*") else F.LABEL_OPTIONAL)
            if typ == F.TYPE_MESSAGE:
                f.type_name = ".tempo_lite.distributor_raw." + spec.lstrip("*")
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("tempo_lite.distributor_raw.Request"))


_RawRequest = _raw_request_class()

# What later stages hold (docs/reliability.md): times are int64 nanoseconds in the span table and
# Parquet, and the metrics-generator turns durations into float64 seconds exactly only below 2^53 ns.
MAX_UNIX_NANO = (1 << 63) - 1
MAX_DURATION_NANO = (1 << 53) - 1


def _times_classes() -> tuple[Any, Any, Any]:
    """Mirrors that read times from *concatenated* encodings: parsing all spans joined as one message
    appends every span's start and end (fields 7, 8) to repeated fields, in span order, in one C call."""
    F = descriptor_pb2.FieldDescriptorProto
    fdp = descriptor_pb2.FileDescriptorProto(
        name="tempo_lite/distributor_times_otlp.proto", package="tempo_lite.distributor_times", syntax="proto3"
    )
    messages: dict[str, list[tuple[str, int, int, str]]] = {
        "SpanTimes": [("start_time_unix_nano", 7, F.TYPE_FIXED64, "*"), ("end_time_unix_nano", 8, F.TYPE_FIXED64, "*"),
                      ("events", 11, F.TYPE_BYTES, "*")],
        "EventTimes": [("time_unix_nano", 1, F.TYPE_FIXED64, "*")],
        "Span": [("start_time_unix_nano", 7, F.TYPE_FIXED64, ""), ("end_time_unix_nano", 8, F.TYPE_FIXED64, ""),
                 ("events", 11, F.TYPE_MESSAGE, "*Event")],
        "Event": [("time_unix_nano", 1, F.TYPE_FIXED64, "")],
    }
    for name, fields in messages.items():
        m = fdp.message_type.add(name=name)
        for fname, number, typ, spec in fields:
            f = m.field.add(name=fname, number=number, type=typ,
                            label=F.LABEL_REPEATED if spec.startswith("*") else F.LABEL_OPTIONAL)
            if typ == F.TYPE_MESSAGE:
                f.type_name = ".tempo_lite.distributor_times." + spec.lstrip("*")
            elif spec == "*" and typ == F.TYPE_FIXED64:
                f.options.packed = False
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    get = pool.FindMessageTypeByName
    return tuple(message_factory.GetMessageClass(get(f"tempo_lite.distributor_times.{n}"))
                 for n in ("SpanTimes", "EventTimes", "Span"))


_SpanTimes, _EventTimes, _SpanWithTimes = _times_classes()


@dataclass(frozen=True)
class SpanScan:
    """What the distributor needs from a valid request, in request order."""

    trace_ids: list[bytes]  # one per span
    sizes: list[int]  # encoded size of each span (== Span.ByteSize())
    groups: list[tuple[int, int, int]]  # (resource index, scope index, number of spans), non-empty groups
    largest_message: int  # longest encoding among resources, scopes and spans
    raw: Any  # the request parsed with the raw-bytes mirror schema

    @property
    def spans(self) -> int:
        return len(self.trace_ids)

    def locate(self, flat_indexes: list[int]) -> list[tuple[int, int, list[int]]]:
        """Flat span indexes (ascending) as (resource index, scope index, span indexes within the scope)."""
        out: list[tuple[int, int, list[int]]] = []
        wanted = iter(flat_indexes)
        nxt = next(wanted, None)
        start = 0
        for r, s, count in self.groups:
            if nxt is None:
                break
            end = start + count
            inside: list[int] = []
            while nxt is not None and nxt < end:
                inside.append(nxt - start)
                nxt = next(wanted, None)
            if inside:
                out.append((r, s, inside))
            start = end
        return out


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(data):
            raise ValueError("truncated varint")
        b = data[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7


def span_ids(span: bytes) -> tuple[bytes, bytes]:
    """(trace_id, span_id) of one encoded span: the last occurrence of fields 1 and 2, b"" when absent."""
    trace_id = span_id = b""
    pos = 0
    n = len(span)
    while pos < n:
        key, pos = _varint(span, pos)
        number, wire_type = key >> 3, key & 7
        if wire_type == 0:
            _, pos = _varint(span, pos)
        elif wire_type == 1:
            pos += 8
        elif wire_type == 5:
            pos += 4
        elif wire_type == 2:
            length, pos = _varint(span, pos)
            if number == 1:
                trace_id = span[pos:pos + length]
            elif number == 2:
                span_id = span[pos:pos + length]
            pos += length
        else:  # groups are not used by OTLP; a canonical encoding never holds them
            raise ValueError(f"unexpected wire type {wire_type} in a span")
    return trace_id, span_id


def check_ids(trace_id: bytes, span_id: bytes) -> None:
    """Tempo's ingest rule: a 16-byte trace ID and an 8-byte, non-zero span ID, else the push is refused."""
    if len(trace_id) != 16:
        raise InvalidRequest(f"trace ids must be 128 bit, received {len(trace_id) * 8} bits")
    if len(span_id) != 8 or span_id == _ZERO_SPAN_ID:
        raise InvalidRequest("span ids must be 64 bit and not all zero")


def scan(canonical: bytes) -> SpanScan:
    """Validate IDs and measure spans of `request.SerializeToString()` bytes.

    Raises `InvalidRequest` exactly as `validate_ids` does on the parsed request (first offending span in
    request order, trace ID checked before span ID).
    """
    raw = _RawRequest.FromString(canonical)
    spans: list[bytes] = []
    groups: list[tuple[int, int, int]] = []
    largest = 0
    for r, rs in enumerate(raw.resource_spans):
        largest = max(largest, len(rs.resource))
        for s, ss in enumerate(rs.scope_spans):
            largest = max(largest, len(ss.scope))
            if ss.spans:
                groups.append((r, s, len(ss.spans)))
                spans.extend(ss.spans)
    sizes = list(map(len, spans))
    if sizes:
        largest = max(largest, max(sizes))
    # Canonical spans with valid IDs all start `0a 10 <trace id> 12 08 <span id>`: check that in bulk.
    span_id_list = list(map(_SPAN_ID, spans))
    if (
        set(map(_HEAD, spans)) <= {_TRACE_ID_PREFIX}
        and set(map(_SPAN_ID_HEAD, spans)) <= {_SPAN_ID_PREFIX}
        and _ZERO_SPAN_ID not in span_id_list
    ):
        trace_ids = list(map(_TRACE_ID, spans))
    else:
        trace_ids = []
        for span in spans:
            trace_id, span_id = span_ids(span)
            check_ids(trace_id, span_id)
            trace_ids.append(trace_id)
    return SpanScan(trace_ids, sizes, groups, largest, raw)


def check_times(scanned: SpanScan) -> None:
    """Refuse (InvalidRequest, naming the span and the field) times later stages cannot hold.

    Every start, end and event time must be below 2^63 ns (int64), and a span's duration (end - start)
    below 2^53 ns (~104 days). An end before the start is kept, as Tempo keeps it. Vectorised: two C
    parses and numpy for the whole request; the per-span walk only runs to name an offending span.
    """
    spans = [span for rs in scanned.raw.resource_spans for ss in rs.scope_spans for span in ss.spans]
    times = _SpanTimes.FromString(b"".join(spans))
    starts = np.array(times.start_time_unix_nano, dtype=np.uint64)
    ends = np.array(times.end_time_unix_nano, dtype=np.uint64)
    events = np.array(_EventTimes.FromString(b"".join(times.events)).time_unix_nano, dtype=np.uint64)
    limit = np.uint64(MAX_UNIX_NANO)
    suspicious = (
        len(starts) != len(spans) or len(ends) != len(spans)  # a zero time is not encoded: align by walking
        or bool((starts > limit).any() or (ends > limit).any() or (events > limit).any())
        or bool(((ends > starts) & (ends - starts > np.uint64(MAX_DURATION_NANO))).any())
    )
    if suspicious:
        for k, span in enumerate(spans):
            problem = time_problem(_SpanWithTimes.FromString(span))
            if problem:
                raise InvalidRequest(f"span {k} of the request (trace {scanned.trace_ids[k].hex()}): {problem}")


def time_problem(span: Any) -> str:
    """The time rule for one span (an OTLP `Span` or the times mirror): what is wrong, or ""."""
    start, end = span.start_time_unix_nano, span.end_time_unix_nano
    if start > MAX_UNIX_NANO:
        return f"start_time_unix_nano {start} is not below 2^63"
    if end > MAX_UNIX_NANO:
        return f"end_time_unix_nano {end} is not below 2^63"
    if end - start > MAX_DURATION_NANO:
        return f"end_time_unix_nano - start_time_unix_nano = {end - start} ns is not below 2^53 ns (~104 days)"
    for i, event in enumerate(span.events):
        if event.time_unix_nano > MAX_UNIX_NANO:
            return f"events[{i}].time_unix_nano {event.time_unix_nano} is not below 2^63"
    return ""


def _field(tag: int, payload: bytes) -> bytes:
    """One length-delimited field (tag byte for field numbers 1-15)."""
    n = len(payload)
    if n < 0x80:
        return bytes((tag, n)) + payload
    head = bytearray((tag,))
    while n >= 0x80:
        head.append((n & 0x7F) | 0x80)
        n >>= 7
    head.append(n)
    return bytes(head) + payload


def shard(canonical: bytes, scanned: SpanScan, partitions: int) -> dict[int, bytes]:
    """The same `TracesData` bytes per partition as `distributor.shard` on the parsed request.

    That is: spans split by `crc32(trace_id) % partitions`, one `ResourceSpans` with one `ScopeSpans` per
    (resource, scope, partition) in request order, resource and scope always written (possibly empty),
    schema URLs when set, unknown fields of the resource/scope groups left out.
    """
    out: dict[int, list[bytes]] = {}
    trace_ids = scanned.trace_ids
    k = 0
    for rs in scanned.raw.resource_spans:
        resource = _field(0x0A, rs.resource)
        rs_schema = _field(0x1A, rs.schema_url) if rs.schema_url else b""
        for ss in rs.scope_spans:
            by_partition: dict[int, list[bytes]] = {}
            for span in ss.spans:
                by_partition.setdefault(zlib.crc32(trace_ids[k]) % partitions, []).append(_field(0x12, span))
                k += 1
            if not by_partition:
                continue
            scope = _field(0x0A, ss.scope)
            ss_schema = _field(0x1A, ss.schema_url) if ss.schema_url else b""
            for p, spans in by_partition.items():
                scope_spans = _field(0x12, b"".join((scope, *spans, ss_schema)))
                out.setdefault(p, []).append(_field(0x0A, b"".join((resource, scope_spans, rs_schema))))
    return {p: b"".join(parts) for p, parts in out.items()}
