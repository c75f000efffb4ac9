"""Jaeger Thrift decoders (HTTP binary, agent UDP compact and binary) under hostile bytes.

Every input either decodes or is refused with `InvalidRequest`, and what a decode produces is bounded
by the body: no element count or length is trusted beyond the bytes that carry it.
"""

from __future__ import annotations

import pytest
from fuzzing import examples
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_receiver_jaeger import emit_batch_message, in_memory_batch
from thrift.protocol import TBinaryProtocol
from thrift.TSerialization import serialize

from tempo_lite.errors import InvalidRequest
from tempo_lite.receivers.jaeger import decode_jaeger_agent_datagram, decode_jaeger_thrift_http
from tempo_lite.receivers.thrift_reader import MAX_DEPTH

FUZZ = settings(max_examples=examples(300), deadline=None, suppress_health_check=[HealthCheck.too_slow])

_BATCH, _ = in_memory_batch("fuzz")
VALID = {
    "http": serialize(_BATCH, TBinaryProtocol.TBinaryProtocolFactory()),
    "udp-compact": emit_batch_message(_BATCH, compact=True),
    "udp-binary": emit_batch_message(_BATCH, compact=False),
}


def decode(kind: str, body: bytes):  # noqa: ANN201
    if kind == "http":
        return decode_jaeger_thrift_http(body)
    return decode_jaeger_agent_datagram(body, compact=kind == "udp-compact")


def decoded_items(request) -> int:  # noqa: ANN001
    """Spans, attributes, events and links: each needs at least one byte of the body."""
    n = 0
    for rs in request.resource_spans:
        n += len(rs.resource.attributes)
        for ss in rs.scope_spans:
            for span in ss.spans:
                n += 1 + len(span.attributes) + len(span.links)
                n += sum(1 + len(e.attributes) for e in span.events)
    return n


def decodes_or_refuses(kind: str, body: bytes) -> None:
    try:
        request = decode(kind, body)
    except InvalidRequest as exc:
        assert exc.http_status == 400 and exc.message
        return
    assert decoded_items(request) <= len(body)


@pytest.mark.parametrize("kind", sorted(VALID))
def test_valid_encodings_still_decode(kind: str) -> None:
    assert decoded_items(decode(kind, VALID[kind])) == decoded_items(decode("http", VALID["http"])) > 0


@pytest.mark.parametrize("kind", sorted(VALID))
@FUZZ
@given(data=st.data())
def test_bit_flipped_batches_decode_or_are_refused(kind: str, data: st.DataObject) -> None:
    body = bytearray(VALID[kind])
    for bit in data.draw(st.lists(st.integers(0, len(body) * 8 - 1), min_size=1, max_size=8)):
        body[bit // 8] ^= 1 << (bit % 8)
    decodes_or_refuses(kind, bytes(body))


@pytest.mark.parametrize("kind", sorted(VALID))
@FUZZ
@given(data=st.data())
def test_truncated_and_spliced_batches_decode_or_are_refused(kind: str, data: st.DataObject) -> None:
    body = VALID[kind]
    cut = data.draw(st.integers(0, len(body)))
    splice = data.draw(st.binary(max_size=16))
    decodes_or_refuses(kind, body[:cut] + splice + body[cut + len(splice):])


@pytest.mark.parametrize("kind", sorted(VALID))
@FUZZ
@given(body=st.binary(max_size=256))
def test_arbitrary_bytes_decode_or_are_refused(kind: str, body: bytes) -> None:
    prefix = {"http": b"", "udp-compact": VALID["udp-compact"][:13], "udp-binary": VALID["udp-binary"][:21]}[kind]
    decodes_or_refuses(kind, prefix + body)


def test_list_header_claiming_two_billion_elements_of_an_unknown_type_is_refused() -> None:
    # Batch field 1 as a list of type 0xde with 2^31-1 elements: thriftpy2 skipped "nothing" 2^31 times.
    with pytest.raises(InvalidRequest, match="unknown element type"):
        decode_jaeger_thrift_http(bytes.fromhex("0f0001de7fffffff"))


@pytest.mark.parametrize(
    "body, reason",
    [
        (bytes.fromhex("0f00020c7fffffff"), "element count 2147483647 needs at least"),  # list<Span> of 2^31-1
        (bytes.fromhex("0f00020cffffffff"), "negative element count"),
        (bytes.fromhex("0d0009080b7fffffff"), "element count"),  # map in an unknown field
        (bytes.fromhex("0c000108000100000000") + bytes.fromhex("0b0001ffffff00"), "negative length"),
        (bytes.fromhex("0c00010b00017fffffff"), "needs 2147483647 bytes"),  # serviceName of 2 GB
    ],
)
def test_binary_lengths_and_counts_beyond_the_body_are_refused(body: bytes, reason: str) -> None:
    with pytest.raises(InvalidRequest, match=reason):
        decode_jaeger_thrift_http(body)


def test_compact_list_of_stop_elements_claiming_a_huge_count_is_refused() -> None:
    # emitBatch message header, then field 1 (Batch struct), field 1 (Process struct), field 2 (list
    # of tags) whose header says: element type 0 (STOP, zero bytes each), size as a 5-byte varint.
    header = VALID["udp-compact"][:13]
    body = header + bytes([0x1C, 0x1C, 0x29, 0xF0]) + bytes([0xFF, 0xFF, 0xFF, 0xFF, 0x07])
    with pytest.raises(InvalidRequest, match="unknown compact type 0"):
        decode_jaeger_agent_datagram(body, compact=True)


def test_nesting_deeper_than_the_limit_is_refused() -> None:
    # An unknown field 9 of type list<list<list<...>>> one element each, deeper than MAX_DEPTH.
    body = bytes.fromhex("0f0009") + bytes.fromhex("0f00000001") * (MAX_DEPTH + 1) + bytes.fromhex("0800000000")
    with pytest.raises(InvalidRequest, match="nesting deeper than"):
        decode_jaeger_thrift_http(body)


@pytest.mark.parametrize(
    "field, value, reason",
    [("startTime", -1, "startTime -1 is negative"), ("duration", -5, "duration -5 is negative"),
     ("startTime", (1 << 63) - 1, "past the largest timestamp")],
)
def test_negative_or_huge_times_are_refused(field: str, value: int, reason: str) -> None:
    batch, _ = in_memory_batch("times")
    setattr(batch.spans[0], field, value)
    with pytest.raises(InvalidRequest, match=reason):
        decode_jaeger_thrift_http(serialize(batch, TBinaryProtocol.TBinaryProtocolFactory()))
