"""Trace files for `tempo-lite import` (pure: bytes in, one OTLP request out, or an error naming where).

Formats, told apart by content: OTLP/JSON (one `TracesData` document, or one per line as the
collector's file exporter writes), Jaeger JSON (the Jaeger UI's download), Zipkin JSON v2 (and v1), and
OTLP protobuf (`TracesData` / `ExportTraceServiceRequest`, the same message on the wire). Decoding is
done by the receivers' decoders; this module only picks one and says where a bad file went wrong:
line and column for JSON syntax, the span's path for a bad span, the byte offset for protobuf.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans

from tempo_lite.distributor.wire import check_ids
from tempo_lite.errors import InvalidRequest
from tempo_lite.receivers.jaeger_json import decode_jaeger_json_doc, is_jaeger_json
from tempo_lite.receivers.otlp_json import decode_otlp_json
from tempo_lite.receivers.zipkin import decode_zipkin_v2_json
from tempo_lite.receivers.zipkin_v1 import decode_zipkin_v1_json


class FileFormatError(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass
class Decoded:
    format: str
    request: ExportTraceServiceRequest

    @property
    def spans(self) -> int:
        return sum(len(ss.spans) for rs in self.request.resource_spans for ss in rs.scope_spans)


def _json_error(exc: json.JSONDecodeError, line_offset: int = 0) -> FileFormatError:
    return FileFormatError(f"line {exc.lineno + line_offset} column {exc.colno}: invalid JSON: {exc.msg}")


def _is_otlp_json(doc: Any) -> bool:
    return isinstance(doc, dict) and ("resourceSpans" in doc or "resource_spans" in doc)


def _zipkin_version(doc: Any) -> int:
    if not isinstance(doc, list) or not doc or not all(isinstance(s, dict) for s in doc):
        return 0
    if any("annotations" in s and any("endpoint" in a for a in s["annotations"] or [] if isinstance(a, dict))
           or "binaryAnnotations" in s for s in doc):
        return 1
    if all("traceId" in s and "id" in s for s in doc):
        return 2
    return 0


def _decode(fmt: str, decoder: Any, arg: Any) -> Decoded:
    try:
        return Decoded(fmt, decoder(arg))
    except InvalidRequest as exc:
        raise FileFormatError(f"{fmt}: {exc.message}") from exc


def _json_lines(data: bytes) -> Decoded:
    """One OTLP/JSON TracesData per line (blank lines skipped); an error names its line."""
    request = ExportTraceServiceRequest()
    for n, line in enumerate(data.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            doc = json.loads(line)
        except json.JSONDecodeError as exc:
            raise _json_error(exc, n - 1) from exc
        if not _is_otlp_json(doc):
            raise FileFormatError(f"line {n}: expected an OTLP/JSON object with resourceSpans")
        try:
            part = decode_otlp_json(line)
        except InvalidRequest as exc:
            raise FileFormatError(f"line {n}: OTLP/JSON: {exc.message}") from exc
        request.resource_spans.extend(part.resource_spans)
    return Decoded("OTLP/JSON lines", request)


def _protobuf_error(data: bytes) -> FileFormatError:
    """Walk the top-level fields to name the byte offset where the protobuf stops making sense."""
    pos = 0
    index = 0

    def varint(at: int) -> tuple[int, int]:
        shift = value = 0
        while True:
            if at >= len(data):
                raise IndexError
            b = data[at]
            value |= (b & 0x7F) << shift
            at += 1
            if not b & 0x80:
                return value, at
            shift += 7
            if shift > 63:
                raise ValueError

    while pos < len(data):
        start = pos
        try:
            key, pos = varint(pos)
            wire = key & 7
            if key >> 3 == 0:
                return FileFormatError(f"byte offset {start}: not OTLP protobuf (field number 0)")
            if wire == 0:
                _, pos = varint(pos)
            elif wire == 1:
                pos += 8
            elif wire == 5:
                pos += 4
            elif wire == 2:
                length, pos = varint(pos)
                payload = data[pos:pos + length]
                if len(payload) < length:
                    return FileFormatError(f"byte offset {start}: truncated (a field of {length} bytes, "
                                           f"{len(payload)} left in the file)")
                if key >> 3 == 1:
                    try:
                        ResourceSpans.FromString(payload)
                    except DecodeError:
                        return FileFormatError(f"byte offset {start}: resource_spans[{index}] cannot be decoded")
                    index += 1
                pos += length
            else:
                return FileFormatError(f"byte offset {start}: not OTLP protobuf (wire type {wire})")
            if pos > len(data):
                return FileFormatError(f"byte offset {start}: truncated")
        except (IndexError, ValueError):
            return FileFormatError(f"byte offset {start}: truncated or invalid varint")
    return FileFormatError("not OTLP protobuf")


def check_span_ids(decoded: Decoded) -> Decoded:
    """The distributor's ID rule (16-byte trace ID, non-zero 8-byte span ID), checked before anything is
    sent, so the server cannot refuse a later batch of a file whose first batches went in."""
    for r, rs in enumerate(decoded.request.resource_spans):
        for s, ss in enumerate(rs.scope_spans):
            for i, span in enumerate(ss.spans):
                try:
                    check_ids(span.trace_id, span.span_id)
                except InvalidRequest as exc:
                    raise FileFormatError(f"{decoded.format}: resourceSpans[{r}].scopeSpans[{s}].spans[{i}]: "
                                          f"{exc.message}") from exc
    return decoded


def decode_file(data: bytes) -> Decoded:
    """Detect the format of a whole file, decode it and check its IDs; FileFormatError says what and where."""
    return check_span_ids(_decode_file(data))


def _decode_file(data: bytes) -> Decoded:
    head = data.lstrip()[:1]
    if head in (b"{", b"["):
        try:
            doc = json.loads(data)
        except UnicodeDecodeError as exc:
            raise FileFormatError(f"byte offset {exc.start}: not UTF-8 text") from exc
        except json.JSONDecodeError as exc:
            if exc.msg == "Extra data" and head == b"{":
                return _json_lines(data)
            raise _json_error(exc) from exc
        if _is_otlp_json(doc):
            return _decode("OTLP/JSON", decode_otlp_json, data)
        if is_jaeger_json(doc):
            return _decode("Jaeger JSON", decode_jaeger_json_doc, doc)
        version = _zipkin_version(doc)
        if version == 2:
            return _decode("Zipkin JSON v2", decode_zipkin_v2_json, data)
        if version == 1:
            return _decode("Zipkin JSON v1", decode_zipkin_v1_json, data)
        raise FileFormatError("JSON, but not OTLP/JSON (resourceSpans), Jaeger JSON (data[].spans) "
                              "or Zipkin JSON (a list of spans)")
    if not data.strip():
        raise FileFormatError("empty file")
    request = ExportTraceServiceRequest()
    try:
        request.ParseFromString(data)
    except DecodeError as exc:
        raise _protobuf_error(data) from exc
    if not request.resource_spans:
        raise FileFormatError("neither JSON nor OTLP protobuf with spans")
    decoded = Decoded("OTLP protobuf", request)
    if not decoded.spans:
        raise FileFormatError("OTLP protobuf without spans")
    return decoded


def batches(request: ExportTraceServiceRequest, max_spans: int = 2000,
            max_bytes: int = 4 << 20) -> list[ExportTraceServiceRequest]:
    """Split a request into pushes of at most `max_spans` spans / about `max_bytes` each; every span stays
    with (a copy of) its resource and scope, in the original order."""
    out: list[ExportTraceServiceRequest] = []
    current = ExportTraceServiceRequest()
    count = size = 0
    last: tuple[int, int] | None = None  # (resource index, scope index) the current scope_spans copies
    for r, rs in enumerate(request.resource_spans):
        for s, ss in enumerate(rs.scope_spans):
            for span in ss.spans:
                span_size = span.ByteSize()
                if count and (count >= max_spans or size + span_size > max_bytes):
                    out.append(current)
                    current = ExportTraceServiceRequest()
                    count = size = 0
                    last = None
                if last is None or last[0] != r:
                    target = current.resource_spans.add()
                    target.resource.CopyFrom(rs.resource)
                    target.schema_url = rs.schema_url
                if last != (r, s):
                    scope = current.resource_spans[-1].scope_spans.add()
                    scope.scope.CopyFrom(ss.scope)
                    scope.schema_url = ss.schema_url
                    last = (r, s)
                current.resource_spans[-1].scope_spans[-1].spans.add().CopyFrom(span)
                count += 1
                size += span_size
    if count:
        out.append(current)
    return out
