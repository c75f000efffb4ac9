"""Pure parts of the client commands: trace-file detection and decoding with error locations, push
batching, the terminal waterfall, the query table, time options. No sockets."""

from __future__ import annotations

import json

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status, TracesData

from tempo_lite.cli.commands.common import UsageError, parse_duration, parse_time, time_range
from tempo_lite.cli.commands.formats import FileFormatError, batches, decode_file
from tempo_lite.cli.commands.query import table
from tempo_lite.cli.commands.tree import render
from tempo_lite.receivers.jaeger_json import decode_jaeger_json
from tempo_lite.receivers.otlp_json import encode_otlp_json

TID = "5b8efff798038103d269b633813fc60c"


def traces_data(spans: int = 3, services: tuple[str, ...] = ("api", "db")) -> TracesData:
    td = TracesData()
    n = 0
    for svc in services:
        rs = td.resource_spans.add()
        kv = rs.resource.attributes.add()
        kv.key, kv.value.string_value = "service.name", svc
        ss = rs.scope_spans.add()
        ss.scope.name = "lib"
        for _ in range(spans):
            n += 1
            s = ss.spans.add()
            s.trace_id = bytes.fromhex(TID)
            s.span_id = n.to_bytes(8, "big")
            if n > 1:
                s.parent_span_id = (1).to_bytes(8, "big")
            s.name = f"op{n}"
            s.start_time_unix_nano = 1_700_000_000_000_000_000 + n * 1000
            s.end_time_unix_nano = s.start_time_unix_nano + 5000
    return td


def span_count(req: ExportTraceServiceRequest) -> int:
    return sum(len(ss.spans) for rs in req.resource_spans for ss in rs.scope_spans)


def test_otlp_json_file_decodes_to_the_same_spans_as_written() -> None:
    td = traces_data()
    decoded = decode_file(json.dumps(encode_otlp_json(td)).encode())
    assert decoded.format == "OTLP/JSON"
    assert decoded.request.SerializeToString() == td.SerializeToString()


def test_otlp_json_lines_file_decodes_every_line() -> None:
    line = json.dumps(encode_otlp_json(traces_data())).encode()
    decoded = decode_file(line + b"\n\n" + line + b"\n")
    assert decoded.format == "OTLP/JSON lines" and decoded.spans == 12


def test_otlp_protobuf_file_decodes() -> None:
    td = traces_data()
    decoded = decode_file(td.SerializeToString())
    assert decoded.format == "OTLP protobuf" and decoded.spans == 6


def test_json_syntax_error_names_line_and_column() -> None:
    body = b'{\n  "resourceSpans": [\n    {"resource": }\n  ]\n}\n'
    with pytest.raises(FileFormatError, match=r"^line 3 column 18: invalid JSON"):
        decode_file(body)


def test_json_lines_error_names_the_line() -> None:
    good = json.dumps(encode_otlp_json(traces_data())).encode()
    with pytest.raises(FileFormatError, match=r"^line 3 column 1: invalid JSON"):
        decode_file(good + b"\n" + good + b"\n" + b"}{\n")


def test_bad_span_id_in_otlp_json_names_the_span() -> None:
    doc = encode_otlp_json(traces_data())
    doc["resourceSpans"][1]["scopeSpans"][0]["spans"][2]["spanId"] = "xyz"
    with pytest.raises(FileFormatError, match=r"resourceSpans\[1\]\.scopeSpans\[0\]\.spans\[2\]\.spanId"):
        decode_file(json.dumps(doc).encode())


def test_ids_the_server_would_refuse_are_refused_before_sending() -> None:
    td = traces_data()
    td.resource_spans[1].scope_spans[0].spans[1].span_id = b"\x00" * 8
    with pytest.raises(FileFormatError, match=r"resourceSpans\[1\]\.scopeSpans\[0\]\.spans\[1\]: span ids"):
        decode_file(td.SerializeToString())
    td = traces_data()
    td.resource_spans[0].scope_spans[0].spans[0].trace_id = b"\x01" * 8
    with pytest.raises(FileFormatError, match="trace ids must be 128 bit"):
        decode_file(json.dumps(encode_otlp_json(td)).encode())


def test_truncated_protobuf_names_the_byte_offset() -> None:
    body = traces_data().SerializeToString()
    first = len(traces_data(services=("api",)).SerializeToString())
    with pytest.raises(FileFormatError, match=rf"^byte offset {first}: truncated"):
        decode_file(body[:-10])


def test_unrecognised_json_and_empty_files_are_refused() -> None:
    with pytest.raises(FileFormatError, match="not OTLP/JSON"):
        decode_file(b'{"hello": 1}')
    with pytest.raises(FileFormatError, match="empty file"):
        decode_file(b"  \n")
    with pytest.raises(FileFormatError):
        decode_file(b"\x00\x01\x02garbage")


JAEGER = {
    "data": [{
        "traceID": TID,
        "spans": [
            {"traceID": TID, "spanID": "00000000000000a1", "operationName": "GET /", "references": [],
             "startTime": 1_700_000_000_000_000, "duration": 1500, "flags": 1, "processID": "p1",
             "tags": [{"key": "span.kind", "type": "string", "value": "server"},
                      {"key": "http.status_code", "type": "int64", "value": 500},
                      {"key": "error", "type": "bool", "value": True},
                      {"key": "ratio", "type": "float64", "value": 0.5}],
             "logs": [{"timestamp": 1_700_000_000_000_100,
                       "fields": [{"key": "event", "type": "string", "value": "retry"},
                                  {"key": "attempt", "type": "int64", "value": 2}]}]},
            {"traceID": TID, "spanID": "00000000000000b2", "operationName": "SELECT", "processID": "p2",
             "references": [{"refType": "CHILD_OF", "traceID": TID, "spanID": "00000000000000a1"},
                            {"refType": "FOLLOWS_FROM", "traceID": "ff" * 16, "spanID": "00000000000000c3"}],
             "startTime": 1_700_000_000_000_200, "duration": 700, "tags": [], "logs": []},
        ],
        "processes": {"p1": {"serviceName": "web", "tags": [{"key": "hostname", "type": "string", "value": "h1"}]},
                      "p2": {"serviceName": "db", "tags": []}},
    }],
}


def test_jaeger_json_download_decodes_like_the_jaeger_receivers() -> None:
    decoded = decode_file(json.dumps(JAEGER).encode())
    assert decoded.format == "Jaeger JSON" and decoded.spans == 2
    by_service = {rs.resource.attributes[0].value.string_value: rs for rs in decoded.request.resource_spans}
    web = by_service["web"].scope_spans[0].spans[0]
    assert web.trace_id.hex() == TID and web.span_id.hex() == "00000000000000a1"
    assert web.kind == Span.SPAN_KIND_SERVER and web.status.code == Status.STATUS_CODE_ERROR
    assert web.end_time_unix_nano - web.start_time_unix_nano == 1_500_000
    assert web.events[0].name == "retry" and web.events[0].attributes[0].value.int_value == 2
    assert {a.key: a.value for a in web.attributes}["ratio"].double_value == 0.5
    assert any(a.key == "host.name" for a in by_service["web"].resource.attributes)
    db = by_service["db"].scope_spans[0].spans[0]
    assert db.parent_span_id.hex() == "00000000000000a1"
    assert db.links[0].trace_id.hex() == "ff" * 16 and db.links[0].span_id.hex() == "00000000000000c3"


def test_jaeger_json_with_a_bad_span_names_it() -> None:
    bad = json.loads(json.dumps(JAEGER))
    bad["data"][0]["spans"][1]["spanID"] = "not-hex"
    with pytest.raises(FileFormatError, match=r"data\[0\]\.spans\[1\]\.spanID"):
        decode_file(json.dumps(bad).encode())
    bad["data"][0]["spans"][1]["spanID"] = "b2"
    bad["data"][0]["spans"][1]["processID"] = "p9"
    with pytest.raises(FileFormatError, match=r"processID: 'p9' is not in processes"):
        decode_file(json.dumps(bad).encode())
    assert decode_jaeger_json(json.dumps(JAEGER["data"][0]).encode()).resource_spans  # a bare trace object


def test_zipkin_v2_json_decodes() -> None:
    spans = [{"traceId": TID, "id": "00000000000000a1", "name": "get", "timestamp": 1_700_000_000_000_000,
              "duration": 10, "kind": "SERVER", "localEndpoint": {"serviceName": "zsvc"}}]
    decoded = decode_file(json.dumps(spans).encode())
    assert decoded.format == "Zipkin JSON v2" and decoded.spans == 1
    assert decoded.request.resource_spans[0].resource.attributes[0].value.string_value == "zsvc"


def test_batches_split_by_span_count_and_keep_resources_and_order() -> None:
    td = traces_data(spans=5, services=("a", "b", "c"))
    req = ExportTraceServiceRequest(resource_spans=td.resource_spans)
    parts = batches(req, max_spans=4)
    assert [span_count(p) for p in parts] == [4, 4, 4, 3]
    names = [(rs.resource.attributes[0].value.string_value, s.name)
             for p in parts for rs in p.resource_spans for ss in rs.scope_spans for s in ss.spans]
    want = [(rs.resource.attributes[0].value.string_value, s.name)
            for rs in req.resource_spans for ss in rs.scope_spans for s in ss.spans]
    assert names == want
    assert all(ss.scope.name == "lib" for p in parts for rs in p.resource_spans for ss in rs.scope_spans)
    assert len(batches(req, max_spans=100)) == 1


def test_terminal_waterfall_draws_the_tree_with_errors_marked() -> None:
    td = traces_data(spans=2, services=("api", "db"))
    td.resource_spans[1].scope_spans[0].spans[1].status.code = Status.STATUS_CODE_ERROR
    lines = render(td, width=80)
    assert len(lines) == 4
    assert lines[0].startswith("api: op1 ")
    assert lines[1].startswith("├─ api: op2") and lines[3].startswith("└─ db: op4")
    assert lines[3].endswith("!") and not lines[2].endswith("!")
    assert all("│" in line and "█" in line for line in lines)


def test_query_table_has_a_row_per_trace() -> None:
    out = table([{"traceID": "abc", "rootServiceName": "api", "rootTraceName": "GET /", "durationMs": 1500,
                  "startTimeUnixNano": "1700000000000000000",
                  "serviceStats": {"api": {"spanCount": 3, "errorCount": 1}, "db": {"spanCount": 2}}}])
    head, row = out.splitlines()
    assert head.split()[:3] == ["TRACE", "ID", "ROOT"]
    assert row.split() == ["abc", "api", "GET", "/", "2023-11-14", "22:13:20", "1.50s", "5", "1"]


def test_time_options() -> None:
    assert parse_duration("15m") == 900 and parse_duration("2d") == 172800
    assert parse_time("1700000000") == 1700000000
    assert parse_time("2023-11-14T22:13:20Z") == 1700000000
    with pytest.raises(UsageError):
        parse_duration("soon")

    class A:
        since, start, end = None, "1700000000", "1700000600"

    assert time_range(A()) == (1700000000, 1700000600)
    A.since = "1h"
    with pytest.raises(UsageError, match="either --since or --start"):
        time_range(A())
    A.since, A.start, A.end = None, "1700000600", "1700000000"
    with pytest.raises(UsageError, match="after its start"):
        time_range(A())
