"""The span table: OTLP -> Arrow -> OTLP bytes round trips, the fast KeyValue decoder, dedicated columns,
nested sets and de-duplication."""

from __future__ import annotations

import pyarrow as pa
import pytest
from google.protobuf.message import DecodeError
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue, KeyValueList
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, Span, TracesData
from otlp_helpers import encoded, normalize, sdk_spans

from tempo_lite import spantable
from tempo_lite.spantable.decode import _decode_key_values
from tempo_lite.spantable.ops import nested_sets
from tempo_lite.spantable.protowire import varint
from tempo_lite.spantable.schema import SPAN_KIND_CLIENT, SPAN_KIND_SERVER


def _otlp(table: spantable.SpanTable) -> TracesData:
    return TracesData.FromString(spantable.encode_traces_data(table))


def _kv(key: str, **value: object) -> KeyValue:
    return KeyValue(key=key, value=AnyValue(**value))


def _every_field() -> TracesData:
    """One span per oddity: every AnyValue kind, empty value, empty key, long values, events, links."""
    data = TracesData()
    rs = data.resource_spans.add(schema_url="https://opentelemetry.io/schemas/1.21.0")
    rs.resource.attributes.extend([_kv("service.name", string_value="svc"), _kv("host.cpus", int_value=4)])
    rs.resource.dropped_attributes_count = 3
    ss = rs.scope_spans.add(schema_url="scope-schema")
    ss.scope.name, ss.scope.version = "lib", "1.0"
    ss.scope.attributes.append(_kv("scope.flag", bool_value=True))
    ss.scope.dropped_attributes_count = 1
    span = ss.spans.add(
        trace_id=bytes(range(16)), span_id=b"\x01" * 8, parent_span_id=b"", name="root", kind=2,
        start_time_unix_nano=1_000, end_time_unix_nano=5_000, trace_state="k=v", flags=0x101,
        dropped_attributes_count=2, dropped_events_count=1, dropped_links_count=4,
    )
    span.status.code, span.status.message = 2, "boom"
    span.attributes.extend([
        _kv("s", string_value="text"), _kv("empty.string", string_value=""),
        _kv("i", int_value=-(2**63)), _kv("i.max", int_value=2**63 - 1), _kv("zero", int_value=0),
        _kv("d", double_value=-1.5e300), _kv("b", bool_value=False), _kv("bytes", bytes_value=b"\x00\xff"),
        _kv("arr", array_value=ArrayValue(values=[AnyValue(string_value="x"), AnyValue(int_value=1)])),
        _kv("map", kvlist_value=KeyValueList(values=[_kv("nested", double_value=2.0)])),
        KeyValue(key="no.value"), _kv("", string_value="empty key"),
        _kv("k" * 300, string_value="long key"), _kv("long.value", string_value="é" * 20_000),
    ])
    span.events.add(time_unix_nano=2_000, name="ev", attributes=[_kv("ev.a", int_value=7)], dropped_attributes_count=1)
    span.events.add(time_unix_nano=3_000, name="ev2")
    span.links.add(trace_id=b"\x02" * 16, span_id=b"\x03" * 8, trace_state="l=1", flags=1,
                   attributes=[_kv("link.a", string_value="x")], dropped_attributes_count=5)
    ss.spans.add(trace_id=bytes(range(16)), span_id=b"\x02" * 8, parent_span_id=b"\x01" * 8, name="child",
                 start_time_unix_nano=2_000, end_time_unix_nano=3_000)
    other = data.resource_spans.add()  # a resource without service.name
    other.scope_spans.add().spans.add(trace_id=b"\x09" * 16, span_id=b"\x09" * 8, name="orphan",
                                      start_time_unix_nano=1, end_time_unix_nano=2)
    return data


@pytest.mark.parametrize("extra", [0, 80], ids=["per-item-decoder", "vectorised-decoder"])
def test_round_trip_keeps_every_otlp_field_and_attribute_type(extra: int) -> None:
    data = _every_field()
    root = data.resource_spans[0].scope_spans[0].spans[0]
    if extra:
        # No value / empty key are not the canonical layout the vectorised decoder takes: drop them here.
        kept = [kv for kv in root.attributes if kv.HasField("value") and kv.key]
        del root.attributes[:]
        root.attributes.extend(kept + [_kv(f"extra.{i}", string_value="v" * i) for i in range(extra)])
        assert _decode_key_values([kv.SerializeToString() for kv in root.attributes]) is not None
    table = spantable.flatten_bytes(data.SerializeToString())
    assert table.num_spans == 3
    assert normalize(_otlp(table)) == normalize(data)


def test_round_trip_of_real_sdk_spans() -> None:
    request = encoded(sdk_spans(traces=3))
    table = spantable.flatten_bytes(request.SerializeToString())
    assert normalize(_otlp(table)) == normalize(request)


def test_flatten_of_messages_equals_flatten_of_bytes() -> None:
    data = _every_field()
    assert spantable.flatten(data.resource_spans).spans.equals(spantable.flatten_bytes(data.SerializeToString()).spans)


def test_typed_attribute_columns() -> None:
    table = spantable.flatten_bytes(_every_field().SerializeToString())
    attrs = {a["key"]: a for a in table.spans.column("attrs")[0].as_py()}
    assert attrs["s"]["type"] == spantable.STRING and attrs["s"]["str"] == "text"
    assert attrs["empty.string"]["str"] == ""
    assert attrs["i"] == {**attrs["i"], "type": spantable.INT, "int": -(2**63), "str": None}
    assert attrs["d"]["dbl"] == -1.5e300 and attrs["b"]["bool"] is False and attrs["b"]["type"] == spantable.BOOL
    assert attrs["bytes"]["type"] == spantable.BYTES
    assert AnyValue.FromString(attrs["arr"]["raw"]).array_value.values[1].int_value == 1
    assert attrs["no.value"]["type"] == 0
    assert table.spans.column("service_name").to_pylist() == ["svc", "svc", None]
    assert table.spans.column("duration_nano").to_pylist()[:2] == [4_000, 1_000]


def _field(tag: int, body: bytes) -> bytes:
    return bytes([tag]) + varint(len(body)) + body


def _traces_with_raw_attribute(raw_kv: bytes, normal: int = 0) -> bytes:
    """A TracesData with one span: `normal` ordinary attributes, then the given serialized KeyValue."""
    span = Span(trace_id=b"\x01" * 16, span_id=b"\x01" * 8,
                attributes=[_kv(f"a{i}", int_value=i) for i in range(normal)]).SerializeToString()
    span += _field(0x4A, raw_kv)  # Span.attributes = 9
    return _field(0x0A, _field(0x12, _field(0x12, span)))  # TracesData > ResourceSpans > ScopeSpans


def test_non_canonical_key_value_encoding_falls_back_to_protobuf() -> None:
    value = AnyValue(int_value=42).SerializeToString()
    reversed_fields = b"\x12" + bytes([len(value)]) + value + b"\x0a\x03abc"  # value before key
    for normal in (0, 100):  # few attributes take the per-item path; many the vectorised one, then fall back
        table = spantable.flatten_bytes(_traces_with_raw_attribute(reversed_fields, normal))
        attrs = table.spans.column("attrs")[0].as_py()
        assert len(attrs) == normal + 1 and attrs[-1] == {
            "key": "abc", "type": spantable.INT, "str": None, "int": 42, "dbl": None, "bool": None, "raw": None,
        }
        assert [a["int"] for a in attrs[:-1]] == list(range(normal))


def test_invalid_utf8_attribute_key_is_a_decode_error() -> None:
    bad = b"\x0a\x02\xff\xfe\x12\x03\x0a\x01x"
    for normal in (0, 100):
        with pytest.raises(DecodeError):
            spantable.flatten_bytes(_traces_with_raw_attribute(bad, normal))


def test_flatten_payloads_equals_concatenating_tables() -> None:
    a, b = _every_field().SerializeToString(), encoded(sdk_spans()).SerializeToString()
    together = spantable.flatten_payloads([a, b])
    apart = spantable.concat([spantable.flatten_bytes(a), spantable.flatten_bytes(b)])
    assert together.spans.equals(apart.spans)
    assert together.resources.equals(apart.resources)


def test_dedicate_moves_only_string_values_and_undedicate_restores_them() -> None:
    table = spantable.flatten_bytes(_every_field().SerializeToString())
    moved = spantable.dedicate(table, ["s", "i"])
    assert moved.dedicated == {"s": "span.s", "i": "span.i"}
    assert moved.spans.column("span.s").to_pylist() == ["text", None, None]
    assert moved.spans.column("span.i").to_pylist() == [None] * 3  # an int is not a string column
    keys = [a["key"] for a in moved.spans.column("attrs")[0].as_py()]
    assert "s" not in keys and "i" in keys
    back = spantable.undedicate(moved)
    assert back.dedicated == {} and "span.s" not in back.spans.column_names
    assert normalize(_otlp(back)) == normalize(_every_field())
    assert normalize(_otlp(moved)) == normalize(_every_field())


def test_choose_dedicated_keys_prefers_well_known_then_frequent_string_keys() -> None:
    table = spantable.flatten_bytes(encoded(sdk_spans(traces=2)).SerializeToString())
    keys = spantable.choose_dedicated_keys(table, 3)
    assert keys[0] == "http.method"  # well-known first, though rarer than others
    assert keys == ["http.method", "str"]  # only string-valued keys qualify
    assert spantable.choose_dedicated_keys(table, 1) == ["http.method"]


def _ids(*names: str) -> list[bytes]:
    return [n.encode().ljust(8, b"\x00") if n else b"" for n in names]


def test_nested_sets_of_a_simple_tree() -> None:
    spans = _ids("a", "b", "c", "d")
    parents = _ids("", "a", "b", "a")
    left, right, parent = nested_sets(spans, parents, [2, 1, 1, 3])
    assert (left, right, parent) == ([1, 2, 3, 6], [8, 5, 4, 7], [-1, 1, 2, 1])


def test_nested_sets_zipkin_shared_client_server_ids() -> None:
    # Zipkin: the server span reuses the client span's ID; it becomes the client's child, and a span
    # whose parent is that ID hangs under the server span.
    spans = _ids("root", "rpc", "rpc", "work")
    parents = _ids("", "root", "root", "rpc")
    kinds = [SPAN_KIND_SERVER, SPAN_KIND_CLIENT, SPAN_KIND_SERVER, 1]
    left, right, parent = nested_sets(spans, parents, kinds)
    assert parent[1] == left[0] and parent[2] == left[1] and parent[3] == left[2]
    assert left[0] < left[1] < left[2] < left[3] < right[3] < right[2] < right[1] < right[0]


def test_nested_sets_disconnected_spans_and_several_roots() -> None:
    spans = _ids("r1", "r2", "lost", "x")
    parents = _ids("", "", "missing", "r2")
    left, right, parent = nested_sets(spans, parents, [2, 2, 1, 1])
    assert (left[2], right[2], parent[2]) == (0, 0, 0)
    assert parent[0] == parent[1] == -1 and parent[3] == left[1]


def test_with_nested_sets_numbers_each_trace_separately() -> None:
    table = spantable.sort_by_trace(spantable.flatten_bytes(_every_field().SerializeToString()))
    spans = spantable.with_nested_sets(table).spans
    by_name = dict(zip(spans.column("name").to_pylist(), zip(
        spans.column("nested_set_left").to_pylist(), spans.column("parent_index").to_pylist(), strict=True),
        strict=True))
    assert by_name["root"] == (1, -1) and by_name["child"] == (2, 1) and by_name["orphan"] == (1, -1)


def test_dedupe_drops_copies_of_a_span_only() -> None:
    once = spantable.flatten_bytes(_every_field().SerializeToString())
    twice = spantable.concat([once, once])
    assert twice.num_spans == 6
    deduped = spantable.dedupe_spans(twice)
    assert deduped.num_spans == 3
    assert deduped.spans.column("name").to_pylist() == once.spans.column("name").to_pylist()
    data = TracesData(resource_spans=[ResourceSpans()])
    ss = data.resource_spans[0].scope_spans.add()
    for kind in (2, 3):  # Zipkin client and server halves share the ID: both stay
        ss.spans.add(trace_id=b"\x01" * 16, span_id=b"\x01" * 8, kind=kind)
    assert spantable.dedupe_spans(spantable.flatten(data.resource_spans)).num_spans == 2
    for start in (10, 20):  # same ID and kind, different times: distinct spans, both stay
        ss.spans.add(trace_id=b"\x01" * 16, span_id=b"\x01" * 8, kind=2, start_time_unix_nano=start,
                     end_time_unix_nano=start + 5)
    assert spantable.dedupe_spans(spantable.flatten(data.resource_spans)).num_spans == 4


def test_empty_input_gives_empty_typed_table() -> None:
    table = spantable.flatten_bytes(b"")
    assert table.num_spans == 0 and table.spans.schema == spantable.SPAN_SCHEMA
    assert isinstance(table.spans.column("attrs").type, pa.ListType)


def test_typed_dedicated_columns_keep_types_and_round_trip() -> None:
    table = spantable.flatten_bytes(_every_field().SerializeToString())
    typed = {"s": spantable.STRING, "i": spantable.INT, "d": spantable.DOUBLE, "b": spantable.BOOL,
             "zero": spantable.STRING}  # `zero` is an int: nothing moves into a string column
    moved = spantable.dedicate(table, typed)
    types = {c: moved.spans.schema.field(c).type for c in moved.dedicated.values()}
    assert types == {"span.s": pa.string(), "span.i": pa.int64(), "span.d": pa.float64(), "span.b": pa.bool_(),
                     "span.zero": pa.string()}
    assert moved.spans.column("span.i").to_pylist()[0] == -(2**63)
    assert moved.spans.column("span.b").to_pylist()[0] is False
    assert moved.spans.column("span.zero").null_count == moved.num_spans
    keys = [a["key"] for a in moved.spans.column("attrs")[0].as_py()]
    assert not {"s", "i", "d", "b"} & set(keys) and "zero" in keys
    assert normalize(_otlp(moved)) == normalize(_every_field())
    back = spantable.undedicate(moved)
    assert back.dedicated == {} and normalize(_otlp(back)) == normalize(_every_field())


def test_typed_dedicated_keys_are_the_frequent_non_string_keys_by_their_main_type() -> None:
    table = spantable.flatten_bytes(_every_field().SerializeToString())
    chosen = spantable.choose_typed_dedicated(table, exclude=["i"])
    assert chosen["d"] == spantable.DOUBLE and chosen["b"] == spantable.BOOL and chosen["zero"] == spantable.INT
    assert "i" not in chosen and "s" not in chosen  # excluded, and a string key
    assert len(spantable.choose_typed_dedicated(table, max_per_type=1)) == 3  # one per type
